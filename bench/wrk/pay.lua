-- Pay: POST /payments by the owner of a HELD reservation. Data: "token reservationId" lines,
-- one per user (a payment uses its payer's token up; 201 expected).
local bench = require("common")
local next_req
function init(args)
  local reqs = {}
  for _, item in ipairs(bench.load(args[1])) do
    reqs[#reqs + 1] = wrk.format("POST", "/payments",
      { Authorization = "Bearer " .. item[1], ["Content-Type"] = "application/json" },
      '{"reservationId":"' .. item[2] .. '"}')
  end
  next_req = bench.cursor(reqs)
end
function request() return next_req() end
