-- Replace the symbol -> node assignment, fenced by coordinator leadership: the write
-- happens only if the caller still holds the leader lease AND the epoch is the one it
-- was elected with, so a deposed (paused, partitioned) leader can never overwrite the
-- assignment of its successor.
-- KEYS[1] leader lease   KEYS[2] epoch counter   KEYS[3] assignment hash
-- KEYS[4] assignment version counter
-- ARGV[1] coordinator node id   ARGV[2] its epoch   ARGV[3] assignment channel
-- ARGV[4..] symbol, node, symbol, node, ... (the complete new assignment)
-- Returns {1, new version} written, {0, current epoch} not the leader.
local epoch = tonumber(redis.call('GET', KEYS[2]) or '0')
if redis.call('GET', KEYS[1]) ~= ARGV[1] or epoch ~= tonumber(ARGV[2]) then
  return {0, epoch}
end
redis.call('DEL', KEYS[3])
-- HSET in chunks: unpack() of thousands of values would overflow Lua's C stack.
local chunk = 1000
local i = 4
while i <= #ARGV do
  local last = math.min(i + chunk - 1, #ARGV)
  redis.call('HSET', KEYS[3], unpack(ARGV, i, last))
  i = last + 1
end
local version = redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[3], tostring(version))
return {1, version}
