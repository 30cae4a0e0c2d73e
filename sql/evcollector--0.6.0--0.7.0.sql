-- evcollector 0.6.0 -> 0.7.0
--
-- Each part below belongs to one capability; keep them in this order.
\echo Use "ALTER EXTENSION evcollector UPDATE TO '0.7.0'" to load this file. \quit

-- == backups: pg_dump keeps user state (issue 15) ==

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

-- == live rooms (issue 17) ==

SELECT evc.wake_launcher();
