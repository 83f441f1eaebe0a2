-- Identity on and off, the same requests otherwise. Arguments: the data file ("user [jwt]" a
-- line), what ("issue": POST /queue/tokens with {"userId": user}, a user of its own each time,
-- 201 expected; "balance": GET /users/{user}/balance, round robin, 200 expected) and the mode
-- ("on": every request carries the user's JWT as Authorization: Bearer; "off": none).
local bench = require("common")
local next_req
function init(args)
  local file, what, mode = args[1], args[2], args[3]
  assert(what == "issue" or what == "balance", "what must be issue or balance")
  assert(mode == "on" or mode == "off", "mode must be on or off")
  local reqs = {}
  for _, item in ipairs(bench.load(file)) do
    local headers = {}
    if mode == "on" then headers.Authorization = "Bearer " .. assert(item[2], "no JWT in " .. file) end
    if what == "issue" then
      headers["Content-Type"] = "application/json"
      reqs[#reqs + 1] = wrk.format("POST", "/queue/tokens", headers, '{"userId":"' .. item[1] .. '"}')
    else
      reqs[#reqs + 1] = wrk.format("GET", "/users/" .. item[1] .. "/balance", headers)
    end
  end
  next_req = bench.cursor(reqs)
end
function request() return next_req() end
