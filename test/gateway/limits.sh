# test/gateway/limits.sh: keep-alive, pipelining and every limit (body,
# header, connections, rate, idle and read timeouts).  Prints TAP.
. "$EVC_ROOT/test/tap.sh"
sock() { "$GW_PY" "$EVC_ROOT/test/gateway/sock.py" "$@"; }
body='{"event_name":"page_view","data":{"url":"/"}}'
q "SELECT evc_register_schema('default', 'page_view',
	'{\"type\":\"object\",\"properties\":{\"url\":{\"type\":\"string\"}},\"required\":[\"url\"]}')" >/dev/null 2>&1

# Keep-alive: curl sends both requests on one connection.
out=$(curl -sv -o /dev/null -o /dev/null -X POST -H 'Content-Type: application/json' -d "$body" \
	"$GW_URL/store" "$GW_URL/store" 2>&1)
tap $(echo "$out" | grep -q 'Re-using existing connection'; echo $?) "HTTP/1.1 keep-alive: two requests on one connection" \
	"$(echo "$out" | grep -E '^[<>*] ' | head -20)"

# Pipelining (src/gateway/README.md, "Pipelining").  An answered 200 is
# committed: after a flush its message_id is on Kafka; a refused request's
# never is.
kafka_ids() {
	q "SELECT evc_flush('60 s')" >/dev/null
	kcat -C -b "$EVC_KAFKA_BOOTSTRAP" -t default.page_view -e -q -f '%h\n' 2>/dev/null |
		sed -n 's/.*message_id=\([0-9a-f-]*\).*/\1/p' | sort -u
}
on_kafka() { kafka_ids | grep -c "^$1\$"; }
# Ten requests in one write: a POST with a body, then GETs and POSTs with
# Content-Length: 0.  Ten answers, in order, and the POST committed.
out=$(sock pipeline-mixed "$GW_PORT" 10)
tap $(echo "$out" | jq -e '.n == 10 and .statuses[0] == 200 and (.statuses[1:] | all(. == 404)) and .ids == [range(10) | "mixed-\(.)"]' >/dev/null; echo $?) \
	"ten pipelined requests, GETs and POSTs, in one write: ten answers, in order" "$out"
mid=$(echo "$out" | jq -r '.message_ids[0]')
tap $([ "$(on_kafka "$mid")" -ge 1 ]; echo $?) "the pipelined POST was committed (its event is on Kafka)" "$mid"
# A second request with a body in the same write: libwebsockets 4.1 cannot
# read it, so it is answered 503 pipelined_request, before any of it is
# read, and the connection closes; the one before it was served.
kafka_ids >"$EVC_RUN/tmp/pipe.before"
out=$(sock pipeline "$GW_PORT" 10)
tap $(echo "$out" | jq -e '.n == 2 and .statuses == [200, 503] and .ids[0] == "pipe-0" and .codes[1] == "pipelined_request" and .closed' >/dev/null; echo $?) \
	"a second POST with a body in the same write: 503 pipelined_request, then the connection closes" "$out"
new_ids=$(kafka_ids | comm -13 "$EVC_RUN/tmp/pipe.before" -)
tap $([ "$new_ids" = "$(echo "$out" | jq -r '.message_ids[0]')" ]; echo $?) \
	"the first POST is committed, and nothing of the refused ones" "$new_ids"
tap $(grep -q 'POST /store: 503 .*pipelined_request' "$EVC_RUN/postgresql.log"; echo $?) \
	"the refusal is logged in one line" "$(grep pipelined_request "$EVC_RUN/postgresql.log" | tail -1)"
# An answer larger than lws sends at once (about 4 kB) is finished by lws
# as the socket drains, and the GET pipelined behind it waits for that.
out=$(sock pipeline-big "$GW_PORT")
tap $(echo "$out" | jq -e '.n == 2 and .statuses == [200, 404] and .first_paths > 0 and .ids[1] == "big-1" and (.closed | not)' >/dev/null; echo $?) \
	"a GET pipelined behind a large answer: the whole answer, then its own, and the connection stays open" "$out"
# A POST whose group is slow (its outbox insert waits 2 s for a lock), with
# a GET pipelined in the same write and a second POST written while the
# group waits: three answers, in order, both POSTs committed.
psql -X -q -d evc_test -v ON_ERROR_STOP=1 >/dev/null 2>&1 <<'SQL' &
BEGIN;
LOCK TABLE evc.outbox_0, evc.outbox_1, evc.outbox_2 IN EXCLUSIVE MODE;
SELECT pg_sleep(2);
COMMIT;
SQL
locker=$!
lock_held() { [ "$(q "SELECT count(*) FROM pg_locks WHERE relation = 'evc.outbox_0'::regclass AND mode = 'ExclusiveLock' AND granted")" = 1 ]; }
evc_wait_for 10 lock_held
out=$(sock pipeline-slow "$GW_PORT" 0.5)
wait "$locker"
tap $(echo "$out" | jq -e '.n == 3 and .statuses == [200, 404, 200] and .ids == ["slow-0", "slow-1", "slow-2"] and .first_after > 1' >/dev/null; echo $?) \
	"pipelined behind a POST whose group is slow (over 1 s): three answers, in order" "$out"
tap $([ "$(on_kafka "$(echo "$out" | jq -r '.message_ids[0]')")" -ge 1 ] && [ "$(on_kafka "$(echo "$out" | jq -r '.message_ids[2]')")" -ge 1 ]; echo $?) \
	"both POSTs behind the slow group are committed" "$out"

