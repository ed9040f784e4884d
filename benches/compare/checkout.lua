-- wrk's requests for benches/compare.sh: POST <the URL's path> with the checkout body, the
-- Origin the services allow, and one user's session cookie and client address per request,
-- rotating over every user in COMPARE_SESSIONS (lines "<jwt> <address>", from sessions.js).
-- The requests are built once, in init, so that wrk spends the same on each one for every variant.
--
-- Environment:
--   COMPARE_SESSIONS  the sessions file (required)
--   COMPARE_ORIGIN    the Origin header (required)
--   COMPARE_BEARER    when set, also "Authorization: Bearer <it>" (the upstream measured alone,
--                     which checks the token the proxies inject)
--   COMPARE_RATE      when set, the requests per second to hold, all threads together: each
--                     thread hands out send times on a fixed schedule (rate / threads a second),
--                     a connection that gets its answer waits for the next free one (wrk's
--                     delay(), in whole milliseconds), and one that is late sends at once, so the
--                     rate holds while the server keeps up. Latency is counted from when the
--                     request is written, as wrk always does: time a request spent waiting for a
--                     late connection is not in it (wrk2 would add it).
--   COMPARE_THREADS   wrk's -t, needed with COMPARE_RATE

local sessions_file = assert(os.getenv("COMPARE_SESSIONS"), "COMPARE_SESSIONS is not set")
local origin = assert(os.getenv("COMPARE_ORIGIN"), "COMPARE_ORIGIN is not set")
local bearer = os.getenv("COMPARE_BEARER")
local rate = tonumber(os.getenv("COMPARE_RATE") or "") or 0
local threads = tonumber(os.getenv("COMPARE_THREADS") or "") or 1

local body = '{"network":"TRC20","currency":"USDT","amount":"100"}'
local requests = {}
local next_request = 1

-- Runs in wrk's main Lua state once per thread, before that thread's init.
local threads_set_up = 0
function setup(thread)
    threads_set_up = threads_set_up + 1
    thread:set("thread_number", threads_set_up)
end

function init(args)
    for line in io.lines(sessions_file) do
        local token, address = line:match("^(%S+) (%S+)$")
        if token then
            local headers = {
                ["Content-Type"] = "application/json",
                ["Origin"] = origin,
                ["Cookie"] = "session=" .. token,
                ["X-Forwarded-For"] = address,
            }
            if bearer and bearer ~= "" then
                headers["Authorization"] = "Bearer " .. bearer
            end
            requests[#requests + 1] = wrk.format("POST", wrk.path, headers, body)
        end
    end
    assert(#requests > 0, "no sessions in " .. sessions_file)
    -- Each thread starts at its own share of the users.
    local number = thread_number or 1
    next_request = math.floor((number - 1) * #requests / threads) % #requests + 1
end

function request()
    local r = requests[next_request]
    next_request = next_request % #requests + 1
    return r
end

if rate > 0 then
    local has_ffi, ffi = pcall(require, "ffi")
    assert(has_ffi, "COMPARE_RATE needs a wrk built with LuaJIT (Debian's is), for its clock")
    ffi.cdef [[
        typedef struct { long tv_sec; long tv_nsec; } compare_timespec;
        int clock_gettime(int clock_id, compare_timespec *tp);
    ]]
    local CLOCK_MONOTONIC = 1
    local now = ffi.new("compare_timespec")
    local function now_ms()
        ffi.C.clock_gettime(CLOCK_MONOTONIC, now)
        return tonumber(now.tv_sec) * 1000 + tonumber(now.tv_nsec) / 1e6
    end

    local interval_ms = threads * 1000 / rate
    local next_slot = nil

    -- Called before each request is sent: how many milliseconds to wait first.
    function delay()
        local t = now_ms()
        if next_slot == nil then
            next_slot = t
        end
        local slot = next_slot
        next_slot = next_slot + interval_ms
        local wait = slot - t
        if wait <= 0 then
            return 0
        end
        return math.floor(wait + 0.5)
    end
end
