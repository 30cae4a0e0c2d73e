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

ALTER SYSTEM SET evcollector.outbox_rotate_interval = '1s';
SELECT pg_reload_conf();
SELECT evc_register_schema('rotate', 'Tick', '{"type": "object", "required": ["i"]}');
SELECT is(evc_flush('20 s'), 0::bigint, 'schema published; the outbox is empty');

SELECT n AS long_table FROM evc.outbox_tables WHERE current \gset
SELECT pg_temp.connect_self('long');
SELECT dblink_exec('long', 'BEGIN');
SELECT is((SELECT mid FROM dblink('long',
		$$SELECT evc_send('rotate', 'Tick', '{"i": 0, "long": true}', key => 'k')::text$$) AS t(mid text))
		IS NOT NULL, true, 'the long transaction sent its event and stays open');
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
SELECT ok(pg_temp.wait_for(format('SELECT emptied FROM evc.outbox_tables WHERE n = %s', :long_table), 20),
	'then the retired table is emptied');
SELECT is((SELECT pg_relation_size(format('evc.outbox_%s', :long_table)::regclass)), 0::bigint,
	'by TRUNCATE: it has no pages left');

CREATE TEMP TABLE got AS
SELECT substring(headers FROM 'message_id=([0-9a-f-]{36})') AS mid, encode(decode(payload_hex, 'hex'), 'escape') AS body
FROM pg_temp.read_topic('rotate.Tick');
SELECT is((SELECT count(*) FROM got WHERE body LIKE '%"long": true%'), 1::bigint,
	'the long transaction''s event arrived, once');
SELECT is((SELECT count(*) - count(DISTINCT mid) FROM got), 0::bigint, 'no event arrived twice');

ALTER SYSTEM RESET evcollector.outbox_rotate_interval;
SELECT pg_reload_conf();
SELECT * FROM finish();
