-- Extend a lease only while the caller still holds it.
-- KEYS[1] lease key   ARGV[1] node id   ARGV[2] TTL in ms
-- Returns 1 when extended, 0 when the caller no longer holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
