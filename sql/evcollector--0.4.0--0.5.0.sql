/* evcollector 0.4.0 -> 0.5.0: aggregation, the aggregates sink, live pushes, metrics and lineage. */
\echo Use "ALTER EXTENSION evcollector UPDATE TO '0.5.0'" to load this file. \quit

/* ------------------------------------------------------------------------
 * Aggregation declarations
 * ------------------------------------------------------------------------
 *
 * One row per aggregated event type, written by evc_declare_aggregation.
 * Pointers are JSON pointers (RFC 6901) into the event's data.  The
 * functions of an event are the declared ones plus, when function_pointer
 * is set, the one its data names there.
 */
CREATE TABLE evc.aggregations (
	id serial PRIMARY KEY,
	client text NOT NULL,
	event_name text NOT NULL,
	value_pointer text,
	functions text[] NOT NULL CHECK (functions <@ '{count,sum,avg,min,max}'),
	group_by text[] NOT NULL DEFAULT '{}',
	function_pointer text,
	created_at timestamptz NOT NULL DEFAULT now(),
	created_by name NOT NULL DEFAULT current_user,
	updated_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (client, event_name)
);
COMMENT ON TABLE evc.aggregations IS 'aggregations declared with evc_declare_aggregation, one per event type';

-- Window lengths evc_aggregate has run for; the invalidation log is kept
-- until each of them has read it.
CREATE TABLE evc.aggregate_windows (
	window_length interval PRIMARY KEY,
	name text NOT NULL UNIQUE,
	registered_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE evc.aggregate_windows IS 'window lengths evc_aggregate runs for (1m, 5m, ...)';

-- Every window of this length that ends at or before aggregated_upto has
-- been published for the declaration.
CREATE TABLE evc.aggregate_watermarks (
	aggregation_id int NOT NULL REFERENCES evc.aggregations (id) ON DELETE CASCADE,
	window_length interval NOT NULL REFERENCES evc.aggregate_windows (window_length),
	aggregated_upto timestamptz NOT NULL,
	runs bigint NOT NULL DEFAULT 0,
	published bigint NOT NULL DEFAULT 0,
	last_run_at timestamptz,
	PRIMARY KEY (aggregation_id, window_length)
);
COMMENT ON TABLE evc.aggregate_watermarks IS 'how far evc_aggregate has published each declaration, per window length';

/*
 * What evc_aggregate published last for each aggregate: a re-run compares
 * with it and publishes only what changed, with the next revision.  It is
 * the producing side's record; evc.aggregates is the consuming side's.
 */
CREATE TABLE evc.aggregate_state (
	client text NOT NULL,
	event_name text NOT NULL,
	window_length interval NOT NULL,
	window_start timestamptz NOT NULL,
	function text NOT NULL,
	group_key text NOT NULL,
	value numeric NOT NULL,
	count bigint NOT NULL,
	revision int NOT NULL,
	published_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (client, event_name, window_length, window_start, function, group_key)
);
COMMENT ON TABLE evc.aggregate_state IS 'the last published revision of each aggregate';

/*
 * The invalidation log.  Each transaction that inserts into evc.events
 * writes one row per event type at commit, with the range of sent_at it
 * inserted.  Each evc_aggregate(window) run reads the rows it has not read
 * yet, rechecks the windows below its watermark that they touch, and marks
 * them read; a row goes once every window length has read it.  Reading
 * "every visible row not read yet", never "rows after the last id seen",
 * misses nothing when transactions commit out of order.
 */
CREATE TABLE evc.aggregate_invalidations (
	client text NOT NULL,
	event_name text NOT NULL,
	lo timestamptz NOT NULL,
	hi timestamptz NOT NULL,
	done interval[] NOT NULL DEFAULT '{}',
	created_at timestamptz NOT NULL DEFAULT now()
) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000);
COMMENT ON TABLE evc.aggregate_invalidations IS 'sent_at ranges inserted into evc.events, per transaction and event type, until every window length has read them';

CREATE FUNCTION evc.note_event_insert()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'evc_note_event_insert';
REVOKE ALL ON FUNCTION evc.note_event_insert() FROM PUBLIC;

