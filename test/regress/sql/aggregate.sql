-- Aggregation: declarations and their errors, evc.json_number, and
-- evc_aggregate over fixed events (windows, lateness, functions named in
-- the data, failed events, revisions for late events, re-runs).  The relay
-- does not run in this database, so what evc_aggregate publishes stays in
-- evc.outbox, where it is decoded.
CREATE EXTENSION IF NOT EXISTS evcollector;
SET client_min_messages = warning;
SET timezone = 'UTC';
SELECT evc_stats_reset();

-- Declarations.
SELECT evc_declare_aggregation('shop', 'order', '/amount', '{sum,count,max,avg,min}', '{/room}') AS order_id \gset
SELECT evc_declare_aggregation('shop', 'order', '/amount', '{count,sum,avg,min,max}', '{/room}') = :order_id AS same_id_when_unchanged;
SELECT evc_declare_aggregation('shop', 'vote', '/v', '{count}', '{/poll,/choice}', '/function') > 0 AS declared;
SELECT evc_declare_aggregation('shop', 'ping') > 0 AS declared_count_only;
SELECT client, event_name, value_pointer, functions, group_by, function_pointer
FROM evc.aggregations ORDER BY id;
-- The invalidation trigger is on while declarations exist.
SELECT tgenabled FROM pg_trigger WHERE tgname = 'events_aggregate_log';

-- Refused declarations.
SELECT evc_declare_aggregation('shop', 'order', '/amount', '{median}');
SELECT evc_declare_aggregation('shop', 'order', '/amount', '{}');
SELECT evc_declare_aggregation('shop', 'order', NULL, '{sum}');
SELECT evc_declare_aggregation('shop', 'order', NULL, '{count}', '{}', '/function');
SELECT evc_declare_aggregation('shop', 'order', 'amount', '{sum}');
SELECT evc_declare_aggregation('shop', 'order', '/a~2b', '{sum}');
SELECT evc_declare_aggregation('shop', 'order', '/amount', '{sum}', '{/a,/b,/c,/d,/e,/f,/g,/h,/i}');
SELECT evc_declare_aggregation('shop', 'order', '/amount', '{sum}', '{/room,/room}');
SELECT evc_declare_aggregation('shop', 'order', '/amount', '{sum,NULL}');
SELECT evc_declare_aggregation('shop', 'order', '/amount', '{{sum},{max}}');
SELECT evc_declare_aggregation(NULL, 'order');
SELECT evc_declare_aggregation('sh.op', 'order');
SELECT evc_drop_aggregation('shop', 'nothing');
CREATE ROLE evc_agg_nobody;
SET ROLE evc_agg_nobody;
SELECT evc_declare_aggregation('shop', 'order');
SELECT evc_drop_aggregation('shop', 'order');
SELECT evc_aggregate();
RESET ROLE;
-- Members of evc_registry_admin may declare; the rows are written as the
-- table owner.
GRANT evc_registry_admin TO evc_agg_nobody;
SET ROLE evc_agg_nobody;
SELECT evc_declare_aggregation('shop', 'tmp') > 0 AS member_declared;
SELECT evc_drop_aggregation('shop', 'tmp');
SELECT count(*) FROM evc.aggregate_state;
RESET ROLE;
DROP ROLE evc_agg_nobody;

-- Windows and lateness.
SELECT evc_aggregate('1 month');
SELECT evc_aggregate('0 seconds');
SELECT evc_aggregate('1.5 seconds');
SELECT evc_aggregate('8 days');
SELECT evc_aggregate('1 minute', '-1 second');
SELECT evc_aggregate('1 minute', '1 year');
SELECT evc_aggregate(NULL);
SELECT evc_aggregate('1 minute', '0', 'infinity');

-- evc.json_number reads a number at a JSON pointer path, else NULL.
SELECT evc.json_number('{"a": {"b": [1, 2.5, "3"]}}', '{a,b,1}') AS nested,
	   evc.json_number('{"a": {"b": [1, 2.5, "3"]}}', '{a,b,2}') AS string_is_null,
	   evc.json_number('{"a": {"b": [1, 2.5, "3"]}}', '{a,b,01}') AS leading_zero_is_null,
	   evc.json_number('{"a": {"b": [1, 2.5, "3"]}}', '{a,x}') AS absent_is_null,
	   evc.json_number('{"a/b": 7, "m~n": 8}', '{a/b}') AS slash_key,
	   evc.json_number('42', '{}') AS root,
	   evc.json_number('42', '{a}') AS scalar_root;

