-- Fenced report write: compare and write in one atomic step (never check-then-write).
-- KEYS[1] token key       KEYS[2] report hash   KEYS[3] audit stream (all one symbol)
-- KEYS[4] history stream (1 s)   KEYS[5] history stream (1 min)   KEYS[6] update channel
-- ARGV[1] candidate token   ARGV[2] candidate event time (ms)   ARGV[3] node id
-- ARGV[4] report JSON       ARGV[5] write time (wall ms)        ARGV[6] audit MAXLEN
-- ARGV[7] history row ('' = none)   ARGV[8] 1 s history MAXLEN   ARGV[9] 1 min MAXLEN
-- Accepted only if the token equals the symbol's current token (Kleppmann: storage
-- rejects any writer whose token is not the newest granted) and the report is newer
-- (event time) than the stored one, so readers never see time go backwards.
-- Equality, not >=: a token granted and then lost with the last writes (a Redis restart
-- from an AOF missing its last second, a failover to a replica that had not received
-- the grant) is never equal to a token stored afterwards, since grants never repeat
-- (lease_acquire.lua), so its holder is refused; >= would let it in whenever the next
-- grant came out smaller (a server clock stepped back by more than the outage).
-- An accepted write also:
-- * appends the history row, id <event ms>-0, to KEYS[4] if it is the first accepted
--   report of its exchange-time second and to KEYS[5] if the first of its minute (the
--   stored event time is the previous accepted write's, so ids only grow). pcall: a
--   history stream that is ahead (report hash deleted, stream kept) skips the row
--   instead of failing the report write after it was made;
-- * announces itself: SPUBLISH KEYS[6] <write time ms> (sharded pub/sub, same slot).
-- Returns {1, current, rows} accepted (rows appended: 0, 1 or 2; -1 if an append failed),
-- {0, current} stale token, {-1, current} not newer.
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local token = tonumber(ARGV[1])
if token ~= current then
  return {0, current}
end
local stored = tonumber(redis.call('HGET', KEYS[2], 'event_ms') or '-1')
local event = tonumber(ARGV[2])
if event <= stored then
  return {-1, current}
end
redis.call('HSET', KEYS[2], 'json', ARGV[4], 'token', ARGV[1], 'event_ms', ARGV[2],
           'node', ARGV[3], 'updated_at', ARGV[5])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*',
           'token', ARGV[1], 'node', ARGV[3], 'event_ms', ARGV[2])
-- One row per second / minute: the first accepted report in it (the stored event time is
-- the previous accepted write's).
local rows = 0
local function append(stream, maxlen)
  local added = redis.pcall('XADD', stream, 'MAXLEN', maxlen, string.format('%d-0', event),
                            'r', ARGV[7])
  if type(added) == 'table' and added.err then
    rows = -1
  elseif rows >= 0 then
    rows = rows + 1
  end
end
if ARGV[7] ~= '' then
  if stored < 0 or math.floor(event / 1000) > math.floor(stored / 1000) then
    append(KEYS[4], ARGV[8])
  end
  if stored < 0 or math.floor(event / 60000) > math.floor(stored / 60000) then
    append(KEYS[5], ARGV[9])
  end
end
redis.call('SPUBLISH', KEYS[6], ARGV[5])
return {1, current, rows}
