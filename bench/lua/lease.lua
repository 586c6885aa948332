-- wrk script for every HTTP scenario of the benchmark, configured by environment:
--
--   BENCH_OP       acquire | renew | contend | etcd_create | etcd_keepalive
--   BENCH_KEYS     how many distinct keys (1: the one hot key "hot")
--   BENCH_PREFIX   key prefix (keys are PREFIX .. index)
--   BENCH_HOLDER   holder of every pre-acquired key; BENCH_TOKEN its fencing token
--   BENCH_TTL      ttl sent with acquire and renew, seconds
--   BENCH_LEASE    first etcd lease ID (lease i = BENCH_LEASE + i)
--   BENCH_THREADS  wrk's -t (keys are dealt to threads round-robin)
--   BENCH_RATE     requests/s per thread, paced (0: as fast as possible)
--   BENCH_OUT      where done() writes its JSON summary
--
-- Every request of a thread takes the thread's next key in turn, so with
-- BENCH_KEYS keys and C connections no two requests in flight share a key
-- unless keys < connections (the hot-key case, on purpose).
-- Statuses are counted per thread: 2xx, 409 (an answer, not an error, for
-- "contend") and anything else.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local op = os.getenv("BENCH_OP") or "renew"
local nkeys = tonumber(os.getenv("BENCH_KEYS") or "1")
local prefix = os.getenv("BENCH_PREFIX") or "k"
local holder = os.getenv("BENCH_HOLDER") or "bench"
local token = os.getenv("BENCH_TOKEN") or "1"
local ttl = os.getenv("BENCH_TTL") or "15"
local lease0 = tonumber(os.getenv("BENCH_LEASE") or "1000")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local out = os.getenv("BENCH_OUT")

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

-- per-thread state (each thread has its own Lua state)
local n = 0
ok, conflict, other = 0, 0, 0 -- globals: done() reads them with thread:get
local next_at = nil
local interval = 0

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(data)
  return ((data:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end

local function key_index()
  -- thread tid deals keys tid, tid + T, tid + 2T, ... in turn
  local per = math.floor((nkeys - 1 - tid) / nthreads) + 1
  if per < 1 then per = 1 end
  local i = tid + (n % per) * nthreads
  if i >= nkeys then i = i % nkeys end
  return i
end

local function key_name(i)
  if nkeys == 1 then return "hot" end
  return prefix .. i
end

local json_headers = { ["Content-Type"] = "application/json" }

function init(args)
  if rate > 0 then interval = 1000 / rate end
end

function delay()
  if interval <= 0 then return 0 end
  local now = now_ms()
  if next_at == nil then next_at = now end
  next_at = next_at + interval
  local d = next_at - now
  if d < 0 then return 0 end
  return d
end

function request()
  n = n + 1
  local i = key_index()
  local key = key_name(i)
  if op == "acquire" then
    return wrk.format("POST", "/v1/leases/" .. key .. "/acquire", json_headers,
      '{"holder":"' .. holder .. '","ttl":' .. ttl .. '}')
  elseif op == "renew" then
    return wrk.format("POST", "/v1/leases/" .. key .. "/renew", json_headers,
      '{"holder":"' .. holder .. '","fencing_token":' .. token .. ',"ttl":' .. ttl .. '}')
  elseif op == "contend" then
    return wrk.format("POST", "/v1/leases/hot/acquire", json_headers,
      '{"holder":"rival-' .. tid .. "-" .. n .. '","ttl":' .. ttl .. '}')
  elseif op == "etcd_create" then
    -- create-if-absent with a lease, on a key never used before: always a write
    local k = b64(prefix .. "t" .. tid .. "-" .. n)
    return wrk.format("POST", "/v3/kv/txn", json_headers,
      '{"compare":[{"key":"' .. k .. '","target":"CREATE","result":"EQUAL","create_revision":"0"}],'
      .. '"success":[{"request_put":{"key":"' .. k .. '","value":"' .. b64(holder)
      .. '","lease":"' .. (lease0 + i) .. '"}}],'
      .. '"failure":[{"request_range":{"key":"' .. k .. '"}}]}')
  elseif op == "etcd_keepalive" then
    return wrk.format("POST", "/v3/lease/keepalive", json_headers,
      '{"ID":"' .. (lease0 + i) .. '"}')
  end
  error("unknown BENCH_OP " .. op)
end

function response(status, headers, body)
  if op == "etcd_create" and status == 200 and not body:find('"succeeded":true', 1, true) then
    conflict = conflict + 1 -- the key existed: a refused create, not an error
  elseif status >= 200 and status < 300 then
    ok = ok + 1
  elseif status == 409 then
    conflict = conflict + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local ok_t, conflict_t, other_t = 0, 0, 0
  for _, t in ipairs(threads) do
    ok_t = ok_t + t:get("ok")
    conflict_t = conflict_t + t:get("conflict")
    other_t = other_t + t:get("other")
  end
  local e = summary.errors
  local s = string.format(
    '{"requests":%d,"duration_us":%d,"ok":%d,"conflict":%d,"other_status":%d,'
    .. '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,'
    .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}',
    summary.requests, summary.duration, ok_t, conflict_t, other_t,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean)
  if out then
    local f = assert(io.open(out, "w"))
    f:write(s)
    f:close()
  else
    io.write(s .. "\n")
  end
end
