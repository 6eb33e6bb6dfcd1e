-- wrk script for the conversation rows: BENCH_MODE=search asks /api/search for words
-- spread over the million seeded messages (each request another word, some with a second
-- word to narrow it); BENCH_MODE=reply posts a JSON reply to message BENCH_REPLY_TO. Prints
-- the same JSON line as report.lua.
local mode = os.getenv("BENCH_MODE")
local counter = 0

if mode == "reply" then
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"username":"bench","content":"' .. string.rep("x", 40) ..
    '","reply_to":' .. os.getenv("BENCH_REPLY_TO") .. '}'
end

function request()
  if mode ~= "search" then
    return wrk.format()
  end
  counter = counter + 1
  local n = math.random(0, 4999)
  local q = "w" .. n
  if counter % 3 == 0 then
    q = q .. "+t" .. (n % 97)
  end
  return wrk.format(nil, wrk.path .. "?q=" .. q)
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
            + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    '{"requests":%d,"rps":%.1f,"p50_ms":%.2f,"p99_ms":%.2f,"errors":%d}\n',
    summary.requests, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, bad))
end
