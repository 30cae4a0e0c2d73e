-- The table and images sinks, dead letters, and S3 errors: redelivered
-- events never duplicate a row, identical images are stored once, garbage
-- goes to evc.dead_letters while the consumer goes on, and a 4xx from S3 is
-- a clear error that commits nothing until storage is fixed.  Objects are
-- checked independently with curl SigV4 (s3cli).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
\ir lib.psql
SELECT plan(16);

SELECT current_setting('evc_test.kafka_bootstrap') AS boot,
	   current_setting('evc_test.kafka_control') AS ctl,
	   current_setting('evc_test.bin') AS bin,
	   current_setting('evc_test.tmp') AS tmp,
	   current_setting('evc_test.s3_endpoint') AS s3,
	   current_setting('evc_test.s3_bucket') AS bucket \gset

CREATE TEMP TABLE out (line text);

-- Table sink.
SELECT count(*) AS n FROM pg_temp.run(format('%s/kafkactl -c %s create_topic cs_events 4', :'bin', :'ctl')) \gset
SELECT is(pg_temp.run(format('%s/evc-produce -b %s -t cs_events -n 1000 -g cs', :'bin', :'boot')),
	'produced 1000', '1000 events produced');
SELECT evc_consumer_create('cs_table', ARRAY['cs_events'], 'table', '{"flush_interval": "200ms"}') \gset
SELECT ok(pg_temp.wait_for($$SELECT landed = 1000 FROM evc.consumers WHERE name = 'cs_table'$$, 30),
	'table sink landed 1000 events');
SELECT is((SELECT count(DISTINCT message_id) FROM evc.events WHERE topic = 'cs_events'), 1000::bigint,
	'evc.events has one row per message_id');
SELECT is((SELECT (client, event_name, schema_version, context->>'message_id' = message_id::text,
	data->>'seq', sent_at IS NOT NULL, context->>'user_agent')::text
	FROM evc.events WHERE message_id = (SELECT message_id FROM evc.events WHERE data->>'seq' = '7')),
	'(test,page_view,1,t,7,t,evc-produce)', 'a row carries the event, its context, data and sent_at');

-- The same events produced again (same message ids): skipped, not duplicated.
SELECT is(pg_temp.run(format('%s/evc-produce -b %s -t cs_events -n 1000 -g cs', :'bin', :'boot')),
	'produced 1000', 'the same 1000 events produced again');
SELECT ok(pg_temp.wait_for($$SELECT consumed = 2000 FROM evc.consumers WHERE name = 'cs_table'$$, 30)
	AND (SELECT count(*) = 1000 FROM evc.events WHERE topic = 'cs_events'),
	'a redelivery never duplicates a row');

-- Garbage bytes go to dead letters; the consumer goes on.
SELECT count(*) AS n FROM pg_temp.run(format('%s/evc-produce -b %s -t cs_events -p 2 -n 5 -g junk -G && %s/evc-produce -b %s -t cs_events -p 2 -n 10 -s 5000 -g cs',
	:'bin', :'boot', :'bin', :'boot')) \gset
SELECT ok(pg_temp.wait_for($$SELECT dead_lettered = 5 AND landed = 1010 FROM evc.consumers WHERE name = 'cs_table'$$, 30),
	'5 garbage messages dead-lettered and the 10 events after them landed');
SELECT is((SELECT count(*) FROM evc.dead_letters WHERE source = 'consumer:cs_table' AND topic = 'cs_events'
	AND partition = 2 AND payload IS NOT NULL AND key IS NOT NULL AND error LIKE '%not a protobuf%'), 5::bigint,
	'dead letters keep topic, partition, offset, key, raw bytes and the reason');

