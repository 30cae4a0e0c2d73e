-- Upgrade with a backlog: events pending in a 0.5.0 outbox (one table,
-- deleted row by row) arrive after ALTER EXTENSION ... UPDATE moves them
-- into the rotating tables.  While the SQL is older than the library, the
-- relay refuses the old layout with a hint and waits.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS evcollector;
\ir lib.psql
SELECT plan(7);

SELECT evc_register_schema('upgrade', 'Ev', '{"type": "object", "required": ["i"]}');
SELECT is(evc_flush('20 s'), 0::bigint, 'schema published');

-- 500 encoded events, made by evc_send and rolled back, kept aside.
CREATE TABLE upg_rows (message_id uuid, topic text, key bytea, payload bytea, schema_version int, content_type text);
CREATE FUNCTION pg_temp.capture(n int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	saved upg_rows[];
BEGIN
	BEGIN
		PERFORM evc_send('upgrade', 'Ev', jsonb_build_object('i', g), key => (g % 5)::text)
		FROM generate_series(1, n) g;
		SELECT array_agg(ROW(message_id, topic, key, payload, schema_version, content_type)::upg_rows)
		INTO saved FROM evc.outbox WHERE topic = 'upgrade.Ev';
		RAISE EXCEPTION 'rolled back on purpose';
	EXCEPTION WHEN raise_exception THEN
		NULL;
	END;
	INSERT INTO upg_rows SELECT * FROM unnest(saved);
END $$;
SELECT pg_temp.capture(500);

SELECT current_setting('evc_test.tmp') || '/../postgresql.log' AS log \gset
SELECT regexp_count(pg_read_file(:'log'), 'does not have the layout') AS refused_before,
	   regexp_count(pg_read_file(:'log'), 'is of an earlier install of the extension') AS earlier_before \gset

-- A 0.5.0 install whose outbox holds them.
DROP EXTENSION evcollector CASCADE;
CREATE EXTENSION evcollector VERSION '0.5.0';
INSERT INTO evc.outbox (message_id, topic, key, payload, schema_version, content_type)
SELECT * FROM upg_rows;
SELECT is((SELECT count(*) FROM evc.outbox), 500::bigint, '500 events pending in the 0.5.0 outbox');
SELECT evc.wake_launcher();
SELECT ok(pg_temp.wait_for(format($$SELECT regexp_count(pg_read_file(%L), 'does not have the layout') > %s$$,
	:'log', :refused_before), 20),
	'the relay refuses the old layout, with a hint, and does not send');

ALTER EXTENSION evcollector UPDATE;
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'evcollector'),
	(SELECT default_version FROM pg_available_extensions WHERE name = 'evcollector'),
	'updated to the current version');
SELECT is(evc_flush('90 s'), 0::bigint, 'after the update the backlog is delivered');
SELECT is((SELECT count(DISTINCT substring(headers FROM 'message_id=([0-9a-f-]{36})'))
		   FROM pg_temp.read_topic('upgrade.Ev') t
		   WHERE substring(headers FROM 'message_id=([0-9a-f-]{36})')::uuid IN (SELECT message_id FROM upg_rows)),
	500::bigint, 'every one of the 500 events pending before the update is on the topic');
-- The progress record in Kafka (the schema's tick above) counts ticks of
-- the dropped install; its tick id is ahead of the new install's.
SELECT ok(regexp_count(pg_read_file(:'log'), 'is of an earlier install of the extension') > :earlier_before,
	'the relay did not apply the progress record of the dropped install');
DROP TABLE upg_rows;
SELECT * FROM finish();
