-- evcollector 0.6.0 -> 0.7.0
--
-- Each part below belongs to one capability; keep them in this order.
\echo Use "ALTER EXTENSION evcollector UPDATE TO '0.7.0'" to load this file. \quit

-- == backups: pg_dump keeps user state (issue 15) ==

/*
 * pg_dump dumps an extension's objects as one CREATE EXTENSION, and the
 * rows of the tables marked here (pg_extension_config_dump) as data that
 * it restores after it.  0.4.0 and 0.5.0 marked the consumers' and the
 * aggregation's tables; these are the rest of the user state.  A filter
 * leaves out what the install script itself inserts, which the restore's
 * CREATE EXTENSION has already put there.  See docs/operations.md.
 */

-- The registry.  The identity sequences go too, or the next registration
-- after a restore would reuse an id.
SELECT pg_catalog.pg_extension_config_dump('evc.event_types', '');
SELECT pg_catalog.pg_extension_config_dump('evc.event_types_id_seq', '');
-- The draft-07 meta-schema is the install script's own row.
SELECT pg_catalog.pg_extension_config_dump('evc.schema_documents',
	$$WHERE uri <> 'http://json-schema.org/draft-07/schema'$$);
SELECT pg_catalog.pg_extension_config_dump('evc.dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('evc.dead_letters_id_seq', '');

/*
 * The outbox.  Its state is made of transaction ids (each row's txid, each
 * tick's snapshot), and those mean nothing in another cluster: a restored
 * tick from a cluster further on in its xid count would hide every event
 * the new one sends, and a restored row with a higher txid would wait
 * until the new cluster got there.  So the ticks and the rotation state
 * (evc.outbox_ticks, evc.outbox_tables) are not dumped: the restore keeps
 * the install script's first tick, which sees nothing.  Only the rows no
 * delivered tick has passed are dumped (pg_dump reads every table in one
 * snapshot, so the filter and the rows agree), and each restored row takes
 * the restoring transaction's id and goes into the current table (the
 * trigger below).  The first batch on the restored server is then exactly
 * what was pending, sent once.  The sequence keeps ids unique across the
 * rows restored and the new ones.
 */
SELECT pg_catalog.pg_extension_config_dump('evc.outbox_seq', '');
SELECT pg_catalog.pg_extension_config_dump('evc.outbox_0',
	$$WHERE NOT pg_catalog.pg_visible_in_snapshot(txid,
		(SELECT t.snapshot FROM evc.outbox_ticks t ORDER BY t.id DESC LIMIT 1))$$);
SELECT pg_catalog.pg_extension_config_dump('evc.outbox_1',
	$$WHERE NOT pg_catalog.pg_visible_in_snapshot(txid,
		(SELECT t.snapshot FROM evc.outbox_ticks t ORDER BY t.id DESC LIMIT 1))$$);
SELECT pg_catalog.pg_extension_config_dump('evc.outbox_2',
	$$WHERE NOT pg_catalog.pg_visible_in_snapshot(txid,
		(SELECT t.snapshot FROM evc.outbox_ticks t ORDER BY t.id DESC LIMIT 1))$$);
-- Retries wait by their due time, not by snapshot: all of them go.
SELECT pg_catalog.pg_extension_config_dump('evc.outbox_retry', '');

/*
 * A row inserted by SQL into an outbox table belongs to the inserting
 * transaction, whatever txid it names, and goes into the current table:
 * that is what a restore's COPY needs.  The current table is read as
 * evc_send reads it (send/outbox.c): after this transaction's id is
 * assigned, with a fresh snapshot, once per transaction.  So the
 * rotation's rule holds (only transactions below a table's switch mark
 * write to it), however long the restore and whatever the relay rotates
 * meanwhile.  evc_send inserts the heap tuple itself, so it never fires
 * this.  ALWAYS, so that a restore under session_replication_role =
 * replica goes through it too.
 */
CREATE FUNCTION evc.outbox_row_restored()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me xid8 := pg_current_xact_id();
	asked text := current_setting('evc_restore.outbox_table', true);
	cur int;
BEGIN
	NEW.txid := me;
	IF asked IS NOT NULL AND split_part(asked, ':', 1) = me::text THEN
		cur := split_part(asked, ':', 2)::int;
	ELSE
		SELECT n INTO cur FROM evc.outbox_tables WHERE current;
		IF cur IS NULL THEN
			RAISE EXCEPTION 'table "evc.outbox_tables" names no current outbox table'
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = format('A row for evc.outbox_%s arrived by SQL (a restore?).', TG_ARGV[0]);
		END IF;
		PERFORM set_config('evc_restore.outbox_table', me || ':' || cur, true);
	END IF;
	IF cur = TG_ARGV[0]::int THEN
		RETURN NEW;
	END IF;
	EXECUTE format('INSERT INTO evc.outbox_%s SELECT ($1).*', cur) USING NEW;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION evc.outbox_row_restored() FROM PUBLIC;
DO $restored$
BEGIN
	FOR n IN 0..2 LOOP
		EXECUTE format('CREATE TRIGGER outbox_%s_restored BEFORE INSERT ON evc.outbox_%s '
					   'FOR EACH ROW EXECUTE FUNCTION evc.outbox_row_restored(%L)', n, n, n);
		EXECUTE format('ALTER TABLE evc.outbox_%s ENABLE ALWAYS TRIGGER outbox_%s_restored', n, n);
	END LOOP;
END
$restored$;

/*
 * What pg_dump does not keep is the state of the extension's own objects:
 * a restored evc.events has its invalidation trigger disabled, as the
 * install script leaves it, even when aggregations are declared.  Rows
 * arriving in evc.aggregations (a restore's COPY, or a declaration) turn
 * it on; evc_declare_aggregation does the same itself.  A restore loads
 * evc.aggregations before evc.events (pg_dump's order), so the restored
 * events would then write the invalidation log again, which came restored
 * with them: the trigger logs only rows landed now (a sink's insert leaves
 * landed_at at its default, now()), not rows copied in with their own.
 */
DO $log$
DECLARE
	was "char" := (SELECT tgenabled FROM pg_trigger
				   WHERE tgrelid = 'evc.events'::regclass AND tgname = 'events_aggregate_log');
BEGIN
	DROP TRIGGER events_aggregate_log ON evc.events;
	CREATE TRIGGER events_aggregate_log
		AFTER INSERT ON evc.events
		FOR EACH ROW WHEN (NEW.landed_at >= pg_catalog.now())
		EXECUTE FUNCTION evc.note_event_insert();
	IF was = 'D' THEN
		ALTER TABLE evc.events DISABLE TRIGGER events_aggregate_log;
	END IF;
END
$log$;

CREATE FUNCTION evc.aggregations_arrived()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF EXISTS (SELECT FROM pg_trigger WHERE tgrelid = 'evc.events'::regclass
			   AND tgname = 'events_aggregate_log' AND tgenabled = 'D') THEN
		ALTER TABLE evc.events ENABLE TRIGGER events_aggregate_log;
	END IF;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION evc.aggregations_arrived() FROM PUBLIC;
CREATE TRIGGER aggregations_arrived AFTER INSERT ON evc.aggregations
	FOR EACH STATEMENT EXECUTE FUNCTION evc.aggregations_arrived();

-- == relay: exactly once into Kafka (issue 13) ==
-- Which producer the relay runs: transactional (exactly once, the default)
-- or idempotent (evcollector.relay_exactly_once = off).
CREATE FUNCTION evc_relay_mode() RETURNS text
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'evc_relay_mode';
COMMENT ON FUNCTION evc_relay_mode() IS 'the relay''s producer mode: transactional, idempotent, or NULL before it made one';
REVOKE ALL ON FUNCTION evc_relay_mode() FROM PUBLIC;
CREATE OR REPLACE VIEW evc.workers AS
SELECT w.*, CASE WHEN w.kind = 'relay' AND w.pid IS NOT NULL THEN evc_relay_mode() END AS mode
FROM evc_workers() w;
COMMENT ON VIEW evc.workers IS 'evcollector background workers: launcher, relay and consumers; mode is the relay''s producer (transactional or idempotent)';

-- == gateway: write keys and the HTTP API (issue 16) ==

-- Write keys of the HTTP gateway.  Only the SHA-256 of a key's secret is
-- kept; the key itself is shown once, by evc_gateway_key_create.
CREATE TABLE evc.gateway_keys (
	id bigserial PRIMARY KEY,
	client text NOT NULL,
	role text NOT NULL CHECK (role IN ('read', 'write', 'admin')),
	secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),
	created_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz,
	revoked_at timestamptz
);
COMMENT ON TABLE evc.gateway_keys IS 'write keys of the HTTP gateway (the SHA-256 of each secret, never the secret)';
REVOKE ALL ON evc.gateway_keys FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('evc.gateway_keys', '');
SELECT pg_catalog.pg_extension_config_dump('evc.gateway_keys_id_seq', '');

