-- Token issue: POST /queue/tokens, a new user each time (201 expected).
local bench = require("common")
local headers = { ["Content-Type"] = "application/json" }
function request()
  return wrk.format("POST", "/queue/tokens", headers, '{"userId":"' .. bench.new_user_id(1) .. '"}')
end