-- Enabled by evc_declare_aggregation while at least one declaration exists,
-- so that evc.events pays nothing for it otherwise.
CREATE TRIGGER events_aggregate_log
	AFTER INSERT ON evc.events
	FOR EACH ROW EXECUTE FUNCTION evc.note_event_insert();
ALTER TABLE evc.events DISABLE TRIGGER events_aggregate_log;

/*
 * Aggregation reads one event type over a time range: the btree leads
 * with client and event_name so that the range is exact.  It replaces the
 * (event_name, sent_at) index of 0.4.0, which it serves as well.
 */
CREATE INDEX events_type_sent_at_idx ON evc.events (client, event_name, sent_at);
DROP INDEX evc.events_name_sent_at_idx;

-- The number at a JSON pointer path, or NULL when it is absent or not a number.
CREATE FUNCTION evc.json_number(data jsonb, path text[])
RETURNS numeric
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'evc_json_number';

/*
 * The same, for evc_aggregate's own query only.  It is declared VOLATILE
 * although it is not, because the planner then evaluates it once per event
 * in the subquery that extracts the number, instead of copying the call
 * into each aggregate (count, sum, avg, min, max) that uses the number; it
 * stays PARALLEL SAFE, so the query still runs in parallel.
 */
CREATE FUNCTION evc.json_number_once(data jsonb, path text[])
RETURNS numeric
LANGUAGE C VOLATILE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'evc_json_number';

CREATE FUNCTION evc_declare_aggregation(client text, event_name text, value text DEFAULT NULL,
	functions text[] DEFAULT '{count}', group_by text[] DEFAULT '{}', function_field text DEFAULT NULL)
RETURNS int
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'evc_declare_aggregation';
COMMENT ON FUNCTION evc_declare_aggregation(text, text, text, text[], text[], text) IS
	'declare how events of client.event_name are aggregated; returns the declaration id';

CREATE FUNCTION evc_drop_aggregation(client text, event_name text)
RETURNS void
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'evc_drop_aggregation';
COMMENT ON FUNCTION evc_drop_aggregation(text, text) IS 'stop aggregating client.event_name';