CREATE FUNCTION evc_gateway_key_create(client text, role text DEFAULT 'write',
									   expires_at timestamptz DEFAULT NULL)
RETURNS text
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'evc_gateway_key_create';
COMMENT ON FUNCTION evc_gateway_key_create(text, text, timestamptz) IS
	'create a gateway key for a client (role read, write or admin); the key is returned this once';
REVOKE ALL ON FUNCTION evc_gateway_key_create(text, text, timestamptz) FROM PUBLIC;

CREATE FUNCTION evc_gateway_key_revoke(id bigint)
RETURNS boolean
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'evc_gateway_key_revoke';
COMMENT ON FUNCTION evc_gateway_key_revoke(bigint) IS 'revoke a gateway key; true if it was live';
REVOKE ALL ON FUNCTION evc_gateway_key_revoke(bigint) FROM PUBLIC;

-- The keys without their hashes, for operators.
CREATE VIEW evc.gateway_keys_status AS
SELECT id, client, role, created_at, expires_at, revoked_at,
	   revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AS live
FROM evc.gateway_keys;
REVOKE ALL ON evc.gateway_keys_status FROM PUBLIC;

-- gateway: schema registry ids and config (src/gateway/routes_registry.c)
--
-- The Confluent Schema Registry routes need a global, stable id per
-- schema version: evc.event_types.id (an identity, kept by pg_dump) is
-- that id, so nothing is added for it.  What they need besides is the
-- registry's compatibility config: a global level and one per subject
-- (<client>.<event>-value).  A subject without a row has no config of its
-- own (GET /config/{subject} answers 40408); the global row, when there is
-- none, is the registry's default, backward.  The levels are the registry's
-- modes; a _transitive one checks the mode against every stored version,
-- not only the latest.
CREATE TABLE evc.registry_config (
	client text CHECK (client ~ '^[A-Za-z0-9_-]{1,100}$'),
	event_name text CHECK (event_name ~ '^[A-Za-z0-9_.-]{1,100}$'),
	compatibility text NOT NULL CHECK (compatibility IN ('none', 'backward', 'forward', 'full',
		'backward_transitive', 'forward_transitive', 'full_transitive')),
	updated_at timestamptz NOT NULL DEFAULT now(),
	updated_by name NOT NULL DEFAULT current_user,
	CHECK ((client IS NULL) = (event_name IS NULL)),
	UNIQUE NULLS NOT DISTINCT (client, event_name)
);
COMMENT ON TABLE evc.registry_config IS 'compatibility config of the schema registry routes: the global level (client and event_name NULL) and one per subject';
SELECT pg_catalog.pg_extension_config_dump('evc.registry_config', '');
GRANT SELECT, INSERT, UPDATE, DELETE ON evc.registry_config TO evc_registry_admin;
-- end of gateway: schema registry ids and config

