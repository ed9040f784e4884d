-- One GCRA check, the same arithmetic as governor's (the in-memory backend), on one key.
--
-- KEYS[1]  the state key: the theoretical arrival time (TAT), in microseconds of Redis's clock
-- ARGV[1]  t:   microseconds per cell (one minute / the per-minute quota)
-- ARGV[2]  tau: the burst tolerance, t * (burst - 1)
--
-- Returns {1, remaining burst} when the request is allowed, {0, microseconds until the next request
-- would be} when it is refused. Nothing is written on a refusal.

-- Redis 3.2 to 4 replicate scripts by their text unless told otherwise, which TIME forbids before a
-- write; from 5 on this is the default and the call is a no-op.
if redis.replicate_commands then
    redis.replicate_commands()
end

local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])

-- The server's clock, never a replica's: replicas with skewed clocks still share one time line.
-- Microseconds since the epoch stay below 2^53, so Lua's doubles hold them exactly.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

-- No state is the same as a fresh one.
local tat = tonumber(redis.call('GET', KEYS[1])) or now

local earliest = tat - tau
if now < earliest then
    return {0, earliest - now}
end

local next_tat = math.max(tat, now) + t
-- The key lives exactly until its state is fresh again (TAT reached), so nothing is left behind.
-- '%.0f': Lua would write a number this large in exponent form, losing digits.
local ttl_ms = math.ceil((next_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', ttl_ms)

local remaining = math.floor(math.min(now + tau + t - next_tat, tau + t) / t)
return {1, remaining}
