-- GCRA checks, the same arithmetic as governor's (the in-memory backend), on one key per limit,
-- checked in order as if one after the other: a limit counts the request only when every limit
-- before it let it through, and the first that refuses ends the check.
--
-- KEYS[i]        the i-th limit's state: its theoretical arrival time (TAT), in microseconds of
--                Redis's clock
-- ARGV[2i - 1]   its t:   microseconds per cell (one minute / the per-minute quota)
-- ARGV[2i]       its tau: the burst tolerance, t * (burst - 1)
--
-- Returns {1, the last limit's remaining burst, #KEYS} when every limit allows the request, and
-- {0, microseconds until the next request would be, i} when the i-th refuses it; nothing is written
-- for that limit nor any after it. One key per call on a Redis Cluster (two limits' keys are in
-- different slots); several on a single server, to save round trips.

-- Redis 3.2 to 4 replicate scripts by their text unless told otherwise, which TIME forbids before a
-- write; from 5 on this is the default and the call is a no-op.
if redis.replicate_commands then
    redis.replicate_commands()
end

-- The server's clock, never a replica's: replicas with skewed clocks still share one time line.
-- Microseconds since the epoch stay below 2^53, so Lua's doubles hold them exactly.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local remaining = 0
for i = 1, #KEYS do
    local t = tonumber(ARGV[2 * i - 1])
    local tau = tonumber(ARGV[2 * i])

    -- No state is the same as a fresh one.
    local tat = tonumber(redis.call('GET', KEYS[i])) or now

    local earliest = tat - tau
    if now < earliest then
        return {0, earliest - now, i}
    end

    local next_tat = math.max(tat, now) + t
    -- The key lives exactly until its state is fresh again (TAT reached), so nothing is left
    -- behind. '%.0f': Lua would write a number this large in exponent form, losing digits.
    local ttl_ms = math.ceil((next_tat - now) / 1000)
    redis.call('SET', KEYS[i], string.format('%.0f', next_tat), 'PX', ttl_ms)

    remaining = math.floor(math.min(now + tau + t - next_tat, tau + t) / t)
end
return {1, remaining, #KEYS}
