-- The wire format, checked with clients that share no code with evcollector
-- or librdkafka (test/wire/README.md).
--
-- 1. The relay's processed_at stamp gives the bytes protoc --encode gives
--    for the same message, for events of every shape, built by protoc.
-- 2. Every kind of message evcollector publishes (Event, on event topics and
--    images; SchemaRecord, on _evc_schemas; AggregatedEvent, on
--    aggregates.*; Metrics, on metrics) is read back with kafka-python,
--    decoded with Google's protobuf for Python as protoc --decode decodes it,
--    is canonical (each field once, in field order), and protoc --encode of
--    that message gives its bytes back.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS evcollector;
\ir lib.psql
SELECT plan(37);

SELECT current_setting('evc_test.bin') || '/../wire' AS wire,
	   current_setting('evc_test.tmp') || '/wire' AS work \gset
SELECT set_config('evc_test.wire', :'wire', false) \gset
SELECT set_config('evc_test.work', :'work', false) \gset
-- The checker's python (installed from PyPI once, then cached).
SELECT py FROM pg_temp.run(format('mkdir -p %s && %s/pyenv.sh 2>%s/pyenv.log', :'work', :'wire', :'work')) AS py \gset
SELECT set_config('evc_test.py', :'py', false) \gset

-- The relay's stamp, which the extension's SQL does not declare.
CREATE FUNCTION pg_temp.evc_set_processed_at(bytea, text) RETURNS bytea
	AS '$libdir/evcollector', 'evc_set_processed_at' LANGUAGE C STRICT;

-- An evcollector.Event in protobuf text format, encoded by protoc.
CREATE FUNCTION pg_temp.protoc_encode(msg text) RETURNS bytea
LANGUAGE plpgsql AS $$
DECLARE
	f text := current_setting('evc_test.work') || '/case.b64';
	w text := current_setting('evc_test.wire');
BEGIN
	EXECUTE format($q$COPY (SELECT translate(encode(convert_to(%L, 'UTF8'), 'base64'), E'\n', '')) TO %L$q$, msg, f);
	RETURN (SELECT decode(coalesce(string_agg(b64, ''), ''), 'base64') FROM pg_temp.run(format(
		'base64 -d %s | protoc --encode=evcollector.Event -I %s %s/evcollector.proto | base64 -w0; echo',
		f, w, w)) AS b64);
END $$;

-- The checker on one payload (hex), or on the topics matching a pattern.
CREATE FUNCTION pg_temp.wire_check(args text) RETURNS SETOF jsonb
LANGUAGE sql AS $$
	SELECT line::jsonb FROM pg_temp.run(format('%s %s/wire_check.py --work %s %s 2>>%s/check.log',
		current_setting('evc_test.py'), current_setting('evc_test.wire'),
		current_setting('evc_test.work'), args, current_setting('evc_test.work'))) AS line
$$;

-- ---------- 1. the stamp against protoc ----------

SELECT '2026-12-01T09:00:00.123456Z' AS ts \gset
CREATE TEMP TABLE cases (n serial, name text, input text, expected text);
INSERT INTO cases (name, input, expected) VALUES
('an event with every field',
 'client: "acme" event_name: "OrderPaid" schema_version: 3 context { sent_at: "2026-01-02T03:04:05.000000Z" received_at: "2026-01-02T03:04:05.100000Z" message_id: "0b7a1c1e-7f57-4c6e-9a55-3b9e0f3f7a11" user_agent: "app" } data_json: "{\"order\": 42}" blob: "\001\000\377" blob_content_type: "image/png"',
 'client: "acme" event_name: "OrderPaid" schema_version: 3 context { sent_at: "2026-01-02T03:04:05.000000Z" received_at: "2026-01-02T03:04:05.100000Z" processed_at: "TS" message_id: "0b7a1c1e-7f57-4c6e-9a55-3b9e0f3f7a11" user_agent: "app" } data_json: "{\"order\": 42}" blob: "\001\000\377" blob_content_type: "image/png"'),
('no context', 'client: "a" event_name: "b" data_json: "{}"',
 'client: "a" event_name: "b" context { processed_at: "TS" } data_json: "{}"'),
('an empty context', 'client: "a" context { } data_json: "{}"',
 'client: "a" context { processed_at: "TS" } data_json: "{}"'),
('no client, event_name or schema_version', 'context { message_id: "m" } data_json: "{}"',
 'context { processed_at: "TS" message_id: "m" } data_json: "{}"'),
('context with sent_at and received_at only', 'client: "a" context { sent_at: "s" received_at: "r" }',
 'client: "a" context { sent_at: "s" received_at: "r" processed_at: "TS" }'),
('processed_at already set, longer', 'context { sent_at: "s" processed_at: "2026-12-01T09:00:00.123456789012+00:00" user_agent: "u" } data_json: "{}"',
 'context { sent_at: "s" processed_at: "TS" user_agent: "u" } data_json: "{}"'),
('processed_at already set, shorter', 'context { processed_at: "x" message_id: "m" } blob: "\000"',
 'context { processed_at: "TS" message_id: "m" } blob: "\000"'),
