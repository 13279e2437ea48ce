-- Acquire a writer lease and grant a fencing token, atomically.
-- KEYS[1] lease key (string, PX TTL)   KEYS[2] token key (the newest token granted)
-- ARGV[1] node id   ARGV[2] TTL in ms
-- ARGV[3] optional: '1' when the caller holds no lease of its own (a writer acquiring):
--         a lease key that still names it is then a leftover (restored by a Redis restart
--         or failover, or an acquire whose reply was lost) and a fresh token is granted.
--         Without it, re-acquiring one's own live lease extends it and keeps the token
--         (the coordinator's campaign on every tick).
--
-- Tokens never repeat, even when Redis loses its last writes (AOF everysec, a replica
-- promoted before it received the last grant): a token is the Redis server clock in
-- microseconds at its grant (TIME; scripts replicate their effects, so the AOF and the
-- replicas store the value, not the call), and a grant is refused while that clock is
-- not past the stored token (a clock stepped back). A grant after a restart or failover
-- is therefore larger than every earlier grant, lost or not, as long as the server's
-- clock did not step back by more than the outage lasted (services/coordinator/README.md,
-- "Fencing tokens"). Tokens stay below 2^53 (exact in Lua and JSON) until the year 2255.
--
-- Returns {1, token} when the caller holds the lease afterwards, or {0, current token}
-- when another node holds it or the clock is not past the stored token (retry later).
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] and ARGV[3] ~= '1' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, current}
end
if holder and holder ~= ARGV[1] then
  return {0, current}
end
local now = redis.call('TIME')
local token = tonumber(now[1]) * 1000000 + tonumber(now[2])
if token <= current then
  redis.log(redis.LOG_WARNING, 'context8: no grant on ' .. KEYS[2] .. ': server clock '
    .. string.format('%d', token) .. ' us is not past the stored token '
    .. string.format('%d', current))
  return {0, current}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], string.format('%d', token))
return {1, token}
