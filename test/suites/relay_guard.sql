-- The relay deletes a delivered row by its tuple id.  If, while the row's
-- message was in flight, an operator deleted the row and vacuum gave its
-- place to a new row, the relay must leave the new row alone: it checks
-- that the row at the tuple id is still the one it sent.  Here the brokers
-- are down, so the first event stays in flight while its row is deleted,
-- vacuumed away, and a second event is inserted at the same tuple id.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS evcollector;
\ir lib.psql
SELECT plan(10);

SELECT evc_register_schema('guard', 'Tick', '{"type": "object", "required": ["i"]}');
SELECT is(evc_flush('20 s'), 0::bigint, 'schema published; the outbox is empty');
-- An empty outbox on a new, empty file: the next rows take the first tuple ids.
TRUNCATE evc.outbox;
SELECT produced AS produced_before FROM evc.stats WHERE kind = 'relay' \gset

SELECT is(pg_temp.all_brokers('down'), 'okokok', 'all three brokers taken down');
SELECT evc_send('guard', 'Tick', '{"i": 1}') AS first_mid \gset
SELECT ctid::text AS first_ctid FROM evc.outbox WHERE message_id = :'first_mid' \gset
SELECT ok(pg_temp.wait_for(format('SELECT produced > %s FROM evc.stats WHERE kind = %L',
	:produced_before, 'relay'), 30), 'the relay produced the first event; it is in flight');

BEGIN;
DELETE FROM evc.outbox WHERE message_id = :'first_mid';
SELECT pg_current_xact_id()::text AS delete_xid \gset
COMMIT;
-- Vacuum removes the row once no other session's snapshot is older than
-- the delete (a worker's short transaction may be open at that moment).
SELECT ok(pg_temp.wait_for(format(
	'SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid()
	   AND backend_xmin IS NOT NULL AND backend_xmin::text::bigint <= %s)', :delete_xid), 30),
	'no other snapshot still sees the deleted row');
VACUUM evc.outbox;
SELECT evc_send('guard', 'Tick', '{"i": 2}') AS second_mid \gset
SELECT is((SELECT ctid::text FROM evc.outbox WHERE message_id = :'second_mid'), :'first_ctid',
	'the first row was deleted and vacuumed, and the second row took its tuple id');

SELECT is(pg_temp.all_brokers('up'), 'okokok', 'brokers back');
SELECT is(evc_flush('60 s'), 0::bigint, 'the outbox empties');

CREATE TEMP TABLE got AS
SELECT (ev->'data'->>'i')::int AS i
FROM (SELECT evc_decode_event(decode(payload_hex, 'hex')) AS ev FROM pg_temp.read_topic('guard.Tick')) d;
SELECT is((SELECT count(*) FROM got WHERE i = 1), 1::bigint, 'the first event, in flight already, arrived');
SELECT is((SELECT count(*) FROM got WHERE i = 2), 1::bigint,
	'the second event arrived: settling the first did not delete its row');
SELECT is((SELECT count(*) FROM evc.dead_letters WHERE message_id IN (:'first_mid', :'second_mid')), 0::bigint,
	'nothing was dead-lettered');

SELECT * FROM finish();