# Body size: 413 past evcollector.gateway_max_body, by Content-Length and by chunks.
gw_set gateway_max_body 1kB
big=$(printf '{"event_name":"page_view","data":{"url":"%s"}}' "$(head -c 3000 /dev/zero | tr '\0' a)")
r=$(curl -s -w '\n%{http_code}' -X POST "$GW_URL/store" -H 'Content-Type: application/json' -d "$big")
tap $([ "$(echo "$r" | tail -1)" = 413 ] && echo "$r" | head -1 | jq -e '.error.code == "body_too_large"' >/dev/null; echo $?) \
	"a body over evcollector.gateway_max_body is 413 body_too_large" "$r"
r=$(curl -s -w '\n%{http_code}' -X POST "$GW_URL/store" -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' -d "$big")
tap $([ "$(echo "$r" | tail -1)" = 413 ]; echo $?) "a chunked body over the limit is 413 too" "$r"
r=$(curl -s -w '\n%{http_code}' -X POST "$GW_URL/store" -H 'Content-Type: application/json' -d "$body")
tap $([ "$(echo "$r" | tail -1)" = 200 ]; echo $?) "a body under the limit still passes" "$r"
gw_reset gateway_max_body

# Header size: past evcollector.gateway_max_header the request is refused.
gw_set gateway_max_header 2048
out=$(sock bigheader "$GW_PORT" 4000)
tap $(echo "$out" | jq -e '.status_line == "" or (.status_line | test("^HTTP/1.1 4"))' >/dev/null; echo $?) \
	"headers larger than evcollector.gateway_max_header are refused (4xx or closed)" "$out"
out=$(sock bigheader "$GW_PORT" 500)
tap $(echo "$out" | jq -e '.status_line | test("^HTTP/1.1 (200|404)")' >/dev/null; echo $?) "headers under the limit pass" "$out"
gw_reset gateway_max_header

# Read timeout: a client dribbling its headers is cut off (slowloris).
gw_set gateway_read_timeout 2
out=$(sock slowloris "$GW_PORT" 15)
tap $(echo "$out" | jq -e '.closed_after != null and .closed_after < 8' >/dev/null; echo $?) \
	"a slowloris client is closed after evcollector.gateway_read_timeout" "$out"
gw_reset gateway_read_timeout

# Idle timeout: a kept-alive connection that sends nothing more is closed.
gw_set gateway_idle_timeout 2
out=$(sock idle "$GW_PORT" 10)
tap $(echo "$out" | jq -e '.first == 200 and .closed_after != null and .closed_after < 5' >/dev/null; echo $?) \
	"an idle keep-alive connection is closed after evcollector.gateway_idle_timeout" "$out"
gw_reset gateway_idle_timeout

# Connections: past evcollector.gateway_max_connections new ones are closed at once.
gw_set gateway_max_connections 5
out=$(sock hold "$GW_PORT" 8 1)
tap $(echo "$out" | jq -e '.refused == 3' >/dev/null; echo $?) "8 connections with a limit of 5: 3 are refused" "$out"
sleep 0.5
r=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$GW_URL/store" -H 'Content-Type: application/json' -d "$body")
tap $([ "$r" = 200 ]; echo $?) "once they are gone, a new connection is served" "$r"
gw_reset gateway_max_connections

# Rate: past evcollector.gateway_rate_limit a client gets 429.
gw_set gateway_rate_limit 5
codes=$(for i in $(seq 1 15); do curl -s -o /dev/null -w '%{http_code}\n' -X POST "$GW_URL/store" \
	-H 'Content-Type: application/json' -d "$body"; done | sort | uniq -c | tr '\n' ' ')
tap $(echo "$codes" | grep -q ' 429' && echo "$codes" | grep -q ' 200'; echo $?) \
	"15 requests at once with a limit of 5/s: some 200, the rest 429" "$codes"
r=$(curl -s -X POST "$GW_URL/store" -H 'Content-Type: application/json' -H 'X-Evc-Client: other' -d '{"event_name":"x","data":{}}')
tap $(echo "$r" | jq -e '.error.code != "rate_limited"' >/dev/null; echo $?) "the limit is per client: another client is not limited" "$r"
sleep 1.2
r=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$GW_URL/store" -H 'Content-Type: application/json' -d "$body")
tap $([ "$r" = 200 ]; echo $?) "a second later the client may send again" "$r"
gw_reset gateway_rate_limit

# Errors are logged, one line each; an access log only when asked.
curl -s -o /dev/null -X POST "$GW_URL/store" -H 'Content-Type: application/json' -d '{"event_name":"page_view","data":{"url":"/logged-once"}}x'
sleep 0.5
n_err=$(grep -c 'logged-once\|POST /store: 400' "$EVC_RUN/postgresql.log")
tap $([ "$(grep -c 'gateway 127.0.0.1 POST /store: 400' "$EVC_RUN/postgresql.log")" -ge 1 ]; echo $?) "an error answer is logged in one line" "$n_err"
before=$(grep -c 'gateway 127.0.0.1 POST /store 200' "$EVC_RUN/postgresql.log")
gw_set gateway_access_log on
curl -s -o /dev/null -X POST "$GW_URL/store" -H 'Content-Type: application/json' -d "$body"
sleep 0.5
after=$(grep -c 'gateway 127.0.0.1 POST /store 200' "$EVC_RUN/postgresql.log")
tap $([ "$before" = 0 ] && [ "$after" = 1 ]; echo $?) "no access log by default; one line per request with gateway_access_log" "$before $after"
gw_reset gateway_access_log

[ $fails -eq 0 ]
