-- Archive sink, reconciled: 100,000 events produced to 16 partitions land
-- exactly once, in JSON Lines objects under deterministic keys, with one
-- index row per object and offsets committed only for what landed.  Checked
-- independently: the files are read with cat and sha256sum, and Kafka's
-- committed offsets with a kcat group consumer.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(12);

SELECT current_setting('evc_test.kafka_bootstrap') AS boot,
	   current_setting('evc_test.kafka_control') AS ctl,
	   current_setting('evc_test.bin') AS bin,
	   regexp_replace(current_setting('evcollector.storage_url'), '^file://', '') AS dir \gset

CREATE TEMP TABLE out (line text);

-- Wait up to secs seconds for a condition.
CREATE FUNCTION pg_temp.wait_for(cond text, secs int) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	ok boolean;
BEGIN
	FOR i IN 1 .. secs * 5 LOOP
		EXECUTE cond INTO ok;
		IF ok THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.2);
	END LOOP;
	RETURN false;
END $$;

SELECT format('%s/kafkactl -c %s create_topic ca_events 16 && %s/evc-produce -b %s -t ca_events -n 100000 -g ca',
	:'bin', :'ctl', :'bin', :'boot') AS cmd \gset
COPY out FROM PROGRAM :'cmd';
SELECT is((SELECT line FROM out WHERE line LIKE 'produced%'), 'produced 100000', '100,000 events produced to 16 partitions');

-- A short session: kcat joins the group after the worker stops, and a
-- member that did not leave holds the partitions until its session times
-- out (librdkafka's 45 s by default; the join waited that long).
SELECT ok(evc_consumer_create('ca', ARRAY['ca_events'], 'archive',
	'{"batch_size": 5000, "flush_interval": "300ms",
	  "kafka": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}}') > 0, 'archive consumer created');

SELECT ok(pg_temp.wait_for($$SELECT coalesce(sum(events), 0) = 100000 FROM evc.archive_files WHERE topic = 'ca_events'$$, 90),
	'the index counts 100,000 events');

-- No gaps and no overlaps: per partition the files tile the offsets from 0.
SELECT is((SELECT count(*) FROM (
	SELECT first_offset, lag(last_offset) OVER w AS prev_last, row_number() OVER w AS n
	FROM evc.archive_files WHERE topic = 'ca_events'
	WINDOW w AS (PARTITION BY partition ORDER BY first_offset)) f
	WHERE (n = 1 AND first_offset <> 0) OR (n > 1 AND first_offset <> prev_last + 1)), 0::bigint,
	'files of each partition tile its offsets without gap or overlap');

SELECT is((SELECT count(*) FROM evc.archive_files WHERE topic = 'ca_events'
	AND object_key !~ format('^ca_events/\d{4}/\d\d/\d\d/\d\d/ca_events\+%s\+%s\.jsonl$', partition, lpad(first_offset::text, 20, '0'))),
	0::bigint, 'object keys are <topic>/<YYYY>/<MM>/<DD>/<HH>/<topic>+<partition>+<first offset>.jsonl');

-- The objects on disk, read independently.
TRUNCATE out;
SELECT format('cd %s && find ca_events -name "*.jsonl" | wc -l', :'dir') AS cmd \gset
COPY out FROM PROGRAM :'cmd';
SELECT is((SELECT line::bigint FROM out), (SELECT count(*) FROM evc.archive_files WHERE topic = 'ca_events'),
	'one object per index row');

TRUNCATE out;
SELECT format('cd %s && find ca_events -name "*.jsonl" -exec cat {} + | wc -l', :'dir') AS cmd \gset
COPY out FROM PROGRAM :'cmd';
SELECT is((SELECT line FROM out), '100000', 'the objects hold 100,000 lines');

TRUNCATE out;
SELECT format($c$cd %s && find ca_events -name "*.jsonl" -exec cat {} + | grep -o '"message_id":"[^"]*"' | sort -u | wc -l$c$, :'dir') AS cmd \gset
COPY out FROM PROGRAM :'cmd';
SELECT is((SELECT line FROM out), '100000', 'with 100,000 distinct message ids');

CREATE TEMP TABLE sums (line text);
SELECT format('cd %s && find ca_events -name "*.jsonl" -exec sha256sum {} +', :'dir') AS cmd \gset
COPY sums FROM PROGRAM :'cmd';
SELECT is((SELECT count(*) FROM sums s JOIN evc.archive_files f
	ON f.object_key = split_part(s.line, '  ', 2) AND f.sha256 = split_part(s.line, '  ', 1)),
	(SELECT count(*) FROM evc.archive_files WHERE topic = 'ca_events'),
	'every object matches the sha256 of its index row');

-- Each line is a JSON object with the event, its context and its position.
TRUNCATE out;
SELECT format('cd %s && cat "$(find ca_events -name "*+3+00000000000000000000.jsonl")" | head -1', :'dir') AS cmd \gset
COPY out FROM PROGRAM :'cmd' WITH (FORMAT csv, DELIMITER E'\x01', QUOTE E'\x02');
SELECT is((SELECT (l->>'topic', l->>'partition', l->>'offset', l->>'event_name', l->'data' ? 'seq',
	l->'context'->>'message_id' ~ '^[0-9a-f-]{36}$')::text FROM (SELECT line::jsonb AS l FROM out) x),
	'(ca_events,3,0,page_view,t,t)', 'a line carries topic, partition, offset, event, context and data');

-- Offsets: stored with the index, and committed to Kafka only up to them.
SELECT is((SELECT sum(next_offset) FROM evc.consumer_offsets WHERE group_id = 'evcollector.ca'),
	100000::numeric, 'stored next offsets add up to the events landed');

SELECT evc_consumer_disable('ca') \gset
SELECT pg_temp.wait_for($$SELECT pid IS NULL FROM evc.consumers WHERE name = 'ca'$$, 10) AS stopped \gset
TRUNCATE out;
-- kcat joins the group and starts from its committed offsets (an -o would
-- override them; auto.offset.reset applies only where none is committed).
-- It must get the partitions, find each at its end and exit by itself
-- (-e), not be stopped by the timeout, having read nothing.
SELECT format('timeout 60 kcat -b %s -G evcollector.ca -X enable.auto.commit=false -X auto.offset.reset=earliest -e -q -f "%%o\n" ca_events >%s/ca_group.out 2>/dev/null; rc=$?; echo "read $(grep -c . %s/ca_group.out), exit $rc"',
	:'boot', current_setting('evc_test.tmp'), current_setting('evc_test.tmp')) AS cmd \gset
COPY out FROM PROGRAM :'cmd';
SELECT is((SELECT line FROM out), 'read 0, exit 0', 'Kafka has the offsets committed: the group has nothing left to read');

SELECT evc_consumer_drop('ca') \gset
SELECT * FROM finish();
