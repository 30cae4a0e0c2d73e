# test/gateway/routes.sh: every send route and its errors, with curl.
# Sourced by test/run with test/lib.sh, test/gateway/lib.sh; prints TAP.
. "$EVC_ROOT/test/tap.sh"

status() { echo "${1%% *}"; }
body() { echo "${1#* }"; }

q "SELECT evc_register_schema('default', 'page_view',
	'{\"type\":\"object\",\"properties\":{\"url\":{\"type\":\"string\"}},\"required\":[\"url\"]}')" >/dev/null
q "SELECT evc_register_schema('shop', 'order',
	'{\"type\":\"object\",\"properties\":{\"total\":{\"type\":\"number\",\"minimum\":0}},\"required\":[\"total\"]}')" >/dev/null

# The seed's own example, as written.
out=$(curl -s -w '\n%{http_code}' -X POST "http://localhost:$GW_PORT/store" -H 'Content-Type: application/json' \
	-d '{"event_name":"page_view","context":{"sent_at":1690000000,"message_id":"m-1"},"data":{"url":"/"}}')
code=$(echo "$out" | tail -1)
first=$(echo "$out" | head -1)
tap $([ "$code" = 200 ] && echo "$first" | jq -e '.topic == "default.page_view" and .client_message_id == "m-1"' >/dev/null; echo $?) \
	"the seed's curl example for POST /store answers 200 with the event's topic" "$out"
mid1=$(echo "$first" | jq -r .message_id)
r=$(gw_post /store '{"event_name":"page_view","context":{"sent_at":1690000000,"message_id":"m-1"},"data":{"url":"/"}}')
tap $([ "$(body "$r" | jq -r .message_id)" = "$mid1" ]; echo $?) \
	"a retry with the same message_id gets the same event id" "$r / $mid1"
r=$(gw_post /store '{"event_name":"page_view","context":{"sent_at":1690000000,"message_id":"m-2"},"data":{"url":"/"}}')
tap $([ "$(body "$r" | jq -r .message_id)" != "$mid1" ]; echo $?) "another message_id, another event id" "$r"
r=$(gw_post /store '{"event_name":"page_view","context":{"sent_at":"2023-07-22T04:26:40Z","message_id":"4a7e0c1e-0000-4000-8000-000000000001","user_agent":"ua/1","received_at":1,"processed_at":2},"data":{"url":"/a"}}')
tap $([ "$(status "$r")" = 200 ] && [ "$(body "$r" | jq -r .message_id)" = 4a7e0c1e-0000-4000-8000-000000000001 ]; echo $?) \
	"RFC 3339 sent_at and a UUID message_id are taken as they are; received_at and processed_at are ours" "$r"
r=$(gw_post /store '{"event_name":"page_view","data":{"url":"/b"}}')
tap $([ "$(status "$r")" = 200 ]; echo $?) "no context at all is fine" "$r"

# Errors: each with its status and stable code.
r=$(gw_post /store '{"event_name":"page_view","context":{},"data":{"url":5}}')
tap $([ "$(status "$r")" = 422 ] && body "$r" | jq -e '.error.code == "schema_violation" and (.error.message | test("At /url: .*keyword \"type\""))' >/dev/null; echo $?) \
	"a schema error is 422 with the path and keyword evc_send gives" "$r"
r=$(gw_post /store '{"event_name":"nosuch","data":{}}')
tap $([ "$(status "$r")" = 404 ] && [ "$(body "$r" | jq -r .error.code)" = unknown_event ]; echo $?) "an unknown event type is 404 unknown_event" "$r"
r=$(gw_post /store '{"event_name":"page_view","data":{"url":"/"}')
tap $([ "$(status "$r")" = 400 ] && [ "$(body "$r" | jq -r .error.code)" = invalid_json ]; echo $?) "broken JSON is 400 invalid_json" "$r"
r=$(gw_post /store '{"data":{"url":"/"}}')
tap $([ "$(status "$r")" = 400 ] && body "$r" | jq -e '.error.code == "invalid_event" and (.error.message | test("/event_name"))' >/dev/null; echo $?) \
	"a missing event_name is 400 naming /event_name" "$r"
r=$(gw_post /store '{"event_name":"page_view","context":{"sent_at":"yesterday-ish"},"data":{"url":"/"}}')
tap $([ "$(status "$r")" = 400 ] && body "$r" | jq -e '.error.message | test("sent_at")' >/dev/null; echo $?) "a bad sent_at is 400 naming sent_at" "$r"
# PostgreSQL reads the year 10000, which RFC 3339 cannot write.
r=$(gw_post /store '{"event_name":"page_view","context":{"sent_at":"10000-01-01T00:00:00Z"},"data":{"url":"/"}}')
tap $([ "$(status "$r")" = 400 ] && body "$r" | jq -e '.error.message | test("sent_at") and test("9999")' >/dev/null; echo $?) "a sent_at past the year 9999 is 400 naming sent_at" "$r"
r=$(gw_post /store '{"event_name":"page_view","context":{"colour":"red"},"data":{"url":"/"}}')
tap $([ "$(status "$r")" = 400 ] && body "$r" | jq -e '.error.message | test("/colour")' >/dev/null; echo $?) "an unknown context field is 400 naming it" "$r"
r=$(curl -s -w '\n%{http_code}' -X POST "$GW_URL/store" -d 'event_name=page_view')
tap $([ "$(echo "$r" | tail -1)" = 415 ] && echo "$r" | head -1 | jq -e '.error.code == "unsupported_media_type"' >/dev/null; echo $?) \
	"a form body is 415" "$r"
