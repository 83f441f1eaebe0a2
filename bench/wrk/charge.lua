-- Charge: POST /users/{id}/balance/charge, round robin over many users (200 expected).
local bench = require("common")
local next_req
function init(args)
  local reqs = {}
  for _, item in ipairs(bench.load(args[1])) do
    reqs[#reqs + 1] = wrk.format("POST", "/users/" .. item[1] .. "/balance/charge",
      { ["Content-Type"] = "application/json" }, '{"amount":1000}')
  end
  next_req = bench.cursor(reqs)
end
function request() return next_req() end