-- Events: orders in rooms r0 and r1 over three minutes, with one amount
-- that is not a number; votes that name their function; pings.
INSERT INTO evc.events (message_id, client, event_name, context, data, sent_at, topic, partition, "offset")
SELECT gen_random_uuid(), 'shop', 'order', '{}',
	   jsonb_build_object('amount', CASE WHEN i = 5 THEN to_jsonb('n/a'::text) ELSE to_jsonb(i) END, 'room', 'r' || (i % 2)),
	   '2026-01-01 00:00:00+00'::timestamptz + i * interval '10 seconds', 'shop.order', 0, i
FROM generate_series(0, 17) i;
INSERT INTO evc.events (message_id, client, event_name, context, data, sent_at, topic, partition, "offset")
SELECT gen_random_uuid(), 'shop', 'vote', '{}', d::jsonb, '2026-01-01 00:00:30+00', 'shop.vote', 0, n
FROM (VALUES (1, '{"poll": "p1", "choice": "a", "v": 5, "function": "sum"}'),
			 (2, '{"poll": "p1", "choice": "a", "v": 7, "function": "sum"}'),
			 (3, '{"poll": "p1", "choice": "a", "v": 3, "function": "max"}'),
			 (4, '{"poll": "p1", "choice": "b", "v": 1}'),
			 (5, '{"poll": "p1", "choice": "b", "v": 2, "function": "median"}'),
			 (6, '{"poll": "p1", "choice": "b", "function": "avg"}')) AS v (n, d);
INSERT INTO evc.events (message_id, client, event_name, context, data, sent_at, topic, partition, "offset")
VALUES (gen_random_uuid(), 'shop', 'ping', '{}', '{}', '2026-01-01 00:00:01+00', 'shop.ping', 0, 0),
	   (gen_random_uuid(), 'shop', 'ping', '{}', '{}', NULL, 'shop.ping', 0, 1);
-- The commits above logged one sent_at range per event type.
SELECT client, event_name, lo, hi FROM evc.aggregate_invalidations ORDER BY event_name;

-- Up to 00:02:30 with 30 s lateness: the windows 00:00 and 00:01 are closed.
SELECT evc_aggregate('1 minute', '30 seconds', '2026-01-01 00:02:30+00') AS published;
SELECT event_name, window_start, function, group_key, value, count, revision
FROM evc.aggregate_state ORDER BY event_name, window_start, group_key, function;
-- The failed events (an amount that is not a number, a vote naming
-- "median", an avg vote without a value) are counted.
SELECT consumed AS events, failed, produced AS published, batches AS runs
FROM evc.stats WHERE kind = 'aggregator';

-- What was published: AggregatedEvent messages on aggregates.1m, keyed by
-- type and group, each with a message id derived from the aggregate and
-- its revision.
SELECT topic, convert_from(key, 'UTF8') AS key, content_type,
	   evc_decode(payload, 'AggregatedEvent') - 'computed_at' AS message
FROM evc.outbox
WHERE evc_decode(payload, 'AggregatedEvent')->>'group_key' = 'r1'
ORDER BY id LIMIT 2;
SELECT count(*) AS messages, count(DISTINCT message_id) AS ids FROM evc.outbox;

-- A re-run publishes nothing: the windows are behind the watermark.
SELECT evc_aggregate('1 minute', '30 seconds', '2026-01-01 00:02:30+00') AS published_again;
SELECT aggregation_id = :order_id AS is_order, window_length, aggregated_upto, runs, published
FROM evc.aggregate_watermarks ORDER BY aggregation_id;

-- A late event in a published window: a correction with revision 2, for
-- the aggregates it changed only.
INSERT INTO evc.events (message_id, client, event_name, context, data, sent_at, topic, partition, "offset")
VALUES (gen_random_uuid(), 'shop', 'order', '{}', '{"amount": 100, "room": "r1"}', '2026-01-01 00:00:59+00', 'shop.order', 1, 0);
SELECT evc_aggregate('1 minute', '30 seconds', '2026-01-01 00:02:30+00') AS corrections;
SELECT window_start, function, group_key, value, count, revision
FROM evc.aggregate_state WHERE revision > 1 ORDER BY function;
SELECT evc_decode(payload, 'AggregatedEvent')->>'revision' AS revision, count(*)
FROM evc.outbox GROUP BY 1 ORDER BY 1;

