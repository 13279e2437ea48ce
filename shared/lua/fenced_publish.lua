-- Fenced report write: compare and write in one atomic step (never check-then-write).
-- KEYS[1] token key       KEYS[2] report hash   KEYS[3] audit stream (all one symbol)
-- ARGV[1] candidate token   ARGV[2] candidate event time (ms)   ARGV[3] node id
-- ARGV[4] report JSON       ARGV[5] write time (wall ms)        ARGV[6] audit MAXLEN
-- Accepted only if the token equals the symbol's current token (Kleppmann: storage
-- rejects any writer whose token is not the newest granted) and the report is newer
-- (event time) than the stored one, so readers never see time go backwards.
-- Equality, not >=: a token granted and then lost with the last writes (a Redis restart
-- from an AOF missing its last second, a failover to a replica that had not received
-- the grant) is never equal to a token stored afterwards, since grants never repeat
-- (lease_acquire.lua), so its holder is refused; >= would let it in whenever the next
-- grant came out smaller (a server clock stepped back by more than the outage).
-- Returns {1, current} accepted, {0, current} stale token, {-1, current} not newer.
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local token = tonumber(ARGV[1])
if token ~= current then
  return {0, current}
end
local stored = tonumber(redis.call('HGET', KEYS[2], 'event_ms') or '-1')
if tonumber(ARGV[2]) <= stored then
  return {-1, current}
end
redis.call('HSET', KEYS[2], 'json', ARGV[4], 'token', ARGV[1], 'event_ms', ARGV[2],
           'node', ARGV[3], 'updated_at', ARGV[5])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*',
           'token', ARGV[1], 'node', ARGV[3], 'event_ms', ARGV[2])
return {1, current}
