-- Lineage: evc_trace(message_id) reports each place an event is, from the
-- rows evcollector keeps.  The relay does not run in this database, so
-- the outbox row stays, and the landed rows and the archive object are
-- written here by hand; the suites trace events through the real path.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS evcollector;
SET evcollector.require_schema = off;

-- Unknown: no rows.
SELECT * FROM evc_trace('00000000-0000-4000-8000-000000000000');
SELECT * FROM evc_trace(NULL);

-- In the outbox, after two failed attempts.
SELECT evc_send('tr', 'ev', '{"n": 1}', '{"message_id": "11111111-1111-4111-8111-111111111111"}') IS NOT NULL AS sent;
-- (A failed event waits in evc.outbox_retry; the relay would move it there.)
INSERT INTO evc.outbox_retry (id, txid, message_id, topic, key, payload, schema_version, content_type,
							  created_at, attempts, last_error, last_attempt_at, next_attempt_at)
SELECT id, txid, message_id, topic, key, payload, schema_version, content_type, created_at,
	   2, 'REQUEST_TIMED_OUT: Broker: Request timed out', now(), now() + interval '4 seconds'
FROM evc.outbox WHERE message_id = '11111111-1111-4111-8111-111111111111';
DELETE FROM evc.outbox_0 WHERE message_id = '11111111-1111-4111-8111-111111111111';
SELECT stage, at IS NOT NULL AS has_time, detail - 'last_attempt_at' - 'next_attempt_at' AS detail,
	   detail ? 'next_attempt_at' AS says_when_next
FROM evc_trace('11111111-1111-4111-8111-111111111111');

-- Landed: an events row, a dead letter from another consumer, and an
-- archive object of three events with it on the second line.
INSERT INTO evc.events (message_id, client, event_name, schema_version, context, data, sent_at, topic, partition, "offset")
VALUES ('22222222-2222-4222-8222-222222222222', 'tr', 'ev', 1, '{}', '{"n": 2}', '2026-01-01 00:00:00+00', 'tr.ev', 3, 41);
INSERT INTO evc.dead_letters (message_id, topic, partition, "offset", error, source)
VALUES ('22222222-2222-4222-8222-222222222222', 'tr.ev', 3, 41, 'data_json is not valid JSON', 'consumer:strict');
SELECT substring(current_setting('evcollector.storage_url') FROM '^file://(.*)$') AS dir \gset
SELECT format('COPY (SELECT * FROM (VALUES (%L), (%L), (%L)) AS l) TO %L',
	'{"topic":"tr.ev","partition":3,"offset":40,"context":{"message_id":"33333333-3333-4333-8333-333333333333"}}',
	'{"topic":"tr.ev","partition":3,"offset":41,"context":{"message_id":"22222222-2222-4222-8222-222222222222"}}',
	'{"topic":"tr.ev","partition":3,"offset":42,"context":{"message_id":"44444444-4444-4444-8444-444444444444"}}',
	:'dir' || '/trace-tr.ev+3+40.jsonl') AS q \gset
:q;
INSERT INTO evc.archive_files (object_key, topic, partition, first_offset, last_offset, events, bytes, sha256, consumer)
VALUES ('trace-tr.ev+3+40.jsonl', 'tr.ev', 3, 40, 42, 3, 318, 'not checked here', 'arch'),
	   ('trace-missing.jsonl', 'tr.ev', 3, 41, 41, 1, 100, 'not checked here', 'arch2');
SELECT stage, at IS NOT NULL AS has_time, detail - 'error' - 'id' AS detail,
	   coalesce(detail->>'error' LIKE 'could not open "%/trace-missing.jsonl": No such file or directory', false)
		 AS object_missing
FROM evc_trace('22222222-2222-4222-8222-222222222222');

-- An object whose offset range holds the event's offset but not the event
-- (it was landed again under another message id, say).
INSERT INTO evc.events (message_id, client, event_name, schema_version, context, data, sent_at, topic, partition, "offset")
VALUES ('55555555-5555-4555-8555-555555555555', 'tr', 'ev', 1, '{}', '{"n": 5}', NULL, 'tr.ev', 3, 42);
SELECT stage, detail->>'object_key' AS object_key, detail->'line' AS line, detail->>'error' AS error
FROM evc_trace('55555555-5555-4555-8555-555555555555') WHERE stage = 'archive';

-- Superusers only, unless granted.
CREATE ROLE evc_trace_nobody;
SET ROLE evc_trace_nobody;
SELECT * FROM evc_trace('22222222-2222-4222-8222-222222222222');
RESET ROLE;
DROP ROLE evc_trace_nobody;

DELETE FROM evc.outbox_retry WHERE message_id = '11111111-1111-4111-8111-111111111111';
DELETE FROM evc.events WHERE client = 'tr';
DELETE FROM evc.dead_letters WHERE source = 'consumer:strict';
DELETE FROM evc.archive_files WHERE object_key LIKE 'trace-%';
