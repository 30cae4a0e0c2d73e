-- test/upgrade/state.sql: every kind of state evcollector keeps, made
-- through the public functions, with Kafka up.  Run in evc_test with
-- psql -v bin=... -v boot=... -v ctl=... -v c=... (the helpers' directory,
-- the test Kafka, its control port, and a client name of this run's own,
-- which names its topics and consumers too).
-- Afterwards: two schema versions and a user's schema document, four
-- consumers (table, archive, images, aggregates) with their offsets and
-- progress, landed events, an archive file, an image row, published
-- aggregates with their watermarks and state, and dead letters.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

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
	RAISE EXCEPTION 'timed out waiting for: %', cond;
END $$;
CREATE TEMP TABLE run_out (line text);

INSERT INTO evc.schema_documents (uri, document)
VALUES ('https://example.com/' || :'c' || '/room.json', '{"type": "string", "minLength": 1}');
SELECT evc_register_schema(:'c', 'reading', '{"type": "object", "required": ["room", "v"],
	"properties": {"room": {"type": "string"}, "v": {"type": "number"}}}') AS v1 \gset
SELECT evc_register_schema(:'c', 'reading', '{"type": "object", "required": ["room", "v"],
	"properties": {"room": {"type": "string"}, "v": {"type": "number"}, "note": {"type": "string"}}}') AS v2 \gset
SELECT evc_declare_aggregation(:'c', 'reading', '/v', '{count,sum}', '{/room}') AS agg \gset

SELECT format('(%1$s/kafkactl -c %2$s create_topic %3$s.reading 3; %1$s/kafkactl -c %2$s create_topic %3$s.aggregates.1m 2; %1$s/kafkactl -c %2$s create_topic %3$s.images 2) >/dev/null 2>&1; echo done',
	:'bin', :'ctl', :'c') AS cmd \gset
COPY run_out FROM PROGRAM :'cmd';
-- Short sessions: a restored or upgraded cluster's consumers join a group
-- whose old members stopped with Kafka down (they could not leave it), and
-- wait out their sessions, 45 s with librdkafka's default.
SELECT '{"flush_interval": "100ms", "kafka": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}}' AS copts \gset
SELECT evc_consumer_create(:'c' || '_rows', ARRAY[:'c' || '.reading'], 'table', :'copts') AS c1 \gset
SELECT evc_consumer_create(:'c' || '_files', ARRAY[:'c' || '.reading'], 'archive', :'copts') AS c2 \gset

-- 300 readings in three rooms, over the five minutes before the last one.
SELECT date_trunc('minute', now()) - interval '8 minutes' AS base \gset
SELECT count(evc_send(:'c', 'reading', jsonb_build_object('room', 'r' || (i % 3), 'v', i),
	jsonb_build_object('sent_at', :'base'::timestamptz + i * interval '1 second'))) AS n
FROM generate_series(1, 300) AS i \gset
SELECT evc_flush('30 s') AS left \gset
SELECT pg_temp.wait_for(format($$SELECT count(*) = 300 FROM evc.events WHERE client = %L$$, :'c'), 60) AS landed \gset
SELECT pg_temp.wait_for(format($$SELECT landed >= 300 FROM evc.consumers WHERE name = %L$$, :'c' || '_files'), 60) AS archived \gset

-- Images go to the one images topic; this run's image has a source of its own.
SELECT evc_consumer_create(:'c' || '_images', ARRAY['images'], 'images', :'copts') AS c3 \gset
SELECT evc_send_image(:'c' || '-cam', decode('89504e470d0a1a0a0000000d4948445200000280000001e008060000', 'hex'),
	'image/png', '{"site": "north"}') AS img \gset
SELECT evc_flush('30 s') AS left \gset
SELECT pg_temp.wait_for(format($$SELECT count(*) = 1 FROM evc.images WHERE source = %L$$, :'c' || '-cam'), 60) AS img_landed \gset

-- Aggregates of the closed windows, published and landed by an aggregates sink.
SELECT evc_consumer_create(:'c' || '_live', ARRAY['aggregates.1m'], 'aggregates', :'copts') AS c4 \gset
SELECT evc_aggregate('1 minute', '0', date_trunc('minute', now())) AS published \gset
SELECT evc_flush('30 s') AS left \gset
SELECT pg_temp.wait_for(format($$SELECT count(*) > 0 FROM evc.aggregates WHERE client = %L$$, :'c'), 60) AS agg_landed \gset

-- Garbage on the consumed topic: dead letters.
SELECT format('%s/evc-produce -b %s -t %s.reading -p 1 -n 3 -g junk -G', :'bin', :'boot', :'c') AS cmd \gset
COPY run_out FROM PROGRAM :'cmd';
SELECT pg_temp.wait_for(format($$SELECT count(*) >= 3 FROM evc.dead_letters WHERE source = %L$$, 'consumer:' || :'c' || '_rows'), 60) AS dead \gset
SELECT pg_temp.wait_for($$SELECT count(*) = 0 FROM evc.consumer_lag WHERE lag > 0$$, 60) AS caught_up \gset
