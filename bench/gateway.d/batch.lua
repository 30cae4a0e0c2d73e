-- wrk: POST /v1/batch of 100 events.
local items = {}
for i = 1, 100 do
	items[i] = string.format('{"event_name":"page_view","data":{"url":"/b/%d","ref":"bench"}}', i)
end
local body = "[" .. table.concat(items, ",") .. "]"
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
