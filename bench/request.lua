-- wrk script of the benchmark harness: sends one fixed POST and prints one
-- JSON line with the counts and latency percentiles when the run ends.
-- Settings come from the environment, because wrk passes no options to scripts:
--   BENCH_BODY      the request body (JSON)
--   BENCH_HEADERS   extra headers, one "Name: value" per line

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or ""
wrk.headers["Content-Type"] = "application/json"
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name then
    wrk.headers[name] = value
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non_2xx = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
end

function done(summary, latency, requests)
  local non_2xx_total = 0
  for _, thread in ipairs(threads) do
    non_2xx_total = non_2xx_total + thread:get("non_2xx")
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "connect": %d, '
      .. '"read": %d, "write": %d, "timeout": %d, "non_2xx": %d, '
      .. '"p50_us": %d, "p95_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, errors.connect, errors.read,
    errors.write, errors.timeout, non_2xx_total,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)
  ))
end
