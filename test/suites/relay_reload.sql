-- The relay's producer is recreated while a backlog is in flight: first
-- its settings change on reload while the brokers are down, then the
-- broker answers a produce request with an error that is fatal to an
-- idempotent producer, and abortable to a transactional one.  librdkafka points into the relay's batches
-- (messages are produced without a copy), so the producer is destroyed
-- before they go, and whatever it had not reported stays in the outbox and
-- is sent again.  The fatal error is raised on the relay's producer thread
-- and logged by its main thread.  Every event arrives.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS evcollector;
\ir lib.psql
SELECT plan(21);

SELECT evc_register_schema('reload', 'Tick', '{"type": "object", "required": ["i"]}');
SELECT evc_register_schema('reload', 'Fatal', '{"type": "object", "required": ["i"]}');
SELECT evc_register_schema('reload', 'Abort', '{"type": "object", "required": ["i"]}');
SELECT is(evc_flush('20 s'), 0::bigint, 'schema published; the outbox is empty');
SELECT current_setting('evc_test.tmp') || '/../postgresql.log' AS log \gset
SELECT regexp_count(pg_read_file(:'log'), 'recreating the kafka producer') AS recreated_before \gset
SELECT produced AS produced_before FROM evc.stats WHERE kind = 'relay' \gset

SELECT is(pg_temp.all_brokers('down'),
	'okokok', 'all three brokers taken down');
SELECT is(count(evc_send('reload', 'Tick', jsonb_build_object('i', i), key => (i % 20)::text)), 5000::bigint,
	'5,000 events committed (5 batches)')
FROM generate_series(1, 5000) i;
SELECT ok(pg_temp.wait_for(format('SELECT produced >= %s + 2000 FROM evc.stats WHERE kind = %L',
	:produced_before, 'relay'), 30), 'the relay has two batches in flight');

ALTER SYSTEM SET evcollector.kafka_properties = 'client.id=evc-relay-reloaded';
SELECT pg_reload_conf();
SELECT is(pg_temp.all_brokers('up'),
	'okokok', 'brokers back');
SELECT is(evc_flush('120 s'), 0::bigint, 'the backlog is delivered');
ALTER SYSTEM RESET evcollector.kafka_properties;
SELECT pg_reload_conf();

SELECT ok(regexp_count(pg_read_file(:'log'), 'recreating the kafka producer') > :recreated_before,
	'the relay recreated its producer, with a batch in flight');

CREATE TEMP TABLE got AS
SELECT (ev->'data'->>'i')::int AS i, ev->'context'->>'message_id' AS mid
FROM (SELECT evc_decode_event(decode(payload_hex, 'hex')) AS ev FROM pg_temp.read_topic('reload.Tick')) d;
SELECT is((SELECT count(DISTINCT i) FROM got), 5000::bigint, 'every one of the 5,000 events arrived');
SELECT diag(format('%s duplicate deliveries', (SELECT count(*) - count(DISTINCT i) FROM got)));
SELECT is((SELECT count(DISTINCT (i, mid)) FROM got), 5000::bigint,
	'any duplicate shares the message_id of its original');

-- A fatal error: the idempotent producer cannot go on after the broker
-- reports a sequence out of order (evcollector.relay_exactly_once = off).
ALTER SYSTEM SET evcollector.relay_exactly_once = off;
SELECT pg_reload_conf();
SELECT ok(pg_temp.wait_for($$SELECT mode = 'idempotent' FROM evc.workers WHERE kind = 'relay'$$, 30),
	'the relay runs the idempotent producer');
\if :mock
SELECT regexp_count(pg_read_file(:'log'), 'recreating the kafka producer') AS recreated_before \gset
SELECT regexp_count(pg_read_file(:'log'), 'kafka producer hit a fatal error') AS fatal_before \gset
SELECT is(pg_temp.kafkactl('push_errors produce 1 OUT_OF_ORDER_SEQUENCE_NUMBER'), 'ok',
	'the next produce request is answered OUT_OF_ORDER_SEQUENCE_NUMBER');
SELECT is(count(evc_send('reload', 'Fatal', jsonb_build_object('i', i), key => (i % 20)::text)), 500::bigint,
	'500 events committed')
FROM generate_series(1, 500) i;
SELECT is(evc_flush('60 s'), 0::bigint, 'they are delivered');
SELECT ok(pg_temp.wait_for(format($$SELECT regexp_count(pg_read_file(%L), 'kafka producer hit a fatal error') > %s
	AND regexp_count(pg_read_file(%L), 'recreating the kafka producer') > %s$$,
	:'log', :fatal_before, :'log', :recreated_before), 15),
	'the relay logged the fatal error and recreated its producer');
SELECT is((SELECT count(DISTINCT (ev->'data'->>'i')::int)
		   FROM (SELECT evc_decode_event(decode(payload_hex, 'hex')) AS ev FROM pg_temp.read_topic('reload.Fatal')) d),
	500::bigint, 'every one of the 500 events arrived');
\else
SELECT skip('push_errors (a fatal OUT_OF_ORDER_SEQUENCE_NUMBER) needs librdkafka''s mock cluster', 5);
\endif

-- The transactional producer (the default): the same error makes its
-- transaction abortable (KIP-360); the relay aborts it and sends the batch
-- again whole.
ALTER SYSTEM RESET evcollector.relay_exactly_once;
SELECT pg_reload_conf();
SELECT ok(pg_temp.wait_for($$SELECT mode = 'transactional' FROM evc.workers WHERE kind = 'relay'$$, 30),
	'the relay runs the transactional producer again');
\if :mock
SELECT regexp_count(pg_read_file(:'log'), 'batch failed, retrying') AS failed_before \gset
SELECT is(pg_temp.kafkactl('push_errors produce 1 OUT_OF_ORDER_SEQUENCE_NUMBER'), 'ok',
	'the next produce request is answered OUT_OF_ORDER_SEQUENCE_NUMBER');
SELECT is(count(evc_send('reload', 'Abort', jsonb_build_object('i', i), key => (i % 20)::text)), 500::bigint,
	'500 more events committed')
FROM generate_series(1, 500) i;
SELECT is(evc_flush('60 s'), 0::bigint, 'they are delivered');
SELECT ok(regexp_count(pg_read_file(:'log'), 'batch failed, retrying') > :failed_before,
	'the relay aborted the transaction and sent the batch again');
SELECT is((SELECT count(DISTINCT (ev->'data'->>'i')::int)
		   FROM (SELECT evc_decode_event(decode(payload_hex, 'hex')) AS ev FROM pg_temp.read_topic('reload.Abort')) d),
	500::bigint, 'every one of the 500 events arrived');
\else
SELECT skip('push_errors (OUT_OF_ORDER_SEQUENCE_NUMBER in a transaction) needs librdkafka''s mock cluster', 5);
\endif

SELECT * FROM finish();
