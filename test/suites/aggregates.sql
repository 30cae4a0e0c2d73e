-- Aggregation end to end, scheduled by pg_cron: events sent with evc_send
-- land in evc.events (table sink); a pg_cron job runs evc_aggregate every
-- 2 seconds; the aggregates go through the outbox to aggregates.1m, read
-- back with kcat, and the aggregates sink lands them in evc.aggregates and
-- pushes them to a LISTENing client (test/evc-listen).  A late event yields
-- corrections with revision 2; runs every 2 seconds never publish a window
-- twice; a redelivery of the whole topic changes nothing and pushes nothing.
--
-- pg_cron 1.4 (Debian 12) schedules by the minute only ("2 seconds" needs
-- 1.5), so the job starts every minute and runs evc_aggregate every 2
-- seconds, each run in its own transaction, until it is unscheduled.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_cron;
\ir lib.psql
SELECT plan(20);

SELECT current_setting('evc_test.kafka_bootstrap') AS boot,
	   current_setting('evc_test.kafka_control') AS ctl,
	   current_setting('evc_test.bin') AS bin,
	   current_setting('evc_test.tmp') AS tmp,
	   format('host=127.0.0.1 port=%s dbname=evc_test user=postgres application_name=evc-listen', current_setting('port')) AS conninfo \gset

CREATE FUNCTION pg_temp.aggregates_on_kafka() RETURNS TABLE (key text, a jsonb)
LANGUAGE plpgsql AS $$
BEGIN
	TRUNCATE msgs;
	EXECUTE format('COPY msgs FROM PROGRAM %L',
		format('%s/kafka-dump %s aggregates.1m', current_setting('evc_test.bin'),
			   current_setting('evc_test.kafka_bootstrap')));
	RETURN QUERY SELECT convert_from(decode(m.key, 'hex'), 'UTF8'), evc_decode(decode(m.payload_hex, 'hex'), 'AggregatedEvent')
		FROM msgs m;
END $$;

-- What the listener heard: arrival time (ms) and payload, one row each.
CREATE FUNCTION pg_temp.pushes() RETURNS TABLE (received_ms bigint, channel text, payload jsonb)
LANGUAGE sql AS $$
	SELECT split_part(l, E'\t', 1)::bigint, split_part(l, E'\t', 2), split_part(l, E'\t', 3)::jsonb
	FROM regexp_split_to_table(pg_read_file(current_setting('evc_test.tmp') || '/live.out'), E'\n') AS l
	WHERE l ~ E'^[0-9]+\t'
$$;

SELECT count(*) AS n FROM pg_temp.run(format('(%1$s/kafkactl -c %2$s create_topic aggtest.reading 2; %1$s/kafkactl -c %2$s create_topic aggregates.1m 2) >/dev/null; echo done',
	:'bin', :'ctl')) \gset

-- Everything this run checks lies in two windows from base on.
SELECT date_trunc('minute', now()) - interval '5 minutes' AS base \gset
CREATE TEMP VIEW mine AS SELECT * FROM evc.aggregates
	WHERE client = 'aggtest' AND window_start >= current_setting('evc_test.base')::timestamptz;
SELECT set_config('evc_test.base', :'base', false) \gset

SELECT evc_register_schema('aggtest', 'reading', '{"type": "object", "required": ["room", "value"],
	"properties": {"room": {"type": "string"}, "value": {"type": "number"}}}') AS v \gset
SELECT ok(evc_declare_aggregation('aggtest', 'reading', '/value', '{count,sum,max}', '{/room}') > 0,
	'aggregation declared: count, sum and max of /value by /room');
SELECT evc_consumer_create('agg_rows', ARRAY['aggtest.reading'], 'table', '{"flush_interval": "100ms"}') \gset
SELECT evc_consumer_create('agg_live', ARRAY['aggregates.1m'], 'aggregates', '{"flush_interval": "100ms"}') \gset

-- A client LISTENs on evc_live_1m, as a websocket server would.
SELECT count(*) AS n FROM pg_temp.run(format('%s/evc-listen -d %L -c evc_live_1m -t 300 > %s/live.out 2>&1 & echo started',
	:'bin', :'conninfo', :'tmp')) \gset
