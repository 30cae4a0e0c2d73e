-- Walk the upgrade chain from the first release and compare the result
-- with a fresh install of the current version: same member objects.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS evcollector CASCADE;
CREATE EXTENSION evcollector VERSION '0.1.0';
ALTER EXTENSION evcollector UPDATE;
RESET client_min_messages;
SELECT extversion = (SELECT default_version FROM pg_available_extensions WHERE name = 'evcollector') AS at_default
FROM pg_extension WHERE extname = 'evcollector';

CREATE TEMP TABLE upgraded AS
SELECT pg_describe_object(classid, objid, objsubid) AS object
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'evcollector');

DROP EXTENSION evcollector;
CREATE EXTENSION evcollector;

CREATE TEMP TABLE fresh AS
SELECT pg_describe_object(classid, objid, objsubid) AS object
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'evcollector');

SELECT count(*) > 0 AS has_objects FROM fresh;
(SELECT 'only after upgrade' AS side, object FROM upgraded EXCEPT SELECT 'only after upgrade', object FROM fresh)
UNION ALL
(SELECT 'only in fresh install', object FROM fresh EXCEPT SELECT 'only in fresh install', object FROM upgraded)
ORDER BY 1, 2;

-- DROP EXTENSION removes everything, schema evc included.
DROP EXTENSION evcollector;
SELECT count(*) AS evc_schemas FROM pg_namespace WHERE nspname = 'evc';
