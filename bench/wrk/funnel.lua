-- The whole purchase funnel, per user: issue a token, poll it (every POLL_MS) until an
-- admission tick makes it ACTIVE, read a seat map, reserve an AVAILABLE seat from it (a
-- 409 sends the user back to the map), charge the balance, pay.
--
-- Run with as many threads as connections (wrk -t C -c C): each thread then has exactly one
-- request in flight, so every response belongs to the step this thread sent last. Each
-- connection interleaves up to MAX_USERS users; while they all wait in line, delay() idles
-- the connection until the next poll is due, like a browser would.
--
-- samples holds each completed funnel's latency (issue sent -> payment answered), so
-- done() reports funnels per second and their p50/p99 as ops_*.
local bench = require("common")

local POLL_MS = tonumber(os.getenv("FUNNEL_POLL_MS") or "500")
local MAX_USERS = tonumber(os.getenv("FUNNEL_USERS_PER_CONN") or "16")
local MAX_RETRIES = 5
local CHARGE = os.getenv("FUNNEL_CHARGE") or "300000"
local json = { ["Content-Type"] = "application/json" }

local schedules
-- FIFOs with explicit head and tail (Lua's # is unreliable once the front is cleared).
local ready, ready_head, ready_tail = {}, 1, 0 -- users whose next step can go now
local polls, polls_head, polls_tail = {}, 1, 0 -- {user, due} in due order (POLL_MS is constant)
local users_live = 0
local current -- {user = u, step = s}

function init(args)
  schedules = {}
  -- Every thread may browse every funnel schedule: read the whole file, not a share.
  for line in io.lines(bench.data_dir .. "/" .. args[1]) do
    if line ~= "" then schedules[#schedules + 1] = line end
  end
  extra.funnels = 0
  extra.funnels_failed = 0
  extra.seat_conflicts = 0
  math.randomseed(bench.nonce + thread_id * 7919)
end

local function push_ready(u, step)
  u.step = step
  ready_tail = ready_tail + 1
  ready[ready_tail] = u
end

local function push_poll(u)
  u.step = "poll"
  polls_tail = polls_tail + 1
  polls[polls_tail] = { u, bench.now_ms() + POLL_MS }
end

local function fail(u)
  extra.funnels_failed = extra.funnels_failed + 1
  users_live = users_live - 1
end

local function pick_schedule(u)
  u.schedule = schedules[math.random(#schedules)]
end

local function bearer(u)
  return { Authorization = "Bearer " .. u.token, ["Content-Type"] = "application/json" }
end

function delay()
  if ready_head <= ready_tail or users_live < MAX_USERS or polls_head > polls_tail then return 0 end
  local wait = polls[polls_head][2] - bench.now_ms()
  return wait > 0 and math.ceil(wait) or 0
end

function request()
  local u
  if polls_head <= polls_tail and polls[polls_head][2] <= bench.now_ms() then
    u = polls[polls_head][1]
    polls[polls_head] = nil
    polls_head = polls_head + 1
  elseif ready_head <= ready_tail then
    u = ready[ready_head]
    ready[ready_head] = nil
    ready_head = ready_head + 1
  elseif users_live < MAX_USERS then
    users_live = users_live + 1
    u = { id = bench.new_user_id(2), step = "issue", t0 = bench.now_ms(), retries = 0 }
    pick_schedule(u)
  else
    -- Nothing due yet (a timer fired early): poll the head of the line now.
    u = polls[polls_head][1]
    polls[polls_head] = nil
    polls_head = polls_head + 1
  end
  current = u
  local s = u.step
  if s == "issue" then
    return wrk.format("POST", "/queue/tokens", json, '{"userId":"' .. u.id .. '"}')
  elseif s == "poll" then
    return wrk.format("GET", "/queue/token", bearer(u))
  elseif s == "seats" then
    return wrk.format("GET", "/schedules/" .. u.schedule .. "/seats", bearer(u))
  elseif s == "reserve" then
    return wrk.format("POST", "/reservations", bearer(u),
      '{"scheduleId":"' .. u.schedule .. '","seatId":"' .. u.seat .. '"}')
  elseif s == "charge" then
    return wrk.format("POST", "/users/" .. u.id .. "/balance/charge", json, '{"amount":' .. CHARGE .. '}')
  else -- pay
    return wrk.format("POST", "/payments", bearer(u), '{"reservationId":"' .. u.reservation .. '"}')
  end
end

local function queue_by_status(u, body)
  local status = bench.json_field(body, "status")
  if status == "ACTIVE" then
    push_ready(u, "seats")
  elseif status == "WAITING" then
    push_poll(u)
  else
    fail(u)
  end
end

local function available_seats(body)
  local ids = {}
  for obj in body:gmatch("{(.-)}") do
    if obj:find('"status"%s*:%s*"AVAILABLE"') then
      local id = obj:match('"id"%s*:%s*"([^"]+)"')
      if id then ids[#ids + 1] = id end
    end
  end
  return ids
end

function bench.on_response(status, body)
  local u = current
  if u == nil then return end
  current = nil
  local s = u.step
  if s == "issue" and (status == 201 or status == 200) then
    u.token = bench.json_field(body, "token")
    queue_by_status(u, body)
  elseif s == "poll" and status == 200 then
    queue_by_status(u, body)
  elseif s == "seats" and status == 200 then
    local ids = available_seats(body)
    if #ids > 0 then
      u.seat = ids[math.random(#ids)]
      push_ready(u, "reserve")
    elseif u.retries < MAX_RETRIES then
      u.retries = u.retries + 1
      pick_schedule(u)
      push_ready(u, "seats")
    else
      fail(u)
    end
  elseif s == "reserve" and status == 201 then
    u.reservation = bench.json_field(body, "id")
    push_ready(u, "charge")
  elseif s == "reserve" and status == 409 and u.retries < MAX_RETRIES then
    extra.seat_conflicts = extra.seat_conflicts + 1
    u.retries = u.retries + 1
    push_ready(u, "seats")
  elseif s == "charge" and status == 200 then
    push_ready(u, "pay")
  elseif s == "pay" and status == 201 then
    extra.funnels = extra.funnels + 1
    samples[#samples + 1] = bench.now_ms() - u.t0
    users_live = users_live - 1
  else
    fail(u)
  end
end
