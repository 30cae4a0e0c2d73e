-- The sending surface and its errors.  Nothing here reaches Kafka: the
-- relay runs in evcollector.database, not in this database, and every
-- transaction is rolled back.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS evcollector;
RESET client_min_messages;
SELECT evc_register_schema('regress', 'Sent', '{"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}');

BEGIN;
SELECT evc_send('regress', 'Sent', '{"n": 1}') IS NOT NULL AS sent;
SELECT topic, schema_version, content_type, key IS NULL AS no_key FROM (SELECT * FROM evc.outbox ORDER BY id DESC LIMIT 1) o;
SELECT evc_decode_event(payload)->'data' AS data, evc_decode_event(payload)->>'event_name' AS event_name
FROM (SELECT * FROM evc.outbox ORDER BY id DESC LIMIT 1) o;
SELECT evc_send('regress', 'Sent', '{"n": 2}', '{"message_id": "0b7e1a52-0c41-4a53-9c58-0fb4c1d6a9c1", "sent_at": "2026-01-01 00:00:00+00"}', 'k');
SELECT evc_decode_event(payload)->'context'->>'sent_at' AS sent_at, convert_from(key, 'UTF8') AS key
FROM evc.outbox WHERE message_id = '0b7e1a52-0c41-4a53-9c58-0fb4c1d6a9c1';
-- Times on the wire at the edges of the hand-written format: a year below
-- 1000 keeps its leading zeros.
SELECT evc_send('regress', 'Sent', '{"n": 3}', '{"message_id": "0b7e1a52-0c41-4a53-9c58-0fb4c1d6a9c2", "sent_at": "0999-01-02 03:04:05.000001+00"}') IS NOT NULL AS sent;
SELECT evc_decode_event(payload)->'context'->>'sent_at' AS sent_at
FROM evc.outbox WHERE message_id = '0b7e1a52-0c41-4a53-9c58-0fb4c1d6a9c2';
-- evc_flush cannot wait for its own transaction's events.
SELECT evc_flush('1 s');
ROLLBACK;

-- Bad input: each error says what and where.
SELECT evc_send('regress', 'Sent', '{"n": "one"}');
SELECT evc_send('regress', 'Sent', '[1, 2]');
SELECT evc_send('regress', 'Sent', NULL);
SELECT evc_send(NULL, 'Sent', '{"n": 1}');
SELECT evc_send('regress', 'Unknown', '{"n": 1}');
SELECT evc_send('regress', 'Sent', '{"n": 1}', '{"processed_at": "now"}');
SELECT evc_send('regress', 'Sent', '{"n": 1}', '{"sent_at": "yesterday-ish"}');
SELECT evc_send('regress', 'Sent', '{"n": 1}', '{"message_id": "not-a-uuid"}');
-- Any data error of the field is the caller's; anything else would pass through as it is.
SELECT evc_send('regress', 'Sent', '{"n": 1}', '{"sent_at": "294277-01-01 00:00:00+00"}');
-- RFC 3339 writes years 0001 to 9999 only.
SELECT evc_send('regress', 'Sent', '{"n": 1}', '{"sent_at": "12345-06-07 08:09:10.5+00"}');
SELECT evc_send('regress', 'Sent', '{"n": 1}', '{"sent_at": "0044-03-15 12:00:00+00 BC"}');
SELECT evc_send('regress', 'Sent', '{"n": 1}', '{"sent_at": "2026-01-01 10:00 Mars/Phobos"}');
SELECT evc_send('regress', 'Sent', '{"n": 1}', '{"sent_at": 5}');
SELECT evc_send('regress', 'Sent', '{"n": 1}', '"scalar"');
SELECT evc_send('regress', 'Sent', jsonb_build_object('n', 1, 'pad', repeat('x', 1100000)));
SELECT evc_send_image('cam', '\x00'::bytea);
SELECT evc_send_image('', '\x89504e470d0a1a0a'::bytea);
SELECT evc_send_image('cam', '\x89504e470d0a1a0a'::bytea, metadata => '[1]');
SELECT evc_send_image('cam', decode(repeat('00', 1000000), 'hex'), 'image/raw');
SELECT evc_create_topic('bad topic', 1);
SELECT evc_create_topic('ok_topic', 0);
SELECT evc_create_topic('ok_topic', 1, 0);
SELECT evc_create_topic('ok_topic', 1, -1, '[1]');
SELECT evc_decode_event('\xffffffff'::bytea);
SELECT count(*) AS nothing_enqueued FROM evc.outbox WHERE topic = 'regress.Sent';

-- Unregistered types go through, unvalidated, only when require_schema is off.
BEGIN;
SET LOCAL evcollector.require_schema = off;
SELECT evc_send('regress', 'Free.form', '{"anything": true}') IS NOT NULL AS sent;
SELECT topic, schema_version FROM (SELECT * FROM evc.outbox ORDER BY id DESC LIMIT 1) o;
ROLLBACK;

-- Images: content type and size from the header bytes.
BEGIN;
SELECT evc_send_image('cam', decode('474946383961400020000000', 'hex')) IS NOT NULL AS gif;
SELECT evc_decode_event(payload)->'data' AS data, evc_decode_event(payload)->>'blob_content_type' AS type
FROM (SELECT * FROM evc.outbox ORDER BY id DESC LIMIT 1) o;
ROLLBACK;

-- Privileges: senders are granted evc_producer.
CREATE ROLE evc_regress_app;
SELECT has_function_privilege('evc_regress_app', 'evc_send(text, text, jsonb, jsonb, text)', 'EXECUTE') AS before_grant;
GRANT evc_producer TO evc_regress_app;
SELECT has_function_privilege('evc_regress_app', 'evc_send(text, text, jsonb, jsonb, text)', 'EXECUTE') AS after_grant;
SELECT has_table_privilege('evc_regress_app', 'evc.outbox', 'INSERT') AS direct_insert;
DROP ROLE evc_regress_app;
