-- Append a batch of entries to one symbol's stream, exactly once, only while the
-- caller holds the symbol's feed claim, and move its checkpoint pointer.
-- KEYS[1] stream   KEYS[2] checkpoint pointer   KEYS[3] last appended "<writer> <seq>"
-- KEYS[4] the feed claim (all one symbol: one hash slot)
-- ARGV[1] writer id   ARGV[2] claim holder this writer appends for (its process's node
--   id)   ARGV[3] seq of the first entry (the writer numbers its entries per symbol,
--   1, 2, ...)   ARGV[4] MAXLEN (approximate)   ARGV[5] F, fields per entry
-- ARGV[6 .. 5+F] field names
-- ARGV[6+F] position (1-based) of the batch's last snapshot entry, 0 if it has none
-- ARGV[7+F ..] the entries' values, F per entry, in order
-- The claim check and the appends are one atomic step: a process whose claim lapsed
-- (paused, partitioned) and was taken over can never write beside the new owner.
-- Entries the same writer already appended (a retry after a lost reply) are skipped.
-- The pointer is set in the same atomic step as the snapshot it names, so it never
-- names an entry that is not there.
-- Returns the id of the last entry appended (false if every entry was a repeat), or
-- the error NOTOWNER when the claim is not the caller's.
local owner = redis.call('GET', KEYS[4])
if owner ~= ARGV[2] then
  return redis.error_reply('NOTOWNER feed claim held by ' .. tostring(owner or 'nobody'))
end
local writer = ARGV[1]
local first_seq = tonumber(ARGV[3])
local nfields = tonumber(ARGV[5])
local snap_at = tonumber(ARGV[6 + nfields])
local first = 7 + nfields
local count = (#ARGV - first + 1) / nfields
local skip = 0
local last = redis.call('GET', KEYS[3])
if last then
  local who, seq = string.match(last, '^(%S+) (%d+)$')
  if who == writer then
    skip = math.max(0, tonumber(seq) - first_seq + 1)
  end
end
local cmd = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*'}
for j = 1, nfields do
  cmd[5 + 2 * j] = ARGV[5 + j]
end
local id = false
for e = skip, count - 1 do
  local base = first + e * nfields - 1
  for j = 1, nfields do
    cmd[6 + 2 * j] = ARGV[base + j]
  end
  id = redis.call(unpack(cmd))
  if e + 1 == snap_at then
    redis.call('SET', KEYS[2], id)
  end
end
if skip < count then
  redis.call('SET', KEYS[3], writer .. ' ' .. (first_seq + count - 1))
end
return id
