-- The HTTP stack's ceiling: GET /health/live, same script plumbing as every endpoint.
local bench = require("common")
local req
function init(_) req = wrk.format("GET", "/health/live") end
function request() return req end
