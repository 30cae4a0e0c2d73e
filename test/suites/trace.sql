-- Lineage through the real path: evc_trace follows an event from the
-- outbox (while every broker is down) to Kafka (the relay's delivery
-- report), into a gzipped archive object (its line, read back
-- independently with gzip) and into evc.events, and the Kafka position
-- agrees with what kcat reads.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
\ir lib.psql
SELECT plan(10);

SELECT current_setting('evc_test.kafka_bootstrap') AS boot,
	   current_setting('evc_test.kafka_control') AS ctl,
	   current_setting('evc_test.bin') AS bin,
	   substring(current_setting('evcollector.storage_url') FROM '^file://(.*)$') AS dir \gset

SELECT count(*) AS n FROM pg_temp.run(format('%s/kafkactl -c %s create_topic tracetest.Ev 2 >/dev/null; echo done', :'bin', :'ctl')) \gset
SELECT evc_register_schema('tracetest', 'Ev', '{"type": "object"}') AS v \gset
SELECT evc_flush('20 s') \gset

-- While every broker is down, an event waits in the outbox.
SELECT string_agg(l, '') AS down FROM pg_temp.run(format('for b in 1 2 3; do %s/kafkactl -c %s broker_down $b; done', :'bin', :'ctl')) AS l \gset
WITH sent AS MATERIALIZED (SELECT i, evc_send('tracetest', 'Ev', jsonb_build_object('i', i)) AS mid
						   FROM generate_series(1, 20) AS i)
SELECT mid FROM sent WHERE i = 7 \gset
SELECT is((SELECT array_agg(stage) FROM evc_trace(:'mid')), ARRAY['outbox'], 'while Kafka is away the event is in the outbox');
SELECT is((SELECT (detail->>'topic', detail->>'attempts')::text FROM evc_trace(:'mid')), '(tracetest.Ev,0)',
	'with its topic and attempts');
SELECT string_agg(l, '') AS up FROM pg_temp.run(format('for b in 1 2 3; do %s/kafkactl -c %s broker_up $b; done', :'bin', :'ctl')) AS l \gset
SELECT is(evc_flush('90 s'), 0::bigint, 'delivered once the brokers are back');
SELECT evc_consumer_create('tr_files', ARRAY['tracetest.Ev'], 'archive', '{"flush_interval": "100ms", "gzip": true}') \gset
SELECT evc_consumer_create('tr_rows', ARRAY['tracetest.Ev'], 'table', '{"flush_interval": "100ms"}') \gset
SELECT pg_temp.wait_for($$SELECT landed = 20 FROM evc.consumers WHERE name = 'tr_rows'$$, 30)
	AND pg_temp.wait_for($$SELECT landed = 20 FROM evc.consumers WHERE name = 'tr_files'$$, 30) AS waited \gset

CREATE TEMP TABLE t AS SELECT * FROM evc_trace(:'mid');
SELECT is((SELECT array_agg(stage) FROM t), ARRAY['kafka', 'archive', 'events'], 'then it is at Kafka, in an archive object and in evc.events');
SELECT is((SELECT detail->>'source' FROM t WHERE stage = 'kafka'), 'delivery report', 'the Kafka position comes from the relay''s delivery report');
SELECT is((SELECT (detail->>'partition', detail->>'offset')::text FROM t WHERE stage = 'kafka'),
	(SELECT (partition::text, "offset"::text)::text FROM evc.events WHERE message_id = :'mid'),
	'and agrees with where the table sink read it');

-- kcat reads the same message at that position.
SELECT (detail->>'partition') AS p, (detail->>'offset') AS o FROM t WHERE stage = 'kafka' \gset
SELECT is(pg_temp.run(format('kcat -C -b %s -t tracetest.Ev -p %s -o %s -c 1 -e -q -f ''%%h\n'' | tr , ''\n'' | grep ^message_id=',
	:'boot', :'p', :'o')), 'message_id=' || :'mid', 'kcat finds the event at that partition and offset');

-- The archive object, read back with gzip, has the event on that line.
SELECT detail->>'object_key' AS key, detail->>'line' AS line FROM t WHERE stage = 'archive' \gset
SELECT ok(:'line'::int BETWEEN 1 AND 20, 'the archive stage names the line');
SELECT is(pg_temp.run(format('gzip -dc %s/%s | sed -n %sp | grep -o ''"message_id":"[^"]*"''', :'dir', :'key', :'line')),
	format('"message_id":"%s"', :'mid'), 'gzip -dc of the object shows the event on that line');
SELECT is((SELECT detail->>'event_name' FROM t WHERE stage = 'events'), 'Ev', 'the events row is reported');

SELECT evc_consumer_drop('tr_files') \gset
SELECT evc_consumer_drop('tr_rows') \gset
SELECT * FROM finish();
