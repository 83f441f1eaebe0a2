-- Shared plumbing for every wrk script of `make bench`.
--
-- wrk runs one Lua state per thread plus one for setup()/done(). This module gives each
-- thread its id and share of the prepared data, counts every response by HTTP status (wrk
-- itself only counts "status > 399"), and prints one machine-readable line from done():
--
--   BENCH_RESULT {"requests":..,"duration_s":..,"rps":..,"p50_ms":..,"p99_ms":..,
--                 "statuses":{"200":..},"socket_errors":{..},"extra":{..}}
--
-- Scripts `require "common"` (LUA_PATH points at this folder), define request() and,
-- when they need the body, bench.on_response(status, body).

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]

local bench = {}

local ts = ffi.new("bench_timespec")
-- Milliseconds on CLOCK_MONOTONIC (1): wrk exposes no clock to scripts.
function bench.now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

bench.nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
bench.data_dir = os.getenv("BENCH_DATA_DIR") or "."
bench.nonce = tonumber(os.getenv("BENCH_RUN_NONCE") or "1")

-- Per-thread globals, read back by done() through thread:get(). Each is a flat table:
-- wrk 4.1 corrupts the Lua stack when it copies a table nested in a table.
thread_id = 0
status_counts = {} -- "200" -> n
extra = {}         -- name -> number, summed over threads
samples = {}       -- latencies (ms) of whole operations timed by the script

-- Main state: number the threads and keep them for done().
local threads = {}
local next_thread = 0
function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

local function split(line)
  local fields = {}
  for f in line:gmatch("%S+") do fields[#fields + 1] = f end
  return fields
end

-- This thread's share (every nthreads-th line) of a whitespace-separated data file.
function bench.load(name)
  local path = bench.data_dir .. "/" .. name
  local fh = assert(io.open(path, "r"), "cannot open " .. path)
  local items, i = {}, 0
  for line in fh:lines() do
    if line ~= "" then
      if i % bench.nthreads == thread_id then items[#items + 1] = split(line) end
      i = i + 1
    end
  end
  fh:close()
  assert(#items > 0, "no data for thread " .. thread_id .. " in " .. path)
  return items
end

-- A cursor over items: each call returns the next one; wrapping around is counted because
-- reused write data (a paid reservation, a used-up token) turns into unexpected errors. With
-- BENCH_WRAP_MARK set, the first wrap also leaves the file <mark><thread id>, so that run.sh
-- can stop a warm-up once every thread has sent each of its items once.
local wrap_mark = os.getenv("BENCH_WRAP_MARK")
function bench.cursor(items)
  local i = 0
  return function()
    i = i + 1
    if i > #items then
      i = 1
      extra.wrapped = (extra.wrapped or 0) + 1
      if wrap_mark and extra.wrapped == 1 then
        local fh = io.open(wrap_mark .. thread_id, "w")
        if fh then fh:close() end
      end
    end
    return items[i]
  end
end

-- A fresh, unique user id: run nonce, thread and counter, with UUID v4 version/variant bits.
local user_counter = 0
function bench.new_user_id(kind)
  user_counter = user_counter + 1
  return string.format("%08x-%04x-4%03x-8%03x-%012x", bench.nonce % 0xffffffff, kind or 0,
    thread_id % 0xfff, 0, user_counter)
end

function bench.json_field(body, name)
  return body:match('"' .. name .. '"%s*:%s*"([^"]*)"')
end

function response(status, headers, body)
  local k = tostring(status)
  status_counts[k] = (status_counts[k] or 0) + 1
  if bench.on_response then bench.on_response(status, body) end
end

-- Minimal JSON encoder for the summary line (numbers, strings, nested tables).
local function encode(v)
  local t = type(v)
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return string.format("%.6g", v)
  elseif t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "table" then
    if #v > 0 then
      local parts = {}
      for _, x in ipairs(v) do parts[#parts + 1] = encode(x) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = encode(k) .. ":" .. encode(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "null"
end
bench.encode = encode

local function percentile(sorted, p)
  if #sorted == 0 then return nil end
  local idx = math.max(1, math.min(#sorted, math.ceil(#sorted * p / 100)))
  return sorted[idx]
end

function done(summary, latency, requests)
  local statuses, merged, all = {}, {}, {}
  for _, thread in ipairs(threads) do
    for k, n in pairs(thread:get("status_counts") or {}) do statuses[k] = (statuses[k] or 0) + n end
    for k, v in pairs(thread:get("extra") or {}) do merged[k] = (merged[k] or 0) + v end
    for _, x in ipairs(thread:get("samples") or {}) do all[#all + 1] = x end
  end
  local duration_s = summary.duration / 1e6
  if #all > 0 then
    -- Per-operation latencies measured by the script (e.g. a whole purchase funnel).
    table.sort(all)
    merged.ops_p50_ms = percentile(all, 50)
    merged.ops_p99_ms = percentile(all, 99)
    merged.ops_rps = #all / duration_s
    merged.ops = #all
  end
  local result = {
    requests = summary.requests,
    duration_s = duration_s,
    rps = summary.requests / duration_s,
    p50_ms = latency:percentile(50) / 1000,
    p90_ms = latency:percentile(90) / 1000,
    p99_ms = latency:percentile(99) / 1000,
    p999_ms = latency:percentile(99.9) / 1000,
    max_ms = latency.max / 1000,
    statuses = statuses,
    socket_errors = summary.errors,
    extra = merged,
  }
  io.write("BENCH_RESULT " .. encode(result) .. "\n")
end

return bench
