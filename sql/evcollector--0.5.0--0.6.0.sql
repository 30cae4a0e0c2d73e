/* evcollector 0.5.0 -> 0.6.0: an outbox that never bloats (PgQ's design). */
\echo Use "ALTER EXTENSION evcollector UPDATE TO '0.6.0'" to load this file. \quit

/* ------------------------------------------------------------------------
 * The outbox: three tables used in rotation
 * ------------------------------------------------------------------------
 *
 * evc_send inserts into the current table, recording its transaction's id
 * (txid).  The relay cuts batches between two transaction snapshots
 * ("ticks", evc.outbox_ticks): a batch is every row whose transaction is
 * visible in this tick's snapshot and not in the previous one's, read
 * through the (txid, id) index.  A table that is no longer current, and
 * whose rows every delivered tick has passed, is emptied with TRUNCATE
 * (evc.outbox_tables says when that is allowed).  No row is deleted one by
 * one, so nothing needs vacuuming.
 */

-- Nothing may commit into the old table while its rows are moved.
LOCK TABLE evc.outbox IN ACCESS EXCLUSIVE MODE;

CREATE SEQUENCE evc.outbox_seq;
SELECT setval('evc.outbox_seq', greatest(
	(SELECT last_value FROM evc.outbox_id_seq),
	coalesce((SELECT max(id) FROM evc.outbox), 0), 1));

CREATE TABLE evc.outbox_0 (
	id bigint NOT NULL DEFAULT nextval('evc.outbox_seq'),
	txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
	message_id uuid NOT NULL,
	topic text NOT NULL,
	key bytea,
	payload bytea NOT NULL,
	schema_version int NOT NULL DEFAULT 0,
	content_type text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
) WITH (autovacuum_enabled = false);
CREATE INDEX outbox_0_txid ON evc.outbox_0 (txid, id);
CREATE TABLE evc.outbox_1 (LIKE evc.outbox_0 INCLUDING DEFAULTS) WITH (autovacuum_enabled = false);
CREATE INDEX outbox_1_txid ON evc.outbox_1 (txid, id);
CREATE TABLE evc.outbox_2 (LIKE evc.outbox_0 INCLUDING DEFAULTS) WITH (autovacuum_enabled = false);
CREATE INDEX outbox_2_txid ON evc.outbox_2 (txid, id);
COMMENT ON TABLE evc.outbox_0 IS 'outbox table 0 of 3, used in rotation; emptied by TRUNCATE once delivered';
COMMENT ON TABLE evc.outbox_1 IS 'outbox table 1 of 3, used in rotation; emptied by TRUNCATE once delivered';
COMMENT ON TABLE evc.outbox_2 IS 'outbox table 2 of 3, used in rotation; emptied by TRUNCATE once delivered';

-- One row per outbox table: which one is current, since when, and, once it
-- is not, the next transaction id at the switch (retired_xid).  Every
-- transaction that could still pick the table has a lower id; once a
-- delivered tick's snapshot xmin reaches retired_xid, all of them have
-- ended and their rows were in delivered batches, and the table may be
-- emptied.
CREATE TABLE evc.outbox_tables (
	n int PRIMARY KEY CHECK (n BETWEEN 0 AND 2),
	current bool NOT NULL,
	became_current_at timestamptz,
	retired_xid xid8,
	emptied bool NOT NULL DEFAULT true
);
INSERT INTO evc.outbox_tables (n, current, became_current_at, emptied)
VALUES (0, true, now(), false), (1, false, NULL, true), (2, false, NULL, true);
COMMENT ON TABLE evc.outbox_tables IS 'the outbox tables'' rotation: which is current, and when a retired one may be emptied';

-- Delivered ticks.  A batch is what became visible between two consecutive
-- ticks' snapshots.  The first tick sees nothing, so the first batch is
-- everything committed.
CREATE TABLE evc.outbox_ticks (
	id bigint PRIMARY KEY,
	snapshot pg_snapshot NOT NULL,
	events bigint NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT now(),
	delivered_at timestamptz
);
INSERT INTO evc.outbox_ticks (id, snapshot, created_at, delivered_at)
VALUES (1, '1:1:', now(), now());
COMMENT ON TABLE evc.outbox_ticks IS 'the relay''s ticks: snapshots between which it cut its delivered batches';

