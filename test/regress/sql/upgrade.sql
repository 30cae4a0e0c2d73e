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

-- 0.5.0 -> 0.6.0 with a backlog: rows pending in the old evc.outbox move
-- into the rotating tables (failed ones, with their attempts, into the
-- retry table) and are still pending after the update.
SET client_min_messages = warning;
CREATE EXTENSION evcollector VERSION '0.5.0';
RESET client_min_messages;
INSERT INTO evc.outbox (message_id, topic, payload, content_type)
VALUES ('66666666-6666-4666-8666-666666666666', 'up.a', '\x01', 'application/x-protobuf'),
	   ('77777777-7777-4777-8777-777777777777', 'up.b', '\x02', 'application/x-protobuf');
UPDATE evc.outbox SET attempts = 3, last_error = 'MSG_TIMED_OUT: Local: Message timed out'
WHERE topic = 'up.b';
ALTER EXTENSION evcollector UPDATE TO '0.6.0';
SELECT message_id, topic, payload, attempts, last_error FROM evc.outbox ORDER BY id;
SELECT (SELECT count(*) FROM evc.outbox_0) AS in_table_0, (SELECT count(*) FROM evc.outbox_retry) AS in_retry,
	   (SELECT n FROM evc.outbox_tables WHERE current) AS current_table,
	   (SELECT pending FROM evc.outbox_status) AS pending;
-- New events go after them; the sequence continues above the old ids.
SELECT nextval('evc.outbox_seq') > (SELECT max(id) FROM evc.outbox) AS ids_continue;
DROP EXTENSION evcollector;