r=$(curl -s -w '\n%{http_code}' "$GW_URL/store")
tap $([ "$(echo "$r" | tail -1)" = 405 ]; echo $?) "GET /store is 405" "$r"
r=$(curl -s -w '\n%{http_code}' "$GW_URL/no/such/route")
tap $([ "$(echo "$r" | tail -1)" = 404 ] && echo "$r" | head -1 | jq -e '.error.code == "not_found"' >/dev/null; echo $?) \
	"an unknown path is 404 JSON" "$r"

# The client: a header names it; the default is evcollector.gateway_default_client.
r=$(gw_post /store '{"event_name":"order","data":{"total":3}}' -H 'X-Evc-Client: shop')
tap $([ "$(status "$r")" = 200 ] && [ "$(body "$r" | jq -r .topic)" = shop.order ]; echo $?) "X-Evc-Client names the client" "$r"
gw_set gateway_default_client shop
r=$(gw_post /store '{"event_name":"order","data":{"total":4}}')
tap $([ "$(status "$r")" = 200 ] && [ "$(body "$r" | jq -r .topic)" = shop.order ]; echo $?) "evcollector.gateway_default_client is the client of a /store that names none" "$r"
gw_reset gateway_default_client

# The event gateway's send_event: the body is the data.
r=$(gw_post /shop/order/send_event '{"total":12.5}')
tap $([ "$(status "$r")" = 200 ] && [ "$(body "$r" | jq -r .topic)" = shop.order ]; echo $?) "POST /<client>/<event>/send_event sends the body as data" "$r"
r=$(gw_post /shop/order/send_event '{"total":-1}')
tap $([ "$(status "$r")" = 422 ] && body "$r" | jq -e '.error.message | test("At /total: .*minimum")' >/dev/null; echo $?) "send_event's schema errors name path and keyword" "$r"

# /v1/events and /v1/batch, with a partition key.
r=$(gw_post /v1/events '{"client":"shop","event_name":"order","data":{"total":1},"key":"cust-7"}')
tap $([ "$(status "$r")" = 200 ]; echo $?) "POST /v1/events with a key" "$r"
keyed_mid=$(body "$r" | jq -r .message_id)
r=$(gw_post /v1/batch '[{"event_name":"order","data":{"total":1},"key":"k1"},{"event_name":"order","data":{"total":-5}},{"event_name":"order","data":{"total":2}},{"nope":1}]' -H 'X-Evc-Client: shop')
tap $([ "$(status "$r")" = 200 ] && body "$r" | jq -e '.accepted == 2 and .rejected == 2 and ([.results[] | .index] == [0,1,2,3]) and .results[0].status == 200 and .results[1].status == 422 and .results[1].error.code == "schema_violation" and .results[2].status == 200 and .results[3].status == 400' >/dev/null; echo $?) \
	"POST /v1/batch answers each item by its index; invalid items do not fail the others" "$r"
gw_set gateway_batch_max 3
r=$(gw_post /v1/batch '[{"event_name":"order","data":{"total":1}},{"event_name":"order","data":{"total":1}},{"event_name":"order","data":{"total":1}},{"event_name":"order","data":{"total":1}}]' -H 'X-Evc-Client: shop')
tap $([ "$(status "$r")" = 413 ] && [ "$(body "$r" | jq -r .error.code)" = batch_too_large ]; echo $?) "a batch over evcollector.gateway_batch_max is 413" "$r"
gw_reset gateway_batch_max
r=$(gw_post /v1/batch '{"event_name":"order"}')
tap $([ "$(status "$r")" = 400 ] && [ "$(body "$r" | jq -r .error.code)" = invalid_batch ]; echo $?) "a batch that is not an array is 400" "$r"

# Everything answered 200 is on Kafka, keyed as asked.
q "SELECT evc_flush('30 s')" >/dev/null
kafka_ids() { kcat -C -b "$EVC_KAFKA_BOOTSTRAP" -t "$1" -e -q -f '%k %h\n' 2>/dev/null; }
kafka_ids default.page_view >"$EVC_RUN/tmp/pv.txt"
kafka_ids shop.order >"$EVC_RUN/tmp/order.txt"
tap $(grep -q "message_id=$mid1" "$EVC_RUN/tmp/pv.txt" && [ "$(grep -c "message_id=$mid1" "$EVC_RUN/tmp/pv.txt")" = 2 ]; echo $?) \
	"the seed's event is on Kafka (twice: the sinks drop the retry by its message_id)" "$(head -5 "$EVC_RUN/tmp/pv.txt")"
tap $(grep -q "^cust-7 .*message_id=$keyed_mid" "$EVC_RUN/tmp/order.txt"; echo $?) "the partition key is the Kafka key" "$(head -5 "$EVC_RUN/tmp/order.txt")"
tap $([ "$(wc -l <"$EVC_RUN/tmp/order.txt")" = 6 ]; echo $?) \
	"shop.order holds exactly the 6 events answered 200" "$(cat "$EVC_RUN/tmp/order.txt")"

[ $fails -eq 0 ]
