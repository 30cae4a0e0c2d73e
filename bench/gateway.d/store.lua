-- wrk: single-event POST /store, each with its own message_id.
local counter = 0
request = function()
	counter = counter + 1
	local body = string.format('{"event_name":"page_view","context":{"sent_at":1690000000,"message_id":"b-%d-%d"},"data":{"url":"/p/%d","ref":"bench"}}',
		math.random(1, 1000000000), counter, counter)
	return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
