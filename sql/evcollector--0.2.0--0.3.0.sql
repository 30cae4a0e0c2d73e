/* evcollector 0.3.0: evc_send, the transactional outbox and the relay. */
\echo Use "ALTER EXTENSION evcollector UPDATE TO '0.3.0'" to load this file. \quit

-- Events wait here, written in the sender's transaction, until the relay
-- has Kafka's acknowledgement; then their row is deleted.  A row that
-- failed keeps its attempts and last error and is retried with backoff.
CREATE TABLE evc.outbox (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	message_id uuid NOT NULL,
	topic text NOT NULL,
	key bytea,
	payload bytea NOT NULL,
	schema_version int NOT NULL DEFAULT 0,
	content_type text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	attempts int NOT NULL DEFAULT 0,
	last_error text,
	last_attempt_at timestamptz,
	next_attempt_at timestamptz
) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000);
COMMENT ON TABLE evc.outbox IS 'events committed and not yet acknowledged by Kafka';

-- What could not be delivered or landed, with the reason.  Nothing is
-- dropped: a row leaves only when an operator deals with it.
CREATE TABLE evc.dead_letters (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	message_id uuid,
	topic text,
	partition int,
	"offset" bigint,
	key bytea,
	payload bytea,
	error text NOT NULL,
	source text NOT NULL,
	attempts int NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE evc.dead_letters IS 'events evcollector could not deliver or land, with the reason';
CREATE INDEX ON evc.dead_letters (message_id);

CREATE VIEW evc.outbox_status AS
SELECT count(*) AS pending,
	   count(*) FILTER (WHERE attempts > 0) AS failing,
	   min(created_at) AS oldest,
	   coalesce(max(attempts), 0) AS max_attempts,
	   (SELECT last_error FROM evc.outbox WHERE last_error IS NOT NULL
		ORDER BY last_attempt_at DESC LIMIT 1) AS last_error,
	   pg_total_relation_size('evc.outbox') AS bytes
FROM evc.outbox;
COMMENT ON VIEW evc.outbox_status IS 'backlog of the outbox: pending and failing events, the last error';

CREATE FUNCTION evc_stats(
	OUT kind text, OUT name text, OUT pid int, OUT sent bigint,
	OUT produced bigint, OUT delivered bigint, OUT retried bigint,
	OUT consumed bigint, OUT landed bigint, OUT dead_lettered bigint,
	OUT bytes_in bigint, OUT bytes_out bigint, OUT batches bigint,
	OUT latency_p50_ms float8, OUT latency_p99_ms float8, OUT latency_avg_ms float8,
	OUT last_error text, OUT last_error_at timestamptz)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'evc_stats';
COMMENT ON FUNCTION evc_stats() IS 'evcollector counters per worker, and their total';
CREATE VIEW evc.stats AS SELECT * FROM evc_stats();
COMMENT ON VIEW evc.stats IS 'evcollector counters per worker and in total (kind = ''total'')';
REVOKE ALL ON FUNCTION evc_stats() FROM PUBLIC;
CREATE FUNCTION evc_stats_reset()
RETURNS void
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'evc_stats_reset';
COMMENT ON FUNCTION evc_stats_reset() IS 'zero the counters shown by evc.stats';
REVOKE ALL ON FUNCTION evc_stats_reset() FROM PUBLIC;
REVOKE ALL ON evc.stats FROM PUBLIC;

CREATE OR REPLACE VIEW evc.wanted_workers (kind, name, function, arg) AS
SELECT 'relay'::text, 'relay'::text, 'evc_relay_main'::text, 0;

CREATE FUNCTION evc_send(client text, event_name text, data jsonb,
						 context jsonb DEFAULT '{}', key text DEFAULT NULL)
RETURNS uuid
LANGUAGE C VOLATILE SECURITY DEFINER
AS 'MODULE_PATHNAME', 'evc_send';
COMMENT ON FUNCTION evc_send(text, text, jsonb, jsonb, text) IS
	'validate an event against its schema and send it to Kafka when the transaction commits';

CREATE FUNCTION evc_send_image(source text, image bytea, content_type text DEFAULT NULL,
							   metadata jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE C VOLATILE SECURITY DEFINER
AS 'MODULE_PATHNAME', 'evc_send_image';
COMMENT ON FUNCTION evc_send_image(text, bytea, text, jsonb) IS
	'send an image to the images topic when the transaction commits';

CREATE FUNCTION evc_flush(timeout interval DEFAULT '30 seconds')
RETURNS bigint
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
AS 'MODULE_PATHNAME', 'evc_flush';
COMMENT ON FUNCTION evc_flush(interval) IS
	'wait until the outbox is delivered or the timeout passes; returns the events still pending';

CREATE FUNCTION evc_create_topic(name text, partitions int, replication_factor int DEFAULT -1,
								 config jsonb DEFAULT '{}')
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'evc_create_topic';
COMMENT ON FUNCTION evc_create_topic(text, int, int, jsonb) IS 'create a Kafka topic through the Admin API';

CREATE FUNCTION evc_decode_event(payload bytea)
RETURNS jsonb
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'evc_decode_event';
COMMENT ON FUNCTION evc_decode_event(bytea) IS 'decode an evcollector.Event protobuf message to jsonb';

-- Privileges: applications that send events are granted evc_producer.
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'evc_producer') THEN
		CREATE ROLE evc_producer NOLOGIN;
	END IF;
END $$;
REVOKE ALL ON FUNCTION evc_send(text, text, jsonb, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION evc_send_image(text, bytea, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION evc_flush(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION evc_create_topic(text, int, int, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evc_send(text, text, jsonb, jsonb, text) TO evc_producer;
GRANT EXECUTE ON FUNCTION evc_send_image(text, bytea, text, jsonb) TO evc_producer;
GRANT EXECUTE ON FUNCTION evc_flush(interval) TO evc_producer;
GRANT USAGE ON SCHEMA evc TO evc_producer;
GRANT SELECT ON evc.outbox_status TO evc_producer;

SELECT evc.wake_launcher();
