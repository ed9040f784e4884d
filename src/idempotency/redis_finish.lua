-- Ends a request's hold on an idempotency entry, only if the request still holds it: a lock that
-- expired under a very slow request may belong to another request by now.
--
-- KEYS[1]  the entry
-- ARGV[1]  the lock this request set (compared byte for byte)
-- ARGV[2]  the answer to keep in its place, or '' to free the key
-- ARGV[3]  how long to keep the answer, in milliseconds
--
-- Returns 1 when the lock was still held (and replaced or freed), 0 otherwise. Also 1 when the
-- answer is there already: the same call ran once before its connection was lost, and is sent
-- again.

local current = redis.call('GET', KEYS[1])
if ARGV[2] ~= '' and current == ARGV[2] then
    return 1
end
if current ~= ARGV[1] then
    return 0
end
if ARGV[2] == '' then
    redis.call('DEL', KEYS[1])
else
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
