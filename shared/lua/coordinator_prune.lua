-- Drop calc nodes whose last heartbeat is older than the TTL, judged on Redis server
-- time (the same clock heartbeat.lua stamps with, so client clocks never matter).
-- KEYS[1] nodes sorted set   KEYS[2] node info hash
-- ARGV[1] node TTL in ms
-- Returns {now_ms, {pruned node ids}, {live node ids}}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cutoff = now - tonumber(ARGV[1])
local pruned = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)
for _, node in ipairs(pruned) do
  redis.call('ZREM', KEYS[1], node)
  redis.call('HDEL', KEYS[2], node)
end
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
return {now, pruned, live}