CREATE FUNCTION evc_aggregate(window_length interval DEFAULT '1 minute', lateness interval DEFAULT '0',
	upto timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'evc_aggregate';
COMMENT ON FUNCTION evc_aggregate(interval, interval, timestamptz) IS
	'publish the aggregates of closed windows not published yet, and corrections; returns how many were published';

GRANT USAGE ON SCHEMA evc TO evc_registry_admin;
GRANT SELECT ON evc.aggregations TO evc_registry_admin;
REVOKE ALL ON FUNCTION evc_declare_aggregation(text, text, text, text[], text[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION evc_drop_aggregation(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evc_declare_aggregation(text, text, text, text[], text[], text) TO evc_registry_admin;
GRANT EXECUTE ON FUNCTION evc_drop_aggregation(text, text) TO evc_registry_admin;
REVOKE ALL ON FUNCTION evc_aggregate(interval, interval, timestamptz) FROM PUBLIC;

/* ------------------------------------------------------------------------
 * The aggregates sink
 * ------------------------------------------------------------------------
 */
CREATE TABLE evc.aggregates (
	client text NOT NULL,
	event_name text NOT NULL,
	function text NOT NULL,
	group_key text NOT NULL,
	window_start timestamptz NOT NULL,
	window_length interval NOT NULL,
	value numeric NOT NULL,
	count bigint NOT NULL,
	revision int NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (client, event_name, function, group_key, window_start, window_length)
);
-- What a live client asks for: the latest windows of its rooms.
CREATE INDEX aggregates_room_idx ON evc.aggregates (group_key, window_length, window_start);
COMMENT ON TABLE evc.aggregates IS 'aggregates landed by aggregates sinks; the highest revision wins';

ALTER TABLE evc.consumer_defs DROP CONSTRAINT consumer_defs_sink_check;
ALTER TABLE evc.consumer_defs ADD CONSTRAINT consumer_defs_sink_check
	CHECK (sink IN ('archive', 'images', 'table', 'aggregates'));

SELECT pg_catalog.pg_extension_config_dump('evc.aggregations', '');
SELECT pg_catalog.pg_extension_config_dump('evc.aggregations_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('evc.aggregate_windows', '');
SELECT pg_catalog.pg_extension_config_dump('evc.aggregate_watermarks', '');
SELECT pg_catalog.pg_extension_config_dump('evc.aggregate_state', '');
SELECT pg_catalog.pg_extension_config_dump('evc.aggregate_invalidations', '');
SELECT pg_catalog.pg_extension_config_dump('evc.aggregates', '');

/* ------------------------------------------------------------------------
 * Metrics
 * ------------------------------------------------------------------------
 *
 * evc_stats gains "failed" and an "aggregator" row for evc_aggregate.
 */
DROP VIEW evc.stats;
DROP FUNCTION evc_stats();
CREATE FUNCTION evc_stats(
	OUT kind text, OUT name text, OUT pid int, OUT sent bigint,
	OUT produced bigint, OUT delivered bigint, OUT failed bigint, OUT retried bigint,
	OUT consumed bigint, OUT landed bigint, OUT dead_lettered bigint,
	OUT bytes_in bigint, OUT bytes_out bigint, OUT batches bigint,
	OUT latency_p50_ms float8, OUT latency_p99_ms float8, OUT latency_avg_ms float8,
	OUT last_error text, OUT last_error_at timestamptz)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'evc_stats';
COMMENT ON FUNCTION evc_stats() IS 'evcollector counters per worker, for evc_aggregate, and their total';
CREATE VIEW evc.stats AS SELECT * FROM evc_stats();
COMMENT ON VIEW evc.stats IS 'evcollector counters per worker and in total (kind = ''total''); kind = ''aggregator'' is evc_aggregate';
REVOKE ALL ON FUNCTION evc_stats() FROM PUBLIC;
REVOKE ALL ON evc.stats FROM PUBLIC;

-- What each running consumer last saw of its partitions (shared memory).
CREATE FUNCTION evc_consumer_watermarks(OUT consumer text, OUT topic text, OUT partition int,
	OUT low_watermark bigint, OUT high_watermark bigint, OUT observed_at timestamptz)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'evc_consumer_watermarks';
REVOKE ALL ON FUNCTION evc_consumer_watermarks() FROM PUBLIC;

/*
 * Lag per partition: in Kafka and not landed yet.  next_offset is what the
 * consumer group landed (evc.consumer_offsets); before it has landed
 * anything, lag counts from the partition's low watermark.
 */
CREATE VIEW evc.consumer_lag AS
SELECT c.name AS consumer, c.group_id, w.topic, w.partition, o.next_offset,
	   w.high_watermark,
	   greatest(w.high_watermark - coalesce(o.next_offset, w.low_watermark), 0) AS lag,
	   w.observed_at
FROM evc_consumer_watermarks() w
JOIN evc.consumers c ON c.name = w.consumer
LEFT JOIN evc.consumer_offsets o ON o.group_id = c.group_id AND o.topic = w.topic AND o.partition = w.partition;
COMMENT ON VIEW evc.consumer_lag IS 'consumer lag per partition: high watermark minus the next offset to land';
REVOKE ALL ON evc.consumer_lag FROM PUBLIC;

CREATE FUNCTION evc_metrics()
RETURNS text
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'evc_metrics';
COMMENT ON FUNCTION evc_metrics() IS 'evcollector metrics in Prometheus text exposition format';
REVOKE ALL ON FUNCTION evc_metrics() FROM PUBLIC;

/* ------------------------------------------------------------------------
 * Decoding any message of the wire format
 * ------------------------------------------------------------------------
 */
CREATE FUNCTION evc_decode(payload bytea, message text DEFAULT 'evcollector.Event')
RETURNS jsonb
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'evc_decode';
COMMENT ON FUNCTION evc_decode(bytea, text) IS
	'decode a message of proto/evcollector.proto (Event, SchemaRecord, AggregatedEvent, Metrics, ...) to jsonb';

/* ------------------------------------------------------------------------
 * Lineage
 * ------------------------------------------------------------------------
 */
CREATE FUNCTION evc_trace(message_id uuid, OUT stage text, OUT at timestamptz, OUT detail jsonb)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'evc_trace';
COMMENT ON FUNCTION evc_trace(uuid) IS
	'where an event is now: outbox, Kafka position, archive object and line, events or images row, dead letters';
REVOKE ALL ON FUNCTION evc_trace(uuid) FROM PUBLIC;
