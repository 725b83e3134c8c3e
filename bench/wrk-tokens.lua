-- wrk script for scripts/bench.py: every request carries the next token of a token file
-- (`Authorization: Bearer <token>`), cycling through the file, and `done` prints one
-- machine-readable line with wrk's exact counts and latency percentiles.
--
-- Environment: BENCH_TOKEN_FILE (required: one token per line), BENCH_PATH (default /bench).
-- The requests are formatted once in `init`, so `request` costs wrk a table lookup.

local token_file = os.getenv("BENCH_TOKEN_FILE")
local path = os.getenv("BENCH_PATH") or "/bench"
local prepared = {}
local count = 0
local next_index = 0

init = function(args)
   assert(token_file, "BENCH_TOKEN_FILE is not set")
   local file = assert(io.open(token_file, "r"))
   for line in file:lines() do
      if #line > 0 then
         count = count + 1
         prepared[count] = wrk.format("GET", path, { ["Authorization"] = "Bearer " .. line })
      end
   end
   file:close()
   assert(count > 0, "no tokens in " .. token_file)
end

request = function()
   next_index = next_index + 1
   if next_index > count then
      next_index = 1
   end
   return prepared[next_index]
end

-- Runs once, after the last thread stopped. Latencies are in microseconds. `status` counts
-- responses with a status above 399 (a 401 means the filter refused a token: the run is void).
done = function(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      "BENCH_RESULT requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d "
         .. "timeout=%d p50_us=%.0f p90_us=%.0f p99_us=%.0f max_us=%.0f mean_us=%.1f\n",
      summary.requests, summary.duration, summary.bytes, errors.connect, errors.read,
      errors.write, errors.status, errors.timeout, latency:percentile(50),
      latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