('non-ASCII text', 'client: "café" event_name: "注文" context { user_agent: "ünï" } data_json: "{\"k\": \"ø\"}"',
 'client: "café" event_name: "注文" context { processed_at: "TS" user_agent: "ünï" } data_json: "{\"k\": \"ø\"}"'),
('an empty event', '', 'context { processed_at: "TS" }'),
('a context that grows past 127 bytes, and 100 kB of data',
 'client: "big" context { sent_at: "2026-01-02T03:04:05.000000Z" received_at: "2026-01-02T03:04:05.100000Z" message_id: "0b7a1c1e-7f57-4c6e-9a55-3b9e0f3f7a11" user_agent: "agent/1.0" } data_json: "{\"pad\": \"' || repeat('x', 100000) || '\"}"',
 'client: "big" context { sent_at: "2026-01-02T03:04:05.000000Z" received_at: "2026-01-02T03:04:05.100000Z" processed_at: "TS" message_id: "0b7a1c1e-7f57-4c6e-9a55-3b9e0f3f7a11" user_agent: "agent/1.0" } data_json: "{\"pad\": \"' || repeat('x', 100000) || '\"}"');
UPDATE cases SET expected = replace(expected, '"TS"', '"' || :'ts' || '"');
CREATE TEMP TABLE encoded AS
SELECT n, name, pg_temp.protoc_encode(input) AS input, pg_temp.protoc_encode(expected) AS expected FROM cases;

SELECT is(pg_temp.evc_set_processed_at(input, :'ts'), expected, 'stamp = protoc --encode: ' || name)
FROM encoded ORDER BY n;

-- What the relay did before: a second context, holding only processed_at,
-- appended; and fields out of order.  Both come out canonical.
SELECT input AS full_input, expected AS full_expected FROM encoded WHERE n = 1 \gset
SELECT is(pg_temp.evc_set_processed_at(:'full_input'::bytea || '\x22'::bytea || '\x1d1a1b'::bytea
		|| convert_to('2026-11-30T00:00:00.000000Z', 'UTF8'), :'ts'),
	:'full_expected'::bytea, 'stamp = protoc --encode: an event the old relay had stamped (two contexts)');
SELECT is(pg_temp.evc_set_processed_at(pg_temp.protoc_encode('data_json: "{}"') || pg_temp.protoc_encode('client: "a"'), :'ts'),
	pg_temp.protoc_encode(format('client: "a" context { processed_at: "%s" } data_json: "{}"', :'ts')),
	'stamp = protoc --encode: an event with its fields out of order');
SELECT is(pg_temp.evc_set_processed_at('\xffff01'::bytea, :'ts'), '\xffff01'::bytea,
	'bytes that are not an Event are relayed as they are');

-- The checker itself finds the old relay's encoding wrong.
CREATE TEMP TABLE old_check AS
SELECT * FROM pg_temp.wire_check('bytes ' || encode(:'full_input'::bytea || '\x22'::bytea || '\x1d1a1b'::bytea
		|| convert_to(:'ts', 'UTF8'), 'hex')) AS r;
SELECT is((SELECT r->>'canonical' FROM old_check),
	'context (4) comes after field 7: fields are not in number order; context (4) appears more than once',
	'the checker: the old encoding is not canonical');
SELECT ok((SELECT r->>'encode' LIKE 'protoc --encode gives %' AND r->>'decode' = '' FROM old_check),
	'the checker: protoc re-encodes it differently, though it decodes the same');

-- ---------- 2. every kind of message, read back with kafka-python ----------

SELECT evc_register_schema('wiretest', 'Clicked', '{"type": "object", "required": ["user"],
	"properties": {"user": {"type": "string"}, "n": {"type": "integer"}}}') \gset
SELECT evc_register_schema('wiretest', 'reading', '{"type": "object", "required": ["room", "value"],
	"properties": {"room": {"type": "string"}, "value": {"type": "number"}}}') \gset
CREATE TEMP TABLE sent (id uuid);
INSERT INTO sent
SELECT evc_send('wiretest', 'Clicked', '{"user": "plain"}')
UNION ALL SELECT evc_send('wiretest', 'Clicked', '{"user": "keyed", "n": 0}', key => 'u1')
UNION ALL SELECT evc_send('wiretest', 'Clicked', '{"user": "ctx", "n": -7}', key => 'u1',
	context => '{"sent_at": "2026-01-02T03:04:05Z", "user_agent": "wire-test", "message_id": "6b1f0c2e-1d2a-4f55-8e77-0a9b8c7d6e5f"}')
UNION ALL SELECT evc_send('wiretest', 'Clicked', jsonb_build_object('user', 'ünïcødé ✓ 注文'))
UNION ALL SELECT evc_send('wiretest', 'Clicked', jsonb_build_object('user', repeat('y', 200000)));
SET evcollector.require_schema = off;
INSERT INTO sent SELECT evc_send('wiretest', 'Unregistered', '{}');
RESET evcollector.require_schema;
INSERT INTO sent SELECT evc_send_image('wire-cam', decode('89504e470d0a1a0a0000000d4948445200000280000001e008060000', 'hex'),
	metadata => '{"room": "lab"}');