SELECT ok(pg_temp.wait_for(format($$SELECT pg_read_file(%L) LIKE 'listening%%'$$, :'tmp' || '/live.out'), 10),
	'the client is listening');

-- Twelve readings in two rooms over two minutes, five minutes ago.
SELECT count(evc_send('aggtest', 'reading', jsonb_build_object('room', 'r' || (i % 2), 'value', i),
	jsonb_build_object('sent_at', :'base'::timestamptz + i * interval '10 seconds'))) AS n
FROM generate_series(0, 11) AS i \gset
SELECT ok(pg_temp.wait_for(format($$SELECT count(*) = 12 FROM evc.events WHERE client = 'aggtest' AND sent_at >= %L$$, :'base'), 30),
	'the readings landed in evc.events');

SELECT cron.schedule('evc-aggtest', '* * * * *', $cmd$DO $$
BEGIN
	FOR i IN 1 .. 28 LOOP
		EXIT WHEN NOT EXISTS (SELECT FROM cron.job WHERE jobname = 'evc-aggtest');
		PERFORM evc_aggregate('1 minute');
		COMMIT;
		PERFORM pg_sleep(2);
	END LOOP;
END $$$cmd$) AS jobid \gset

SELECT ok(pg_temp.wait_for($$SELECT count(*) = 12 FROM mine$$, 100),
	'pg_cron ran evc_aggregate and the aggregates sink landed 12 aggregates (2 windows, 2 rooms, 3 functions)');
SELECT ok((SELECT count(*) > 0 FROM cron.job_run_details WHERE jobid = :jobid), 'the runs are pg_cron''s');
SELECT results_eq(
	$$SELECT window_start, group_key, function, value, count FROM mine
	  WHERE window_length = '1 minute' ORDER BY 1, 2, 3$$,
	$$SELECT w, data->>'room', f, CASE f WHEN 'count' THEN count(*) WHEN 'sum' THEN sum((data->>'value')::numeric)
			  ELSE max((data->>'value')::numeric) END, count(*)
	  FROM evc.events CROSS JOIN unnest('{count,sum,max}'::text[]) AS f
	  CROSS JOIN LATERAL date_bin('1 minute', sent_at, '2000-01-01') AS w
	  WHERE client = 'aggtest' AND sent_at >= current_setting('evc_test.base')::timestamptz
	  GROUP BY 1, 2, 3 ORDER BY 1, 2, 3$$,
	'each aggregate equals the GROUP BY over evc.events');

-- A late reading in the first window, room r1.
SELECT evc_send('aggtest', 'reading', '{"room": "r1", "value": 1000}',
	jsonb_build_object('sent_at', :'base'::timestamptz + interval '15 seconds')) AS late_id \gset
SELECT ok(pg_temp.wait_for(format($$SELECT count(*) = 3 FROM mine
	WHERE group_key = 'r1' AND window_start = %L AND revision = 2$$, :'base'), 60),
	'the late reading yields corrections with revision 2');
SELECT is((SELECT array_agg(function || '=' || value || '/' || count ORDER BY function) FROM mine
	WHERE group_key = 'r1' AND window_start = :'base'),
	ARRAY['count=4/4', 'max=1000/4', 'sum=1009/4'], 'the corrected values include the late reading');
SELECT is((SELECT count(*) FROM mine WHERE revision = 1), 9::bigint,
	'the other aggregates stay at revision 1');

-- Let a few more runs go by, then stop the job.
SELECT pg_sleep(5) \gset
SELECT cron.unschedule('evc-aggtest') \gset
SELECT cmp_ok((SELECT min(runs) FROM evc.aggregate_watermarks w JOIN evc.aggregations a ON a.id = w.aggregation_id
	WHERE a.client = 'aggtest'), '>=', 4::bigint, 'evc_aggregate ran every 2 seconds, several times');
SELECT is(evc_flush('20 s'), 0::bigint, 'the outbox is delivered');

