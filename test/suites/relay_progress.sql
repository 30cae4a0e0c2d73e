-- A progress record with this server's key that the relay cannot check:
-- no ticks table, timeline or WAL position (another program wrote it, or a
-- library before they were written).  Its tick is far ahead and its
-- snapshot counts the next 100,000 transaction ids as completed: applied,
-- it would take every new event as sent.  The restarted relay must not
-- apply it, and must deliver what was sent while it was down.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS evcollector;
\ir lib.psql
SELECT plan(6);

SELECT evc_register_schema('progress', 'Ev', '{"type": "object", "required": ["i"]}');
SELECT evc_send('progress', 'Ev', '{"i": 0}');
SELECT is(evc_flush('30 s'), 0::bigint, 'the relay delivers');

SELECT current_setting('evc_test.tmp') || '/../postgresql.log' AS log \gset
SELECT regexp_count(pg_read_file(:'log'), 'is incomplete; it is not applied') AS refused_before \gset

-- The record, produced with kcat under the relay's key.
SELECT format('evc-%s-%s', (SELECT system_identifier FROM pg_control_system()),
			  (SELECT oid FROM pg_database WHERE datname = current_database())) AS relay_key,
	   coalesce(current_setting('evcollector.topic_prefix', true), '') || '_evc_relay' AS progress_topic,
	   pg_current_xact_id()::text::bigint + 100000 AS far \gset
SELECT format('{"tick": 1000000, "snapshot": "%s:%s:", "events": 5}', :far, :far) AS forged \gset
-- Into the partition of the relay's own records, after them.
SELECT partition AS relay_partition FROM pg_temp.read_topic(:'progress_topic')
WHERE convert_from(decode(key, 'hex'), 'UTF8') = :'relay_key' LIMIT 1 \gset
SELECT count(*) FROM pg_temp.run(format('printf ''%%s\t%%s\n'' %s %s | kcat -P -p %s -b %s -t %s -K ''\t'' 2>&1',
	quote_literal(:'relay_key'), quote_literal(:'forged'), :relay_partition, :'boot', :'progress_topic')) \gset

-- A new relay, whose new producer reads the progress back, and 10 events.
SELECT pid AS relay_pid FROM evc.workers WHERE kind = 'relay' \gset
SELECT pg_terminate_backend(:relay_pid) \gset
-- Sent while no relay runs (the launcher restarts it after a second): the
-- new relay's first tick would cover them.
CREATE TABLE progress_sent (mid uuid);
SELECT format('INSERT INTO progress_sent SELECT evc_send(''progress'', ''Ev'', ''{"i": %s}'')', g)
FROM generate_series(1, 10) g \gexec
SELECT ok(pg_temp.wait_for(format($$SELECT EXISTS (SELECT FROM evc.workers WHERE kind = 'relay'
		AND pid IS NOT NULL AND pid <> %s AND mode = 'transactional')$$, :relay_pid), 30),
	'the relay restarts with a transactional producer');

SELECT is(evc_flush('30 s'), 0::bigint, 'the events leave the outbox');
SELECT ok(regexp_count(pg_read_file(:'log'), 'is incomplete; it is not applied') > :refused_before,
	'the relay logged that it did not apply the record');
SELECT is((SELECT max(id) < 1000000 FROM evc.outbox_ticks), true, 'its tick was not recorded');
SELECT is((SELECT count(DISTINCT substring(headers FROM 'message_id=([0-9a-f-]{36})'))
		   FROM pg_temp.read_topic('progress.Ev')
		   WHERE substring(headers FROM 'message_id=([0-9a-f-]{36})')::uuid IN (SELECT mid FROM progress_sent)),
	10::bigint, 'each of the 10 events is on the topic');
DROP TABLE progress_sent;
SELECT * FROM finish();
