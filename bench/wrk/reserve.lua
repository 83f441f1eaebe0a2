-- Reserve: POST /reservations with an ACTIVE token. Data: "token scheduleId seatId" lines,
-- every seat distinct (spread: 201 expected) or a few seats repeated (contended: one 201 per
-- seat, then 409 SEAT_UNAVAILABLE).
local bench = require("common")
local next_req
function init(args)
  local reqs = {}
  for _, item in ipairs(bench.load(args[1])) do
    reqs[#reqs + 1] = wrk.format("POST", "/reservations",
      { Authorization = "Bearer " .. item[1], ["Content-Type"] = "application/json" },
      '{"scheduleId":"' .. item[2] .. '","seatId":"' .. item[3] .. '"}')
  end
  next_req = bench.cursor(reqs)
end
function request() return next_req() end
