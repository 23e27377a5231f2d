-- wrk script: POST an OpenAI chat.completions body with a Bearer key.
-- Env: BENCH_KEY (default sk-bench), BENCH_MODEL (default openai/gpt-4o-mini),
--      BENCH_STREAM=1 to ask for a stream ("stream": true, usage included).
-- done() prints one line "WRKJSON {...}": requests, duration, rps, latency
-- percentiles in ms, non-2xx responses (wrk counts status >= 400) and socket errors.
local key = os.getenv("BENCH_KEY") or "sk-bench"
local model = os.getenv("BENCH_MODEL") or "openai/gpt-4o-mini"
local stream = os.getenv("BENCH_STREAM") or ""
local extra = ""
if stream == "1" or stream == "true" or stream == "yes" then
  extra = ',"stream":true,"stream_options":{"include_usage":true}'
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"system","content":"You are a helpful assistant."},'
  .. '{"role":"user","content":"Explain in two sentences how to load test an API gateway."}],'
  .. '"temperature":0.2,"max_tokens":64' .. extra .. '}'

function done(summary, latency, requests)
  local s = summary
  local secs = s.duration / 1e6
  local e = s.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_s":%.3f,"rps":%.2f,"bytes":%d,"non2xx":%d,' ..
    '"socket_errors":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_timeout":%d,' ..
    '"lat_mean_ms":%.3f,"lat_max_ms":%.3f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f}\n',
    s.requests, secs, s.requests / secs, s.bytes, e.status,
    e.connect + e.read + e.write + e.timeout, e.connect, e.read, e.write, e.timeout,
    latency.mean / 1000, latency.max / 1000,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000))
end