-- == consumer lag past transaction markers (issue 18, the real-Kafka chaos run) ==
-- The exactly-once relay ends each partition's transaction with a commit
-- marker, an offset no consumer lands: the lag stayed 1 for good.  The
-- consumer now also reports its position while it holds nothing unlanded
-- (librdkafka steps it over markers), and the lag counts from the larger.
DROP VIEW evc.consumer_lag;
DROP FUNCTION evc_consumer_watermarks();
CREATE FUNCTION evc_consumer_watermarks(OUT consumer text, OUT topic text, OUT partition int,
	OUT low_watermark bigint, OUT high_watermark bigint, OUT observed_at timestamptz,
	OUT consumer_position bigint)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'evc_consumer_watermarks';
REVOKE ALL ON FUNCTION evc_consumer_watermarks() FROM PUBLIC;
COMMENT ON FUNCTION evc_consumer_watermarks() IS
	'what each running consumer last saw of its partitions; position only while nothing it read waits to land';

CREATE VIEW evc.consumer_lag AS
SELECT c.name AS consumer, c.group_id, w.topic, w.partition, o.next_offset,
	   w.high_watermark,
	   greatest(w.high_watermark - greatest(coalesce(o.next_offset, w.low_watermark), w.consumer_position), 0) AS lag,
	   w.observed_at
FROM evc_consumer_watermarks() w
JOIN evc.consumers c ON c.name = w.consumer
LEFT JOIN evc.consumer_offsets o ON o.group_id = c.group_id AND o.topic = w.topic AND o.partition = w.partition;
COMMENT ON VIEW evc.consumer_lag IS
	'consumer lag per partition: high watermark minus the next offset to land (or the consumer''s position past transaction markers, once all it read landed)';
REVOKE ALL ON evc.consumer_lag FROM PUBLIC;

-- == live rooms (issue 17) ==
-- No SQL objects: the live rooms read evc.aggregates and the views, and keep
-- their state in the gateway (src/gateway/README-live.md).

-- == hardening: fuzzing and the differential check (issue 18) ==
-- The draft-07 meta-schema stored in 0.2.0 gave "enum" draft-06's
-- "minItems": 1 and "uniqueItems": true.  The published draft-07
-- meta-schema has neither, so {"enum": [1, 1]} and {"enum": []} are valid
-- schemas; the differential check against Python's jsonschema found it.
UPDATE evc.schema_documents
   SET document = jsonb_set(document, '{properties,enum}', '{"type": "array", "items": true}')
 WHERE uri = 'http://json-schema.org/draft-07/schema'
   AND document -> 'properties' -> 'enum' = '{"type": "array", "items": true, "minItems": 1, "uniqueItems": true}';

SELECT evc.wake_launcher();
