-- Requests spread over BENCH_TENANTS tenants (default 1000) with
-- BENCH_USERS users each (default 10), so no Redis key is hot.  Every
-- request is prepared once in init(); request() only picks the next one,
-- keeping wrk's own cost per request as low as with a static request.
-- wrk.method, wrk.body and wrk.headers are kept: bench/run sets them first
-- for a case with "#@ body FILE".

local tenants = tonumber(os.getenv("BENCH_TENANTS") or "") or 1000
local users = tonumber(os.getenv("BENCH_USERS") or "") or 10

local reqs, n, i = {}, 0, 0
local threads_made = 0

function setup(thread)
    threads_made = threads_made + 1
    thread:set("thread_no", threads_made)
end

function init(args)
    for t = 1, tenants do
        for u = 1, users do
            local h = {}
            for k, v in pairs(wrk.headers) do
                h[k] = v
            end
            h["X-Tenant-Id"] = "t" .. t
            h["X-User-Id"] = "t" .. t .. "-u" .. u
            n = n + 1
            reqs[n] = wrk.format(nil, nil, h)
        end
    end

    -- a shuffled order, different in each thread
    math.randomseed(os.time() * 31 + (rawget(_G, "thread_no") or 0))
    for k = n, 2, -1 do
        local j = math.random(k)
        reqs[k], reqs[j] = reqs[j], reqs[k]
    end
end

function request()
    i = i % n + 1
    return reqs[i]
end