-- Images sink on S3.
SELECT format($$ALTER SYSTEM SET evcollector.storage_url = 's3://%s/cs'$$, :'bucket') AS q \gset
:q;
SELECT format($$ALTER SYSTEM SET evcollector.s3_endpoint = '%s'$$, :'s3') AS q \gset
:q;
ALTER SYSTEM SET evcollector.s3_access_key = 'S3RVER';
ALTER SYSTEM SET evcollector.s3_secret_key = 'S3RVER';
SELECT pg_reload_conf() \gset
SELECT count(*) AS n FROM pg_temp.run(format('%s/kafkactl -c %s create_topic cs_images 2', :'bin', :'ctl')) \gset
SELECT count(*) AS n FROM pg_temp.run(format('%1$s/evc-produce -b %2$s -t cs_images -n 10 -g img -i 100000 && %1$s/evc-produce -b %2$s -t cs_images -n 3 -s 100 -g img -i 100000 -S',
	:'bin', :'boot')) \gset
SELECT evc_consumer_create('cs_img', ARRAY['cs_images'], 'images', '{"flush_interval": "200ms"}') \gset
SELECT ok(pg_temp.wait_for($$SELECT landed = 13 FROM evc.consumers WHERE name = 'cs_img'$$, 30),
	'images sink landed 13 images');
SELECT is((SELECT count(DISTINCT object_key) FROM evc.images WHERE topic = 'cs_images'), 11::bigint,
	'identical content is stored once: 13 rows, 11 objects');
SELECT is((SELECT (source ~ '^cam-', width, height, bytes, content_type, metadata ? 'seq', sent_at IS NOT NULL,
	object_key = format('cs/images/%s/%s.png', left(sha256, 2), sha256))::text
	FROM evc.images WHERE topic = 'cs_images' LIMIT 1),
	'(t,640,480,100000,image/png,t,t,t)', 'an image row has source, size, bytes, type, metadata and its key');

SELECT object_key AS key, sha256 FROM evc.images WHERE topic = 'cs_images' ORDER BY "offset" LIMIT 1 \gset
SELECT is(pg_temp.run(format('%1$s/s3cli %2$s %3$s get %4$s %5$s/img.bin && sha256sum < %5$s/img.bin | cut -c1-64',
	:'bin', :'s3', :'bucket', :'key', :'tmp')), :'sha256', 'the object read back with curl SigV4 matches its sha256');
SELECT is(lower(pg_temp.run(format('%s/s3cli %s %s head %s | tr -d "\r" | grep -i "^content-type:"',
	:'bin', :'s3', :'bucket', :'key'))), 'content-type: image/png', 'the object has its content type');

-- A 4xx (no such bucket): a clear error, nothing committed; fixed, it lands.
ALTER SYSTEM SET evcollector.storage_url = 's3://no-such-bucket-evc/cs';
SELECT pg_reload_conf() \gset
SELECT count(*) AS n FROM pg_temp.run(format('%s/evc-produce -b %s -t cs_images -n 5 -s 200 -g img -i 1000', :'bin', :'boot')) \gset
SELECT ok(pg_temp.wait_for($$SELECT last_error LIKE '%NoSuchBucket%' FROM evc.consumers WHERE name = 'cs_img'$$, 30),
	'a missing bucket shows as NoSuchBucket in evc.consumers');
SELECT is((SELECT landed FROM evc.consumers WHERE name = 'cs_img'), 13::bigint, 'nothing landed or committed meanwhile');
SELECT format($$ALTER SYSTEM SET evcollector.storage_url = 's3://%s/cs'$$, :'bucket') AS q \gset
:q;
SELECT pg_reload_conf() \gset
SELECT ok(pg_temp.wait_for($$SELECT landed = 18 FROM evc.consumers WHERE name = 'cs_img'$$, 30),
	'once the bucket is right, the held batch lands');

ALTER SYSTEM RESET evcollector.storage_url;
ALTER SYSTEM RESET evcollector.s3_endpoint;
ALTER SYSTEM RESET evcollector.s3_access_key;
ALTER SYSTEM RESET evcollector.s3_secret_key;
SELECT pg_reload_conf() \gset
SELECT evc_consumer_drop('cs_table') \gset
SELECT evc_consumer_drop('cs_img') \gset
SELECT * FROM finish();
