-- The extension itself: install, schema, version, the worker registry.
CREATE EXTENSION evcollector;

SELECT nspname FROM pg_namespace WHERE nspname = 'evc';
SELECT extversion = evc_version() AS script_matches_library
FROM pg_extension WHERE extname = 'evcollector';

-- The launcher runs in evcollector.database and registers itself.
SELECT kind, name, pid IS NOT NULL AS running, starts >= 1 AS started
FROM evc.workers WHERE kind = 'launcher';

-- Not relocatable; a second install is refused.
ALTER EXTENSION evcollector SET SCHEMA pg_catalog;
CREATE EXTENSION evcollector;

-- Worker details are not for everyone.
CREATE ROLE evc_nobody;
SELECT has_table_privilege('evc_nobody', 'evc.workers', 'SELECT') AS can_read_view,
	   has_function_privilege('evc_nobody', 'evc_workers()', 'EXECUTE') AS can_call_function;
DROP ROLE evc_nobody;
