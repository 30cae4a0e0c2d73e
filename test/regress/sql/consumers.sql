-- Consumers: create, list, enable, disable and drop, and the checks that
-- refuse a bad configuration before any worker trips over it.  Workers run
-- only in evcollector.database, so none starts here.
CREATE EXTENSION IF NOT EXISTS evcollector;

SELECT evc_consumer_create('arch', ARRAY['app.events'], 'archive',
	'{"batch_size": 500, "flush_interval": "2s", "max_file_size": "8MB", "gzip": true}') > 0 AS created;
SELECT evc_consumer_create('rows', ARRAY['^app\..*'], 'table') > 0 AS created;
SELECT evc_consumer_create('pics', ARRAY['images'], 'images',
	'{"group_id": "shared.pics", "kafka": {"session.timeout.ms": "6000"}}') > 0 AS created;

SELECT name, topics, sink, group_id, enabled, consumed, landed, dead_lettered
FROM evc.consumers ORDER BY name;

-- The launcher's list: the relay plus one worker per enabled consumer.
SELECT kind, name, function, arg = (SELECT id FROM evc.consumer_defs WHERE name = w.name) AS arg_is_id
FROM evc.wanted_workers w ORDER BY kind, name;

SELECT evc_consumer_disable('rows');
SELECT name FROM evc.wanted_workers WHERE kind = 'consumer' ORDER BY name;
SELECT evc_consumer_enable('rows');
SELECT name FROM evc.wanted_workers WHERE kind = 'consumer' ORDER BY name;

-- A rolled-back create leaves nothing.
BEGIN;
SELECT evc_consumer_create('temp', ARRAY['t'], 'table') > 0 AS created;
ROLLBACK;
SELECT count(*) FROM evc.consumers WHERE name = 'temp';

-- Refused.
SELECT evc_consumer_create('arch', ARRAY['x'], 'archive');
SELECT evc_consumer_create('bad name', ARRAY['x'], 'archive');
SELECT evc_consumer_create('', ARRAY['x'], 'archive');
SELECT evc_consumer_create('n', ARRAY[]::text[], 'archive');
SELECT evc_consumer_create('n', ARRAY['bad topic'], 'archive');
SELECT evc_consumer_create('n', ARRAY['ok', NULL], 'archive');
SELECT evc_consumer_create('n', ARRAY['x'], 'parquet');
SELECT evc_consumer_create('n', NULL, 'archive');
SELECT evc_consumer_create('n', ARRAY['x'], 'archive', '[]');
SELECT evc_consumer_create('n', ARRAY['x'], 'archive', '{"batch_sise": 10}');
SELECT evc_consumer_create('n', ARRAY['x'], 'archive', '{"batch_size": 0}');
SELECT evc_consumer_create('n', ARRAY['x'], 'archive', '{"batch_size": "many"}');
SELECT evc_consumer_create('n', ARRAY['x'], 'archive', '{"flush_interval": "2 fortnights"}');
SELECT evc_consumer_create('n', ARRAY['x'], 'table', '{"gzip": true}');
SELECT evc_consumer_create('n', ARRAY['x'], 'archive', '{"gzip": "yes"}');
SELECT evc_consumer_create('n', ARRAY['x'], 'archive', '{"group_id": ""}');
SELECT evc_consumer_create('n', ARRAY['x'], 'archive', '{"auto_offset_reset": "smallest"}');
SELECT evc_consumer_create('n', ARRAY['x'], 'archive', '{"kafka": {"no.such.property": "1"}}');
SELECT evc_consumer_create('n', ARRAY['x'], 'archive', '{"kafka": "acks=all"}');
SELECT evc_consumer_drop('nobody');
SELECT evc_consumer_enable('nobody');

-- Dropping forgets the landed offsets of the consumer's group.
INSERT INTO evc.consumer_offsets VALUES ('evcollector.arch', 'app.events', 0, 10), ('shared.pics', 'images', 0, 5);
SELECT evc_consumer_drop('arch');
SELECT evc_consumer_drop('pics');
SELECT evc_consumer_drop('rows');
SELECT group_id FROM evc.consumer_offsets;
SELECT count(*) FROM evc.consumers;

-- Not for everyone.
CREATE ROLE evc_consumer_nobody;
SET ROLE evc_consumer_nobody;
SELECT evc_consumer_create('n', ARRAY['x'], 'archive');
SELECT * FROM evc.consumers;
RESET ROLE;
DROP ROLE evc_consumer_nobody;
DROP EXTENSION evcollector;