-- Kafka holds each aggregate once per revision: 12 + 3, no duplicates.
CREATE TEMP TABLE on_kafka AS SELECT * FROM pg_temp.aggregates_on_kafka()
	WHERE a->>'client' = 'aggtest' AND (a->>'window_start')::timestamptz >= :'base';
SELECT is((SELECT count(*) FROM on_kafka), 15::bigint, 'aggregates.1m holds 15 aggregates for the type');
SELECT is((SELECT count(DISTINCT (a->>'function', a->>'group_key', a->>'window_start', a->>'revision')) FROM on_kafka),
	15::bigint, 'no window was published twice');
SELECT is((SELECT array_agg(DISTINCT key ORDER BY key) FROM on_kafka), ARRAY['aggtest.reading/r0', 'aggtest.reading/r1'],
	'messages are keyed by type and room');

-- Every new and corrected row was pushed, within a second of landing.
SELECT ok(pg_temp.wait_for($$SELECT count(*) = 15 FROM pg_temp.pushes() WHERE payload->>'client' = 'aggtest'$$, 10),
	'the client got 15 pushes');
SELECT is((SELECT payload - 'start' FROM pg_temp.pushes() WHERE payload->>'revision' = '2' AND payload->>'function' = 'sum'),
	'{"room": "r1", "count": 4, "event": "reading", "value": 1009, "client": "aggtest", "window": "1m", "function": "sum", "revision": 2}'::jsonb,
	'a push carries room, window, function, value and revision');
SELECT cmp_ok((SELECT max(p.received_ms - (extract(epoch FROM a.updated_at) * 1000)::bigint)
	FROM pg_temp.pushes() p JOIN evc.aggregates a ON a.client = p.payload->>'client' AND a.group_key = p.payload->>'room'
	AND a.function = p.payload->>'function' AND a.window_start = (p.payload->>'start')::timestamptz
	AND a.revision = (p.payload->>'revision')::int), '<', 1000::bigint,
	'each push arrived within a second of its row being written');

-- What is not an AggregatedEvent goes to dead letters; the sink goes on.
SELECT count(*) AS n FROM pg_temp.run(format('%1$s/evc-produce -b %2$s -t aggregates.1m -n 3 -g aggjunk && %1$s/evc-produce -b %2$s -t aggregates.1m -n 2 -g aggjunk2 -G',
	:'bin', :'boot')) \gset
SELECT pg_temp.wait_for($$SELECT dead_lettered = 5 FROM evc.consumers WHERE name = 'agg_live'$$, 30) AS waited \gset
SELECT is((SELECT count(*) FROM evc.dead_letters WHERE source = 'consumer:agg_live'
		 AND error = 'payload is not a protobuf evcollector.AggregatedEvent' AND payload IS NOT NULL), 5::bigint,
	'messages that are not aggregates are dead-lettered with the reason');

-- Redelivery: a new consumer in a new group reads the whole topic again.
CREATE TEMP TABLE before AS SELECT * FROM mine;
SELECT evc_consumer_create('agg_again', ARRAY['aggregates.1m'], 'aggregates', '{"flush_interval": "100ms"}') \gset
SELECT pg_temp.wait_for($$SELECT consumed >= 20 FROM evc.consumers WHERE name = 'agg_again'$$, 30) AS waited \gset
SELECT ok((SELECT consumed = 20 AND landed = 0 FROM evc.consumers WHERE name = 'agg_again')
	AND NOT EXISTS (SELECT * FROM mine EXCEPT SELECT * FROM before),
	'a redelivery of every message changes no row');
SELECT pg_sleep(0.5) \gset
SELECT is((SELECT count(*) FROM pg_temp.pushes() WHERE payload->>'client' = 'aggtest'), 15::bigint,
	'and pushes nothing');

SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE application_name = 'evc-listen' \gset
SELECT evc_consumer_drop('agg_rows') \gset
SELECT evc_consumer_drop('agg_live') \gset
SELECT evc_consumer_drop('agg_again') \gset
SELECT evc_drop_aggregation('aggtest', 'reading') \gset
SELECT * FROM finish();
