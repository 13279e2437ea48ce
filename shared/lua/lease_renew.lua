-- Extend a lease only while the caller still holds it.
-- KEYS[1] lease key   ARGV[1] node id   ARGV[2] TTL in ms
-- Writer leases also pass KEYS[2] token key and ARGV[3] the caller's token: the lease is
-- then extended only while that token is still the newest granted. After a Redis restart
-- or failover that lost the caller's grant, a restored lease key that still names the
-- caller (from an earlier grant) does not revive its lost token: the renewal fails and
-- the caller acquires a fresh token.
-- Returns 1 when extended, 0 when the caller no longer holds it.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if KEYS[2] and tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[3]) then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