-- A late event without a number changes the count only: one correction.
INSERT INTO evc.events (message_id, client, event_name, context, data, sent_at, topic, partition, "offset")
VALUES (gen_random_uuid(), 'shop', 'order', '{}', '{"amount": null, "room": "r0"}', '2026-01-01 00:00:00+00', 'shop.order', 1, 1);
SELECT evc_aggregate('1 minute', '30 seconds', '2026-01-01 00:02:30+00') AS corrections;
SELECT function, value, count, revision FROM evc.aggregate_state
WHERE event_name = 'order' AND window_start = '2026-01-01 00:00:00+00' AND group_key = 'r0' ORDER BY function;

-- Later, the third window closes.
SELECT evc_aggregate('1 minute', '30 seconds', '2026-01-01 00:03:30+00') AS published;

-- A rolled-back run publishes nothing and leaves no trace.
BEGIN;
SELECT evc_aggregate('10 minutes', '0', '2026-01-01 00:10:00+00') AS would_publish;
ROLLBACK;
SELECT count(*) AS traces FROM evc.aggregate_watermarks WHERE window_length = '10 minutes';
SELECT count(*) AS published_10m FROM evc.outbox WHERE topic = 'aggregates.10m';

-- Another window length reads the same events and the same log.
SELECT evc_aggregate('5 minutes', '0', '2026-01-01 00:05:00+00') AS published_5m;
SELECT function, group_key, value, count FROM evc.aggregate_state
WHERE window_length = '5 minutes' AND event_name = 'order' ORDER BY group_key, function;
SELECT window_length, name FROM evc.aggregate_windows ORDER BY 1;
SELECT DISTINCT topic FROM evc.outbox ORDER BY 1;
-- Every window length has read the log, so it is empty.
SELECT count(*) AS log_rows FROM evc.aggregate_invalidations;

-- A changed declaration recomputes its type: only what comes out
-- different is published, with the next revision.
SELECT evc_declare_aggregation('shop', 'order', '/amount', '{count,sum,avg,min,max}', '{}') = :order_id AS same_id;
SELECT count(*) AS watermarks_left FROM evc.aggregate_watermarks WHERE aggregation_id = :order_id;
SELECT evc_aggregate('1 minute', '30 seconds', '2026-01-01 00:03:30+00') AS published;
SELECT group_key, count(*), max(revision) FROM evc.aggregate_state
WHERE event_name = 'order' AND window_length = '1 minute' GROUP BY 1 ORDER BY 1;

-- A first run over a long history works through it in pieces (100
-- windows per statement): 301 windows, each published once.
SELECT evc_declare_aggregation('shop', 'tick') > 0 AS declared;
INSERT INTO evc.events (message_id, client, event_name, context, data, sent_at, topic, partition, "offset")
SELECT gen_random_uuid(), 'shop', 'tick', '{}', '{}', '2026-02-01 00:00:30+00'::timestamptz + i * interval '1 minute',
	   'shop.tick', 0, i
FROM generate_series(0, 300) AS i;
SELECT evc_aggregate('1 minute', '0', '2026-02-01 06:00:00+00') AS published;
SELECT count(*), count(DISTINCT window_start), min(window_start), max(window_start), bool_and(value = 1 AND count = 1)
FROM evc.aggregate_state WHERE event_name = 'tick';
SELECT evc_drop_aggregation('shop', 'tick');

-- Dropping the last declaration turns the trigger off again.
SELECT evc_drop_aggregation('shop', 'order');
SELECT evc_drop_aggregation('shop', 'vote');
SELECT tgenabled FROM pg_trigger WHERE tgname = 'events_aggregate_log';
SELECT evc_drop_aggregation('shop', 'ping');
SELECT tgenabled FROM pg_trigger WHERE tgname = 'events_aggregate_log';
INSERT INTO evc.events (message_id, client, event_name, context, data, sent_at, topic, partition, "offset")
VALUES (gen_random_uuid(), 'shop', 'order', '{}', '{}', '2030-01-01 00:00:00+00', 'shop.order', 2, 0);
SELECT count(*) AS logged_without_declarations FROM evc.aggregate_invalidations WHERE lo >= '2030-01-01';

-- The aggregates sink is a consumer sink like the others.
SELECT evc_consumer_create('live', ARRAY['^aggregates\..*'], 'aggregates') > 0 AS created;
SELECT name, topics, sink FROM evc.consumers;
SELECT evc_consumer_drop('live');

DROP EXTENSION evcollector;
