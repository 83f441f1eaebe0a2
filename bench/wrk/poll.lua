-- Token poll: GET /queue/token with the bearer tokens of the data file named by the first
-- script argument (one token a line; 200 expected).
local bench = require("common")
local next_req
function init(args)
  local reqs = {}
  for _, item in ipairs(bench.load(args[1])) do
    reqs[#reqs + 1] = wrk.format("GET", "/queue/token", { Authorization = "Bearer " .. item[1] })
  end
  next_req = bench.cursor(reqs)
end
function request() return next_req() end
