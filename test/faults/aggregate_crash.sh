#!/usr/bin/env bash
# evc_aggregate killed halfway: a run that has already put the aggregates of
# one declaration into the outbox and moved its watermark is SIGKILLed while
# it waits for a lock it needs for the second declaration.  After the crash
# restart nothing of that run is in the outbox or on Kafka and no watermark
# moved; the next run publishes every window exactly once.
set -u
. "$(dirname "$0")/tap.inc"
plan 7

# Other tests put other messages on the topic, some not aggregates at all.
agg_on_kafka() {
	"$EVC_RUN/bin/kafka-dump" "$EVC_KAFKA_BOOTSTRAP" aggregates.1m >"$EVC_RUN/tmp/agg.tsv"
	q "CREATE TEMP TABLE m (p int, o bigint, k text, h text, v text);
	   COPY m FROM '$EVC_RUN/tmp/agg.tsv';
	   SELECT count(*) || ' ' || count(DISTINCT (a->>'event_name', a->>'window_start', a->>'revision'))
	   FROM (WITH mine AS MATERIALIZED (SELECT v FROM m WHERE convert_from(decode(k, 'hex'), 'UTF8') LIKE 'crashagg.%')
	         SELECT evc_decode(decode(v, 'hex'), 'AggregatedEvent') AS a FROM mine) x"
}

q "SELECT evc_declare_aggregation('crashagg', 'a'), evc_declare_aggregation('crashagg', 'b')" >/dev/null
ins() {
	q "INSERT INTO evc.events (message_id, client, event_name, context, data, sent_at, topic, partition, \"offset\")
	   SELECT gen_random_uuid(), 'crashagg', e, '{}', '{}', '2026-03-01 00:0$1:00+00'::timestamptz + i * interval '1 second',
	          'crashagg.' || e, 0, i
	   FROM generate_series(0, 59) i, unnest('{a,b}'::text[]) e" >/dev/null
}
ins 0
q "SELECT evc_aggregate('1 minute', '0', '2026-03-01 00:01:00+00')" >/dev/null
q "SELECT evc_flush('30 s')" >/dev/null
ins 1

# Hold the watermark row of declaration b, so the next run stops there.
psql -X -q -d evc_test -c "BEGIN" \
	-c "SELECT 1 FROM evc.aggregate_watermarks w JOIN evc.aggregations a ON a.id = w.aggregation_id
	    WHERE a.client = 'crashagg' AND a.event_name = 'b' FOR UPDATE" \
	-c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
wait_for 10 bash -c "[ \"\$(psql -X -A -t -d evc_test -c \"SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'\")\" = 1 ]"
psql -X -q -d evc_test -c "SELECT evc_aggregate('1 minute', '0', '2026-03-01 00:02:00+00')" >/dev/null 2>&1 &
wait_for 10 bash -c "[ \"\$(psql -X -A -t -d evc_test -c \"SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT evc_aggregate%' AND wait_event_type = 'Lock'\")\" = 1 ]"
ok $? "the run published declaration a and waits for the lock of declaration b"
pid=$(q "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT evc_aggregate%' AND wait_event_type = 'Lock'")
kill -9 "$pid"
ok $? "the run (pid $pid) killed with SIGKILL"

sleep 1
wait_for 60 server_up
ok $? "server accepts connections again after the crash restart"
is "$(q "SELECT count(*) FROM evc.outbox WHERE content_type LIKE '%AggregatedEvent'")" 0 \
	"nothing of the killed run is in the outbox"
is "$(q "SELECT string_agg(aggregated_upto::text, ',') FROM evc.aggregate_watermarks w JOIN evc.aggregations a ON a.id = w.aggregation_id WHERE a.client = 'crashagg'")" \
	"$(q "SELECT '2026-03-01 00:01:00+00,2026-03-01 00:01:00+00'")" "no watermark moved"

is "$(q "SELECT evc_aggregate('1 minute', '0', '2026-03-01 00:02:00+00')")" 2 "the next run publishes the second window of both types"
q "SELECT evc_flush('30 s')" >/dev/null
is "$(agg_on_kafka)" "4 4" "Kafka holds each window of each type once"
q "SELECT evc_drop_aggregation('crashagg', 'a'), evc_drop_aggregation('crashagg', 'b')" >/dev/null
exit $((TAP_FAILED > 0))
