-- wrk script: GET a random known reader's recommendations with a bearer token.
-- READERS_FILE: one reader id per line; TOKEN: a service key with readers:read (bench/serving_load.py makes both).
local readers = {}
for line in io.lines(os.getenv("READERS_FILE")) do readers[#readers + 1] = line end
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  return wrk.format("GET", "/api/v1/users/" .. readers[math.random(#readers)] .. "/recommendations?n=10")
end

function done(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"seconds\": %.3f, \"non2xx\": %d, \"errors\": %d, " ..
    "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f}\n",
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
