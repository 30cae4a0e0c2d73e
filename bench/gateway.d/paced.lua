-- wrk: POST /store with a 9 ms pause per connection between requests, so
-- 50 connections send about 5,000 requests/s; latency is per request.
local counter = 0
request = function()
	counter = counter + 1
	local body = string.format('{"event_name":"page_view","data":{"url":"/l/%d"}}', counter)
	return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
delay = function()
	return 9
end