-- Aggregates: readings landed by a table sink, aggregated in 30 s windows.
SELECT count(*) AS n FROM pg_temp.run(format('%s/kafkactl -c %s create_topic wiretest.reading 2 >/dev/null; echo done',
	current_setting('evc_test.bin'), current_setting('evc_test.kafka_control'))) \gset
SELECT ok(evc_declare_aggregation('wiretest', 'reading', '/value', '{count,sum,avg,min,max}', '{/room}') > 0,
	'aggregation declared');
SELECT evc_consumer_create('wire_rows', ARRAY['wiretest.reading'], 'table', '{"flush_interval": "100ms"}') \gset
SELECT date_bin('30 seconds', now() - interval '10 minutes', '2000-01-01') AS base \gset
SELECT count(evc_send('wiretest', 'reading', jsonb_build_object('room', 'r' || (i % 2), 'value', i * 1.25),
	jsonb_build_object('sent_at', :'base'::timestamptz + i * interval '5 seconds'))) AS n
FROM generate_series(0, 7) AS i \gset
SELECT ok(pg_temp.wait_for(format($$SELECT count(*) = 8 FROM evc.events WHERE client = 'wiretest' AND sent_at >= %L$$, :'base'), 30),
	'the readings landed in evc.events');
SELECT cmp_ok(evc_aggregate('30 seconds'), '>', 0::bigint, 'evc_aggregate published aggregates');

-- Metrics, every second for a few seconds.
ALTER SYSTEM SET evcollector.metrics_interval = '1s';
SELECT pg_reload_conf() \gset
SELECT pg_sleep(2.5) \gset
ALTER SYSTEM RESET evcollector.metrics_interval;
SELECT pg_reload_conf() \gset
SELECT is(evc_flush('30 s'), 0::bigint, 'everything left the outbox');
SELECT evc_consumer_drop('wire_rows') \gset

CREATE TEMP TABLE checked AS
SELECT r FROM pg_temp.wire_check(format('kafka --bootstrap %s --topics %L %s',
	current_setting('evc_test.kafka_bootstrap'), '(wiretest[.].*|images|_evc_schemas|aggregates[.].*|metrics)',
	-- The test Kafka (the only one with a control port) needs the old API versions.
	CASE WHEN current_setting('evc_test.kafka_control', true) <> '' THEN '--api-version 0.10.2' END)) AS r;

SELECT diag('kafka-python read ' || (SELECT string_agg(format('%s %s', n, t), ', ' ORDER BY t)
	FROM (SELECT r->>'type' AS t, count(*) AS n FROM checked GROUP BY 1) x));
SELECT is((SELECT count(*) FROM checked c JOIN sent s ON s.id::text = c.r->>'message_id' WHERE r->>'type' = 'Event'),
	7::bigint, 'kafka-python read the 7 events sent (6 events and an image)');
SELECT is((SELECT count(*) FROM checked c JOIN sent s ON s.id::text = c.r->>'message_id'
		WHERE r->'message'->'context'->>'message_id' = s.id::text
		AND r->'message'->'context' ?& '{sent_at,received_at,processed_at}'),
	7::bigint, 'each one''s context has its message_id, sent_at, received_at and processed_at');
SELECT is((SELECT r->'message'->>'data_json' FROM checked WHERE r->'message'->'context'->>'user_agent' = 'wire-test'),
	'{"n": -7, "user": "ctx"}', 'the data is the JSON that was sent');
SELECT ok((SELECT count(*) >= 2 FROM checked WHERE r->>'type' = 'SchemaRecord' AND r->>'topic' = '_evc_schemas'
		AND r->>'key' IN ('wiretest.Clicked', 'wiretest.reading')), 'the schema records are on _evc_schemas');
SELECT ok((SELECT count(*) >= 10 FROM checked WHERE r->>'type' = 'AggregatedEvent' AND r->>'topic' = 'aggregates.30s'
		AND r->'message'->>'client' = 'wiretest'), 'the aggregates are on aggregates.30s');
SELECT ok((SELECT count(*) >= 2 FROM checked WHERE r->>'type' = 'Metrics' AND r->>'topic' = 'metrics'
		AND jsonb_array_length(r->'message'->'workers') > 0), 'the metrics are on metrics, with the workers');

-- The three checks, for each kind of message.
SELECT is((SELECT array_agg(format('%s %s/%s@%s: %s', r->>'type', r->>'topic', r->>'partition', r->>'offset', r->>check_name))
		FILTER (WHERE r->>check_name <> '') FROM checked WHERE r->>'type' = type_name),
	NULL::text[], format('%s: %s', type_name, CASE check_name
		WHEN 'canonical' THEN 'every field once, in field order'
		WHEN 'decode' THEN 'Python protobuf decodes it as protoc --decode does'
		ELSE 'protoc --encode gives back its bytes' END))
FROM unnest('{Event,SchemaRecord,AggregatedEvent,Metrics}'::text[]) WITH ORDINALITY AS t (type_name, i),
	 unnest('{canonical,decode,encode}'::text[]) WITH ORDINALITY AS c (check_name, j)
ORDER BY i, j;

SELECT * FROM finish();
