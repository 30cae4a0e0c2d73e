-- Settings: defaults, and bad values refused with a clear message.  SIGHUP
-- settings cannot be SET in a session, so ALTER SYSTEM exercises the checks.
SHOW evcollector.batch_size;
SHOW evcollector.relay_batch_size;
SHOW evcollector.flush_interval;
SHOW evcollector.max_file_size;
SHOW evcollector.topic_prefix;
SHOW evcollector.s3_region;

ALTER SYSTEM SET evcollector.batch_size = -1;
ALTER SYSTEM SET evcollector.batch_size = 0;
ALTER SYSTEM SET evcollector.relay_batch_size = 0;
ALTER SYSTEM SET evcollector.flush_interval = '1h 1s';
ALTER SYSTEM SET evcollector.storage_url = 'ftp://example.com/events';
ALTER SYSTEM SET evcollector.storage_url = 'file://relative/dir';
ALTER SYSTEM SET evcollector.storage_url = 's3://Bad_Bucket/prefix';
ALTER SYSTEM SET evcollector.storage_url = '';
ALTER SYSTEM SET evcollector.brokers = 'localhost';
ALTER SYSTEM SET evcollector.brokers = 'localhost:99999';
ALTER SYSTEM SET evcollector.brokers = '';
ALTER SYSTEM SET evcollector.topic_prefix = 'bad prefix/';
ALTER SYSTEM SET evcollector.kafka_properties = 'no.such.property=1';
ALTER SYSTEM SET evcollector.kafka_properties = 'acks';
ALTER SYSTEM SET evcollector.kafka_properties = 'acks=maybe';
ALTER SYSTEM SET evcollector.s3_endpoint = 'minio:9000';
ALTER SYSTEM SET evcollector.s3_region = 'us east';
ALTER SYSTEM SET evcollector.unknown_setting = 1;

-- Good values are accepted (and reset again).
ALTER SYSTEM SET evcollector.batch_size = 5000;
ALTER SYSTEM SET evcollector.storage_url = 's3://evc-bucket/events';
ALTER SYSTEM SET evcollector.kafka_properties = 'acks=all; debug=broker,topic; linger.ms=5';
ALTER SYSTEM SET evcollector.brokers = 'PLAINTEXT://k1:9092,k2:9093';
ALTER SYSTEM RESET evcollector.batch_size;
ALTER SYSTEM RESET evcollector.storage_url;
ALTER SYSTEM RESET evcollector.kafka_properties;
ALTER SYSTEM RESET evcollector.brokers;

-- Session SET is refused for server-wide settings.
SET evcollector.batch_size = 10;

-- Secrets are superuser-only.
CREATE ROLE evc_guc_reader;
SET ROLE evc_guc_reader;
SHOW evcollector.s3_secret_key;
SHOW evcollector.kafka_properties;
RESET ROLE;
DROP ROLE evc_guc_reader;