-- Events Kafka refused for now (after librdkafka's own retries), with
-- their backoff.  The relay sends them again from here, so a tick counts
-- as delivered once each of its events is delivered, dead-lettered or
-- here: rotation is never held back by a failing event.
CREATE TABLE evc.outbox_retry (
	id bigint PRIMARY KEY,
	txid xid8 NOT NULL,
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
	next_attempt_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE evc.outbox_retry IS 'events waiting for another delivery attempt, with the last error';

-- Rows still pending in the old outbox: they keep their ids and go into
-- table 0 with this transaction's id, so the first batch after the update
-- commits carries them.  Failed ones keep their attempts in the retry table.
INSERT INTO evc.outbox_0 (id, message_id, topic, key, payload, schema_version, content_type, created_at)
SELECT id, message_id, topic, key, payload, schema_version, content_type, created_at
FROM evc.outbox WHERE attempts = 0;
INSERT INTO evc.outbox_retry (id, txid, message_id, topic, key, payload, schema_version, content_type,
							  created_at, attempts, last_error, last_attempt_at, next_attempt_at)
SELECT id, pg_current_xact_id(), message_id, topic, key, payload, schema_version, content_type,
	   created_at, attempts, last_error, last_attempt_at, coalesce(next_attempt_at, now())
FROM evc.outbox WHERE attempts > 0;

DROP VIEW evc.outbox_status;
DROP TABLE evc.outbox;

-- What is pending: rows of the outbox tables that no delivered tick has
-- passed, and the rows waiting for a retry.  Read-only; evc_trace and
-- users' queries read it as they read the table before.
CREATE VIEW evc.outbox AS
WITH t AS (SELECT snapshot FROM evc.outbox_ticks ORDER BY id DESC LIMIT 1)
SELECT o.id, o.txid, o.message_id, o.topic, o.key, o.payload, o.schema_version, o.content_type,
	   o.created_at, 0 AS attempts, NULL::text AS last_error,
	   NULL::timestamptz AS last_attempt_at, NULL::timestamptz AS next_attempt_at
FROM (SELECT * FROM evc.outbox_0 UNION ALL SELECT * FROM evc.outbox_1
	  UNION ALL SELECT * FROM evc.outbox_2) o, t
WHERE NOT pg_visible_in_snapshot(o.txid, t.snapshot)
UNION ALL
SELECT id, txid, message_id, topic, key, payload, schema_version, content_type,
	   created_at, attempts, last_error, last_attempt_at, next_attempt_at
FROM evc.outbox_retry;
COMMENT ON VIEW evc.outbox IS 'events committed and not yet delivered to Kafka (the outbox tables past the last delivered tick, and the retry table)';

CREATE VIEW evc.outbox_status AS
SELECT count(*) AS pending,
	   count(*) FILTER (WHERE attempts > 0) AS failing,
	   min(created_at) AS oldest,
	   coalesce(max(attempts), 0) AS max_attempts,
	   (SELECT last_error FROM evc.outbox_retry WHERE last_error IS NOT NULL
		ORDER BY last_attempt_at DESC LIMIT 1) AS last_error,
	   pg_total_relation_size('evc.outbox_0') + pg_total_relation_size('evc.outbox_1') +
	   pg_total_relation_size('evc.outbox_2') + pg_total_relation_size('evc.outbox_retry') AS bytes
FROM evc.outbox;
COMMENT ON VIEW evc.outbox_status IS 'backlog of the outbox: pending and failing events, the last error, its size on disk';

REVOKE ALL ON evc.outbox_0, evc.outbox_1, evc.outbox_2, evc.outbox_tables,
	evc.outbox_ticks, evc.outbox_retry, evc.outbox, evc.outbox_seq FROM PUBLIC;
GRANT SELECT ON evc.outbox_status TO evc_producer;


SELECT evc.wake_launcher();
