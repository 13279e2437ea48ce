-- Acquire a writer lease and issue a fencing token, atomically.
-- KEYS[1] lease key (string, PX TTL)   KEYS[2] token counter
-- ARGV[1] node id                       ARGV[2] TTL in ms
-- Returns {1, token} when the caller holds the lease afterwards (a fresh grant
-- INCRs the token; re-acquiring one's own live lease extends it and keeps the token),
-- or {0, current token} when another node holds it.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
if holder then
  return {0, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, redis.call('INCR', KEYS[2])}
