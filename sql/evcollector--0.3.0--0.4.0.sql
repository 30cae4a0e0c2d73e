/* evcollector 0.3.0 -> 0.4.0: consumer workers and their sinks. */
\echo Use "ALTER EXTENSION evcollector UPDATE TO '0.4.0'" to load this file. \quit

/*
 * One row per consumer.  Manage it with evc_consumer_create/drop/enable/
 * disable; the launcher runs one worker per enabled row.  The view
 * evc.consumers shows it with the worker's state and progress.
 */
CREATE TABLE evc.consumer_defs (
	id serial PRIMARY KEY,
	name text NOT NULL UNIQUE,
	topics text[] NOT NULL CHECK (cardinality(topics) > 0),
	sink text NOT NULL CHECK (sink IN ('archive', 'images', 'table')),
	options jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(options) = 'object'),
	enabled boolean NOT NULL DEFAULT true,
	created_at timestamptz NOT NULL DEFAULT now(),
	created_by name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE evc.consumer_defs IS 'evcollector consumers; use evc_consumer_create and the view evc.consumers';

/*
 * Progress counters, written in the same transaction as the data they
 * count, so they always agree with the landed rows.
 */
CREATE TABLE evc.consumer_progress (
	consumer_id int PRIMARY KEY REFERENCES evc.consumer_defs (id) ON DELETE CASCADE,
	consumed bigint NOT NULL DEFAULT 0,
	landed bigint NOT NULL DEFAULT 0,
	dead_lettered bigint NOT NULL DEFAULT 0,
	skipped bigint NOT NULL DEFAULT 0,
	bytes bigint NOT NULL DEFAULT 0,
	batches bigint NOT NULL DEFAULT 0,
	last_batch_at timestamptz
);
COMMENT ON TABLE evc.consumer_progress IS 'what each consumer has landed; updated with every batch';

/*
 * The next offset to land per consumer group and partition.  It is the
 * source of truth: it moves in the same transaction as the index rows, and
 * the worker commits the same offset to Kafka only after that transaction
 * committed.  A redelivered message below it is skipped, and the row lock
 * serialises two workers that briefly hold the same partition.
 */
CREATE TABLE evc.consumer_offsets (
	group_id text NOT NULL,
	topic text NOT NULL,
	partition int NOT NULL,
	next_offset bigint NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (group_id, topic, partition)
);
COMMENT ON TABLE evc.consumer_offsets IS 'next offset to land per consumer group and partition';

-- Archive sink: one row per JSON Lines object.
CREATE TABLE evc.archive_files (
	id bigserial PRIMARY KEY,
	object_key text NOT NULL UNIQUE,
	topic text NOT NULL,
	partition int NOT NULL,
	first_offset bigint NOT NULL,
	last_offset bigint NOT NULL CHECK (last_offset >= first_offset),
	events int NOT NULL,
	bytes bigint NOT NULL,
	sha256 text NOT NULL,
	compression text NOT NULL DEFAULT 'none' CHECK (compression IN ('none', 'gzip')),
	consumer text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (topic, partition, first_offset)
);
COMMENT ON TABLE evc.archive_files IS 'objects written by archive sinks, one per file';

