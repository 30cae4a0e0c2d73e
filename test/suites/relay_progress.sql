-- A progress record with this server's key that the relay cannot check:
-- no ticks table, timeline or WAL position (another program wrote it, or a
-- library before they were written).  Its tick is far ahead and its
-- snapshot counts the next 100,000 transaction ids as completed: applied,
-- it would take every new event as sent.  The restarted relay must not
-- apply it, and must deliver what was sent while it was down.
--
-- Then records that cannot be read at all: not JSON, or JSON whose "wal"
-- or "snapshot" does not cast.  The cast's error, raised in the read's
-- transaction, failed every read after each start: the relay never
-- delivered again.  It must log them, run on, and deliver.  The first is
-- read by a restarted relay; the other two by a producer the same relay
-- recreates on a reload (its settings changed), which reads the progress
-- back the same way, and spares the launcher's restart backoff.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS evcollector;
\ir lib.psql
SELECT plan(26);

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

-- The record value, forged after the relay's own records in their
-- partition, as above.
CREATE FUNCTION pg_temp.forge_progress(value text, relay_key text, topic text, boot text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	part int;
BEGIN
	SELECT partition INTO part FROM pg_temp.read_topic(topic)
	WHERE convert_from(decode(key, 'hex'), 'UTF8') = relay_key LIMIT 1;
	PERFORM count(*) FROM pg_temp.run(format('printf ''%%s\t%%s\n'' %s %s | kcat -P -p %s -b %s -t %s -K ''\t'' 2>&1',
		quote_literal(relay_key), quote_literal(value), part, boot, topic));
END $$;

-- After a forged record, the relay stopped (old_pid) or its producer
-- recreated (recreated_before: how often the log said so before), and 10
-- events of label sent: the new producer logs the record as malformed
-- (more than warned_before times in the log), the relay runs on without an
-- error, and delivers.
CREATE FUNCTION pg_temp.malformed_checks(label text, old_pid int, warned_before int, log text,
	recreated_before int DEFAULT NULL, sent_at timestamptz DEFAULT NULL) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
	relay int;
BEGIN
	IF recreated_before IS NULL THEN
		RETURN NEXT ok(pg_temp.wait_for(format($q$SELECT EXISTS (SELECT FROM evc.workers WHERE kind = 'relay'
				AND pid IS NOT NULL AND pid <> %s AND mode = 'transactional')$q$, old_pid), 30),
			label || ': the relay restarts with a transactional producer');
	ELSE
		RETURN NEXT ok(EXISTS (SELECT FROM evc.workers WHERE kind = 'relay' AND pid = old_pid AND mode = 'transactional'),
			label || ': the same relay runs on, transactional');
	END IF;
	SELECT pid INTO relay FROM evc.workers WHERE kind = 'relay';
	RETURN NEXT is(evc_flush('30 s'), 0::bigint, label || ': the events leave the outbox');
	RETURN NEXT ok(regexp_count(pg_read_file(log), 'is malformed; it is not applied') > warned_before,
		label || ': the relay logged that the record is malformed');
	RETURN NEXT ok(EXISTS (SELECT FROM evc.workers WHERE kind = 'relay' AND pid = relay
			AND coalesce(last_error_at < CASE WHEN recreated_before IS NULL THEN started_at ELSE sent_at END, true)),
		label || ': the relay runs on, with no error since ' ||
			CASE WHEN recreated_before IS NULL THEN 'it started' ELSE 'the events were sent' END);
	RETURN NEXT is((SELECT max(id) < 1000000 FROM evc.outbox_ticks), true, label || ': its tick was not recorded');
	RETURN NEXT is((SELECT count(DISTINCT substring(headers FROM 'message_id=([0-9a-f-]{36})'))
			FROM pg_temp.read_topic('progress.Ev')
			WHERE substring(headers FROM 'message_id=([0-9a-f-]{36})')::uuid IN (SELECT mid FROM progress_sent)),
		10::bigint, label || ': each of the 10 events is on the topic');
END $$;

-- Not JSON.
TRUNCATE progress_sent;
SELECT regexp_count(pg_read_file(:'log'), 'is malformed; it is not applied') AS warned_before \gset
SELECT pg_temp.forge_progress('not a progress record', :'relay_key', :'progress_topic', :'boot');
SELECT pid AS relay_pid FROM evc.workers WHERE kind = 'relay' \gset
SELECT pg_terminate_backend(:relay_pid) \gset
INSERT INTO progress_sent SELECT evc_send('progress', 'Ev', jsonb_build_object('i', g)) FROM generate_series(11, 20) g;
SELECT * FROM pg_temp.malformed_checks('not JSON', :relay_pid, :warned_before, :'log');

-- A record that would be applied (this install's ticks table, this
-- server's timeline) but for its WAL position, which is no LSN.
SELECT format('{"tick": 1000000, "snapshot": "%s:%s:", "events": 5, "system_identifier": "%s", "database": %s, '
			  '"ticks_table": %s, "timeline": %s, "wal": "zz"}',
			  :far, :far, (SELECT system_identifier FROM pg_control_system()),
			  (SELECT oid FROM pg_database WHERE datname = current_database()),
			  'evc.outbox_ticks'::regclass::oid, (SELECT timeline_id FROM pg_control_checkpoint())) AS forged \gset
TRUNCATE progress_sent;
SELECT regexp_count(pg_read_file(:'log'), 'is malformed; it is not applied') AS warned_before \gset
SELECT pg_temp.forge_progress(:'forged', :'relay_key', :'progress_topic', :'boot');
SELECT pid AS relay_pid FROM evc.workers WHERE kind = 'relay' \gset
SELECT regexp_count(pg_read_file(:'log'), 'recreating the kafka producer') AS recreated_before \gset
ALTER SYSTEM SET evcollector.kafka_properties = 'client.id=evc-relay-progress-wal';
SELECT pg_reload_conf() \gset
-- Sent once the new producer is in place: the old one would otherwise
-- deliver them with a progress record of its own, after the forged one.
SELECT ok(pg_temp.wait_for(format($$SELECT regexp_count(pg_read_file(%L), 'recreating the kafka producer') > %s
		AND EXISTS (SELECT FROM evc.workers WHERE kind = 'relay' AND mode = 'transactional')$$,
		:'log', :recreated_before), 30),
	'"wal": "zz": the relay recreates its producer on a reload');
SELECT clock_timestamp() AS sent_at \gset
INSERT INTO progress_sent SELECT evc_send('progress', 'Ev', jsonb_build_object('i', g)) FROM generate_series(21, 30) g;
SELECT * FROM pg_temp.malformed_checks('"wal": "zz"', :relay_pid, :warned_before, :'log', :recreated_before, :'sent_at');

-- The same with a valid WAL position and a snapshot that is none.
SELECT replace(replace(:'forged', '"wal": "zz"', format('"wal": "%s"', pg_current_wal_insert_lsn())),
			   format('"snapshot": "%s:%s:"', :far, :far), '"snapshot": "garbage"') AS forged \gset
TRUNCATE progress_sent;
SELECT regexp_count(pg_read_file(:'log'), 'is malformed; it is not applied') AS warned_before \gset
SELECT pg_temp.forge_progress(:'forged', :'relay_key', :'progress_topic', :'boot');
SELECT pid AS relay_pid FROM evc.workers WHERE kind = 'relay' \gset
SELECT regexp_count(pg_read_file(:'log'), 'recreating the kafka producer') AS recreated_before \gset
ALTER SYSTEM SET evcollector.kafka_properties = 'client.id=evc-relay-progress-snapshot';
SELECT pg_reload_conf() \gset
-- Sent once the new producer is in place: the old one would otherwise
-- deliver them with a progress record of its own, after the forged one.
SELECT ok(pg_temp.wait_for(format($$SELECT regexp_count(pg_read_file(%L), 'recreating the kafka producer') > %s
		AND EXISTS (SELECT FROM evc.workers WHERE kind = 'relay' AND mode = 'transactional')$$,
		:'log', :recreated_before), 30),
	'"snapshot": "garbage": the relay recreates its producer on a reload');
SELECT clock_timestamp() AS sent_at \gset
INSERT INTO progress_sent SELECT evc_send('progress', 'Ev', jsonb_build_object('i', g)) FROM generate_series(31, 40) g;
SELECT * FROM pg_temp.malformed_checks('"snapshot": "garbage"', :relay_pid, :warned_before, :'log', :recreated_before, :'sent_at');
DROP TABLE progress_sent;
ALTER SYSTEM RESET evcollector.kafka_properties;
SELECT pg_reload_conf() \gset
SELECT * FROM finish();
