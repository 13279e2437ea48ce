-- A calc worker's heartbeat, stamped with Redis server time (no client clock skew).
-- KEYS[1] nodes sorted set   KEYS[2] node info hash
-- ARGV[1] node id   ARGV[2] node info JSON   ARGV[3] membership channel
-- Returns the server time in ms. Publishes "join:<node>" when the node is new.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local added = redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if added == 1 then
  redis.call('PUBLISH', ARGV[3], 'join:' .. ARGV[1])
end
return now