-- Images sink: one row per image event; objects are content-addressed.
CREATE TABLE evc.images (
	message_id uuid PRIMARY KEY,
	source text,
	object_key text NOT NULL,
	content_type text NOT NULL,
	width int,
	height int,
	bytes bigint NOT NULL,
	sha256 text NOT NULL,
	metadata jsonb,
	sent_at timestamptz,
	topic text NOT NULL,
	partition int NOT NULL,
	"offset" bigint NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX images_sha256_idx ON evc.images (sha256);
CREATE INDEX images_sent_at_idx ON evc.images USING brin (sent_at);
COMMENT ON TABLE evc.images IS 'image index written by images sinks; object_key points into storage';

/*
 * Table sink.  Aggregation reads a time window for one event type, so the
 * btree leads with (event_name, sent_at); rows arrive roughly in time order,
 * so a BRIN index on sent_at serves scans over all types cheaply.
 */
CREATE TABLE evc.events (
	id bigserial PRIMARY KEY,
	message_id uuid NOT NULL UNIQUE,
	client text NOT NULL,
	event_name text NOT NULL,
	schema_version int,
	context jsonb NOT NULL,
	data jsonb NOT NULL,
	sent_at timestamptz,
	topic text NOT NULL,
	partition int NOT NULL,
	"offset" bigint NOT NULL,
	landed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_name_sent_at_idx ON evc.events (event_name, sent_at);
CREATE INDEX events_sent_at_brin ON evc.events USING brin (sent_at);
COMMENT ON TABLE evc.events IS 'events landed by table sinks, one row per message_id';

CREATE FUNCTION evc_consumer_create(name text, topics text[], sink text, options jsonb DEFAULT '{}')
RETURNS int
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'evc_consumer_create';
COMMENT ON FUNCTION evc_consumer_create(text, text[], text, jsonb) IS 'create a consumer; its worker starts at commit';

CREATE FUNCTION evc_consumer_drop(name text)
RETURNS void
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'evc_consumer_drop';
COMMENT ON FUNCTION evc_consumer_drop(text) IS 'drop a consumer; its worker stops at commit';

CREATE FUNCTION evc_consumer_enable(name text)
RETURNS void
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'evc_consumer_enable';

CREATE FUNCTION evc_consumer_disable(name text)
RETURNS void
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'evc_consumer_disable';

REVOKE ALL ON FUNCTION evc_consumer_create(text, text[], text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION evc_consumer_drop(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION evc_consumer_enable(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION evc_consumer_disable(text) FROM PUBLIC;

CREATE VIEW evc.consumers AS
SELECT c.id, c.name, c.topics, c.sink, c.options,
	   coalesce(c.options->>'group_id', 'evcollector.' || c.name) AS group_id,
	   c.enabled, w.pid,
	   coalesce(p.consumed, 0) AS consumed,
	   coalesce(p.landed, 0) AS landed,
	   coalesce(p.dead_lettered, 0) AS dead_lettered,
	   coalesce(p.bytes, 0) AS bytes,
	   p.last_batch_at,
	   w.last_error,
	   w.last_error_at,
	   c.created_at
FROM evc.consumer_defs c
LEFT JOIN evc.consumer_progress p ON p.consumer_id = c.id
LEFT JOIN evc_workers() w ON w.kind = 'consumer' AND w.name = c.name;
COMMENT ON VIEW evc.consumers IS 'evcollector consumers with their worker and progress';

REVOKE ALL ON evc.consumer_defs, evc.consumer_progress, evc.consumer_offsets, evc.consumers FROM PUBLIC;

-- The relay row of 0.3.0 plus one consumer worker per enabled consumer.
CREATE OR REPLACE VIEW evc.wanted_workers (kind, name, function, arg) AS
SELECT 'relay'::text, 'relay'::text, 'evc_relay_main'::text, 0
UNION ALL
SELECT 'consumer', name, 'evc_consumer_main', id
FROM evc.consumer_defs WHERE enabled;

SELECT evc.wake_launcher();

-- pg_dump keeps the configuration and the landed data.
SELECT pg_catalog.pg_extension_config_dump('evc.consumer_defs', '');
SELECT pg_catalog.pg_extension_config_dump('evc.consumer_defs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('evc.consumer_progress', '');
SELECT pg_catalog.pg_extension_config_dump('evc.consumer_offsets', '');
SELECT pg_catalog.pg_extension_config_dump('evc.archive_files', '');
SELECT pg_catalog.pg_extension_config_dump('evc.archive_files_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('evc.images', '');
SELECT pg_catalog.pg_extension_config_dump('evc.events', '');
SELECT pg_catalog.pg_extension_config_dump('evc.events_id_seq', '');

/*
 * evc_validate on JSON text: the instance is read straight into the
 * validator's own tree, with no jsonb built.  A text that is not valid JSON
 * raises the error a cast to jsonb would.
 */
CREATE FUNCTION evc_validate(schema jsonb, instance text)
RETURNS boolean
LANGUAGE C STRICT STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'evc_validate_text';
COMMENT ON FUNCTION evc_validate(jsonb, text) IS 'whether the JSON text instance is valid under the JSON Schema (draft-07)';
