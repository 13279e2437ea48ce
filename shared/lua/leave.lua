-- A node leaves at once (SIGTERM): no TTL wait before its symbols move.
-- KEYS[1] nodes sorted set   KEYS[2] node info hash
-- ARGV[1] node id   ARGV[2] membership channel
-- Returns 1 if the node was a member.
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], 'leave:' .. ARGV[1])
return removed
