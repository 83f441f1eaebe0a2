-- Seat map: GET /schedules/{id}/seats with an ACTIVE token. Data: "token scheduleId" lines.
local bench = require("common")
local next_req
function init(args)
  local reqs = {}
  for _, item in ipairs(bench.load(args[1])) do
    reqs[#reqs + 1] = wrk.format("GET", "/schedules/" .. item[2] .. "/seats",
      { Authorization = "Bearer " .. item[1] })
  end
  next_req = bench.cursor(reqs)
end
function request() return next_req() end
