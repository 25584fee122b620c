-- wrk script: GET a random known reader's recommendations with a bearer token.
-- READERS_FILE: one reader id per line; TOKEN: a service key with readers:read (bench/serving_load.py makes both).
-- COUNT_GENERATIONS set: the answers are also counted per generation they name (bench/generation_flip.py).
local readers = {}
for line in io.lines(os.getenv("READERS_FILE")) do readers[#readers + 1] = line end
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
local threads = {}
-- DELAY_MS set: each connection waits that long before its next request (a paced load, not a flood).
local pause = tonumber(os.getenv("DELAY_MS") or "")
if pause then function delay() return pause end end

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  generations = {}
end

function request()
  return wrk.format("GET", "/api/v1/users/" .. readers[math.random(#readers)] .. "/recommendations?n=10")
end

if os.getenv("COUNT_GENERATIONS") then
  function response(status, headers, body)
    local named = 0
    for g in body:gmatch('"generation":%s*"([^"]+)"') do
      generations[g] = (generations[g] or 0) + 1
      named = named + 1
    end
    if named ~= 1 then generations["(names " .. named .. ")"] = (generations["(names " .. named .. ")"] or 0) + 1 end
  end
end

function done(summary, latency, requests)
  local total, counts = {}, {}
  for _, thread in ipairs(threads) do
    for g, n in pairs(thread:get("generations") or {}) do total[g] = (total[g] or 0) + n end
  end
  for g, n in pairs(total) do counts[#counts + 1] = string.format("\"%s\": %d", g, n) end
  io.write(string.format("JSON {\"requests\": %d, \"seconds\": %.3f, \"non2xx\": %d, \"errors\": %d, " ..
    "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, \"generations\": {%s}}\n",
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000, table.concat(counts, ", ")))
end
