-- Announce a live member of a group and count the live ones, on the server's clock.
-- KEYS[1] sorted set member -> expiry (server ms)
-- ARGV[1] member   ARGV[2] TTL in ms
-- Members whose expiry has passed are dropped first. Returns the number of live ones.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZCARD', KEYS[1])
