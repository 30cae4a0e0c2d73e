# test/gateway/crash.sh: the gateway is SIGKILLed (and so the whole server
# restarts) while clients send.  Every event answered 200 is on Kafka; a
# request that got no answer may have been committed anyway (the crash fell
# between its commit and its answer): its client retries with the same
# message_id, and the table sink keeps one row per event.  TAP.
. "$EVC_ROOT/test/tap.sh"
q "SELECT evc_register_schema('default', 'page_view',
	'{\"type\":\"object\",\"properties\":{\"url\":{\"type\":\"string\"}},\"required\":[\"url\"]}')" >/dev/null 2>&1
# Each crash restart kills the consumer too, and a dead member holds its
# partitions until its session times out: with librdkafka's default (45 s)
# the table sink landed nothing for two minutes after the third kill.
q "SELECT evc_consumer_create('gw_crash', ARRAY['default.page_view'], 'table',
	'{\"flush_interval\": \"200ms\", \"kafka\": {\"session.timeout.ms\": \"6000\", \"heartbeat.interval.ms\": \"500\"}}')" >/dev/null
out="$EVC_RUN/tmp/crash.txt"
"$GW_PY" "$EVC_ROOT/test/gateway/clients.py" load "$GW_URL" 12 "$out" &
load=$!
gw_pid() { q "SELECT pid FROM evc.workers WHERE kind = 'gateway' AND pid IS NOT NULL" 2>/dev/null; }
kills=0
for at in 2 6 10; do
	sleep 2
	evc_wait_for 30 gw_answers
	sleep 1
	pid=$(gw_pid)
	[ -n "$pid" ] && kill -9 "$pid" && kills=$((kills + 1))
done
wait $load
evc_wait_for 60 gw_answers
tap $([ "$kills" = 3 ]; echo $?) "the gateway was SIGKILLed 3 times under load" "$kills"

answered=$(grep -c ' 200 ' "$out")
lost=$(grep -c ' err ' "$out")
tap $([ "$answered" -gt 100 ] && [ "$lost" -gt 0 ]; echo $?) "$answered requests were answered 200, $lost got no answer" "$(head -3 "$out")"

evc_wait_for 60 q "SELECT 1"
q "SELECT evc_flush('60 s')" >/dev/null
kcat -C -b "$EVC_KAFKA_BOOTSTRAP" -t default.page_view -e -q -f '%h\n' 2>/dev/null |
	sed -n 's/.*message_id=\([0-9a-f-]*\).*/\1/p' | sort >"$EVC_RUN/tmp/crash.kafka"
awk '$2 == 200 { print $3 }' "$out" | sort >"$EVC_RUN/tmp/crash.answered"
missing=$(comm -23 "$EVC_RUN/tmp/crash.answered" "$EVC_RUN/tmp/crash.kafka" | wc -l)
tap $([ "$missing" = 0 ]; echo $?) "every event answered 200 is on Kafka" "$missing missing"

# The clients that got no answer retry with the same message_id.
for mid in $(awk '$2 == "err" { print $1 }' "$out"); do
	curl -s -o /dev/null -w '%{http_code}\n' -X POST "$GW_URL/store" -H 'Content-Type: application/json' \
		-d "{\"event_name\":\"page_view\",\"context\":{\"message_id\":\"$mid\"},\"data\":{\"url\":\"/retry\"}}"
done | sort | uniq -c >"$EVC_RUN/tmp/crash.retries"
tap $([ "$(awk '$2 == 200 { print $1 }' "$EVC_RUN/tmp/crash.retries")" = "$lost" ]; echo $?) \
	"every retry is answered 200" "$(cat "$EVC_RUN/tmp/crash.retries")"
q "SELECT evc_flush('60 s')" >/dev/null
kcat -C -b "$EVC_KAFKA_BOOTSTRAP" -t default.page_view -e -q -f '%h\n' 2>/dev/null |
	sed -n 's/.*message_id=\([0-9a-f-]*\).*/\1/p' | sort >"$EVC_RUN/tmp/crash.kafka2"
dups=$(uniq -d "$EVC_RUN/tmp/crash.kafka2" | wc -l)
# Whether a SIGKILL falls between a group's commit and its answers is up to
# the timing of the run: when none did, there is nothing to see twice, and
# the check is a TAP skip that says so, not a pass.
if [ "$dups" -gt 0 ]; then
	tap 0 "$dups events were committed but not answered before a crash, and are on Kafka twice after their retry"
else
	n=$((n + 1))
	echo "ok $n - # SKIP no SIGKILL fell between a commit and its answers in this run"
fi
want=$(( answered + lost ))
wait_sql 180 "SELECT count(*) >= $want FROM evc.events WHERE data->>'url' LIKE '/c/%' OR data->>'url' = '/retry'"
tap $([ "$(q "SELECT count(*) FROM evc.events WHERE data->>'url' LIKE '/c/%' OR data->>'url' = '/retry'")" = "$want" ]; echo $?) \
	"the table sink holds each of the $want events exactly once: the duplicates on Kafka were dropped" \
	"$(q "SELECT count(*), count(DISTINCT message_id) FROM evc.events"; q "SELECT name, running, consumed, landed, dead_lettered, last_error FROM evc.consumers"; q "SELECT kind, name, pid, last_error FROM evc.workers")"
q "SELECT evc_consumer_drop('gw_crash')" >/dev/null

[ $fails -eq 0 ]
