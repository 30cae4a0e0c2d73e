-- A prepared transaction's events: COMMIT PREPARED may run in any session,
-- so the relay hears of no commit and cannot know how low its rows are.
-- Once a prepared transaction has sent events, the relay reads from the
-- lowest id again whenever it catches up, until no transaction is prepared.
-- Here the prepared row is below 2,000 rows already delivered when it
-- commits, and it must still arrive, once.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS evcollector;
CREATE EXTENSION IF NOT EXISTS dblink;
\ir lib.psql
SELECT plan(8);

SELECT evc_register_schema('prep', 'Tick', '{"type": "object", "required": ["i"]}');
SELECT is(evc_flush('20 s'), 0::bigint, 'schema published; the outbox is empty');

SELECT pg_temp.connect_self('p');
SELECT dblink_exec('p', 'BEGIN');
SELECT is((SELECT mid FROM dblink('p',
		$$SELECT evc_send('prep', 'Tick', '{"i": 0, "prepared": true}', key => 'p')::text$$) AS t(mid text))
		IS NOT NULL, true, 'a transaction sent an event');
SELECT is(dblink_exec('p', $$PREPARE TRANSACTION 'evc_relay_prepared'$$), 'PREPARE TRANSACTION',
	'and was prepared');
SELECT is((SELECT n FROM dblink('p', $$SELECT evc_flush('1 s')$$) AS t(n bigint)), 0::bigint,
	'the session that prepared it can call evc_flush: the prepared transaction is no longer its own');
SELECT dblink_disconnect('p');

-- Rows with higher ids commit and are delivered: the relay reads past the
-- prepared row, which nobody can see yet.
SELECT is(count(evc_send('prep', 'Tick', jsonb_build_object('i', i), key => (i % 10)::text)), 2000::bigint,
	'2,000 later events committed')
FROM generate_series(1, 2000) i;
SELECT is(evc_flush('60 s'), 0::bigint, 'they are delivered while the first is still prepared');

COMMIT PREPARED 'evc_relay_prepared';
SELECT is(evc_flush('60 s'), 0::bigint, 'after COMMIT PREPARED, in another session, the outbox empties');

CREATE TEMP TABLE got AS
SELECT substring(headers FROM 'message_id=([0-9a-f-]{36})') AS mid, encode(decode(payload_hex, 'hex'), 'escape') AS body
FROM pg_temp.read_topic('prep.Tick');
SELECT is((SELECT count(*) FILTER (WHERE body LIKE '%"prepared": true%') || ' of ' || count(DISTINCT mid) FROM got),
	'1 of 2001', 'the prepared event arrived, with all the others');

SELECT * FROM finish();
