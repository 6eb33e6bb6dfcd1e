-- wrk script: prints one JSON line of results at the end; with BENCH_POST set, every
-- request is a form POST of one chat message.
if os.getenv("BENCH_POST") then
  wrk.method = "POST"
  wrk.body = "username=bench&msg=" .. string.rep("x", 40)
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
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
