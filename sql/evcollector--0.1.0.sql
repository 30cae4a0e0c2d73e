/* evcollector 0.1.0: the skeleton.  Schema evc holds everything internal. */
\echo Use "CREATE EXTENSION evcollector" to load this file. \quit

CREATE SCHEMA evc;
COMMENT ON SCHEMA evc IS 'evcollector internal tables and views';

CREATE FUNCTION evc_version()
RETURNS text
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'evc_version';
COMMENT ON FUNCTION evc_version() IS 'version of the loaded evcollector library';

CREATE FUNCTION evc_workers(
	OUT kind text,
	OUT name text,
	OUT pid int,
	OUT started_at timestamptz,
	OUT stopped_at timestamptz,
	OUT starts bigint,
	OUT last_error text,
	OUT last_error_at timestamptz)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'evc_workers';
COMMENT ON FUNCTION evc_workers() IS 'evcollector background workers, running or not';

CREATE VIEW evc.workers AS SELECT * FROM evc_workers();
COMMENT ON VIEW evc.workers IS 'evcollector background workers: launcher, relay and consumers';

-- Only superusers and roles granted access see worker details.
REVOKE ALL ON FUNCTION evc_workers() FROM PUBLIC;
REVOKE ALL ON evc.workers FROM PUBLIC;

-- The launcher starts one dynamic worker per row of this view.  Later
-- versions redefine it as workers are added (the relay, the consumers).
CREATE VIEW evc.wanted_workers (kind, name, function, arg) AS
SELECT NULL::text, NULL::text, NULL::text, NULL::int WHERE false;
COMMENT ON VIEW evc.wanted_workers IS 'workers the evcollector launcher keeps running';
REVOKE ALL ON evc.wanted_workers FROM PUBLIC;

-- Wakes the launcher when the calling transaction commits, so that
-- configuration changes take effect at once and a rollback changes nothing.
CREATE FUNCTION evc.wake_launcher()
RETURNS void
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'evc_wake_launcher';
REVOKE ALL ON FUNCTION evc.wake_launcher() FROM PUBLIC;

SELECT evc.wake_launcher();
