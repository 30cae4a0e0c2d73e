-- Rotation under a long transaction.  A transaction opens and sends before
-- the outbox tables switch, and commits after two switches.  While it is
-- open the table it wrote to is not emptied (a delivered tick's xmin cannot
-- pass the switch mark); once it commits, its event arrives, and the table
-- is emptied with TRUNCATE.  Meanwhile every other event arrives once.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS evcollector;
CREATE EXTENSION IF NOT EXISTS dblink;
\ir lib.psql
SELECT plan(12);
SET client_min_messages = warning;

ALTER SYSTEM SET evcollector.outbox_rotate_interval = '1s';
SELECT pg_reload_conf();
SELECT evc_register_schema('rotate', 'Tick', '{"type": "object", "required": ["i"]}');
SELECT is(evc_flush('20 s'), 0::bigint, 'schema published; the outbox is empty');

SELECT n AS long_table FROM evc.outbox_tables WHERE current \gset
SELECT pg_temp.connect_self('long');
SELECT dblink_exec('long', 'BEGIN');
SELECT mid AS long_mid FROM dblink('long',
	$$SELECT evc_send('rotate', 'Tick', '{"i": 0, "long": true}', key => 'k')::text$$) AS t(mid text) \gset
SELECT ok(:'long_mid'::uuid IS NOT NULL, 'the long transaction sent its event and stays open');
SELECT pg_relation_filenode(format('evc.outbox_%s', :long_table)::regclass) AS long_filenode \gset
SELECT is((SELECT count(*) FROM dblink('long', format('SELECT 1 FROM evc.outbox_%s WHERE topic = %L', :long_table, 'rotate.Tick')) AS t(x int)),
	1::bigint, 'its row is in the table that was current');

-- Events keep coming, one transaction a second, so the tables switch.
CREATE PROCEDURE pg_temp.send_for(secs int) LANGUAGE plpgsql AS $$
BEGIN
	FOR s IN 1 .. secs * 4 LOOP
		PERFORM evc_send('rotate', 'Tick', jsonb_build_object('i', s * 1000 + g), key => (g % 7)::text)
		FROM generate_series(1, 250) g;
		COMMIT;
		PERFORM pg_sleep(0.25);
	END LOOP;
END $$;
CALL pg_temp.send_for(4);
SELECT ok((SELECT NOT current FROM evc.outbox_tables WHERE n = :long_table),
	'inserts switched away from the long transaction''s table');
SELECT is(evc_flush('1 s'), (SELECT count(*) FROM evc.outbox), 'evc_flush does not wait for the open transaction');
SELECT ok((SELECT NOT emptied AND retired_xid IS NOT NULL FROM evc.outbox_tables WHERE n = :long_table),
	'the retired table is not emptied while the long transaction is open');
SELECT is((SELECT count(*) FROM evc.outbox WHERE topic = 'rotate.Tick' AND evc_decode_event(payload)->'data' ? 'long'),
	0::bigint, 'the uncommitted event is not pending yet');

SELECT dblink_exec('long', 'COMMIT');
SELECT dblink_disconnect('long');
SELECT is(evc_flush('30 s'), 0::bigint, 'after its commit, everything is delivered');
-- With a 1 s interval the emptied table may be current again by now (a
-- switch needs the next table emptied).  The wait reads only the state
-- table: a reader of the outbox table would hold the lock TRUNCATE needs.
-- Polled one transaction at a time: a statement that waits 20 s would
-- hold back the very horizon it waits for.
CREATE PROCEDURE pg_temp.await_emptied(t int, secs int) LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1 .. secs * 5 LOOP
		EXIT WHEN (SELECT emptied OR current FROM evc.outbox_tables WHERE n = t);
		COMMIT;
		PERFORM pg_sleep(0.2);
	END LOOP;
END $$;
CALL pg_temp.await_emptied(:long_table, 20);
SELECT ok((SELECT emptied OR current FROM evc.outbox_tables WHERE n = :long_table)
	AND NOT EXISTS (SELECT FROM evc.outbox_0 WHERE message_id = :'long_mid')
	AND NOT EXISTS (SELECT FROM evc.outbox_1 WHERE message_id = :'long_mid')
	AND NOT EXISTS (SELECT FROM evc.outbox_2 WHERE message_id = :'long_mid'),
	'then the retired table is emptied');
SELECT isnt(pg_relation_filenode(format('evc.outbox_%s', :long_table)::regclass), :long_filenode::oid,
	'by TRUNCATE (a new relfilenode), not by deleting rows');
CREATE TEMP TABLE got AS
SELECT substring(headers FROM 'message_id=([0-9a-f-]{36})') AS mid, encode(decode(payload_hex, 'hex'), 'escape') AS body
FROM pg_temp.read_topic('rotate.Tick');
SELECT is((SELECT count(*) FROM got WHERE mid = :'long_mid'), 1::bigint,
	'the long transaction''s event arrived, once');
SELECT is((SELECT count(*) - count(DISTINCT mid) FROM got), 0::bigint, 'no event arrived twice');

ALTER SYSTEM RESET evcollector.outbox_rotate_interval;
SELECT pg_reload_conf();
SELECT * FROM finish();
