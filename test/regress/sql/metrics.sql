-- Metrics and decoding: the SQL surface and its errors.  Values depend on
-- the running workers, so only the shape is checked here; the suites
-- (test/suites/metrics.sql) check the values and the format line by line.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS evcollector;

-- evcollector.metrics_interval: off by default, 0 or at least 1 s.
SHOW evcollector.metrics_interval;
ALTER SYSTEM SET evcollector.metrics_interval = '500ms';
ALTER SYSTEM SET evcollector.metrics_interval = '-1';
ALTER SYSTEM SET evcollector.metrics_interval = '2 days';
ALTER SYSTEM SET evcollector.metrics_interval = '30s';
ALTER SYSTEM RESET evcollector.metrics_interval;

-- evc.stats has "failed" and a row for evc_aggregate.
SELECT column_name FROM information_schema.columns
WHERE table_schema = 'evc' AND table_name = 'stats' ORDER BY ordinal_position;
SELECT kind, name, pid FROM evc.stats WHERE kind IN ('aggregator', 'total') ORDER BY kind;

-- evc.consumer_lag and evc_metrics().
SELECT column_name FROM information_schema.columns
WHERE table_schema = 'evc' AND table_name = 'consumer_lag' ORDER BY ordinal_position;
SELECT split_part(evc_metrics(), E'\n', 1) AS first_line,
	   evc_metrics() ~ E'\n# TYPE evc_latency_seconds histogram\n' AS has_histogram,
	   right(evc_metrics(), 1) = E'\n' AS ends_with_newline;

-- Superusers only, unless granted.
CREATE ROLE evc_metrics_nobody;
SET ROLE evc_metrics_nobody;
SELECT evc_metrics();
SELECT * FROM evc.consumer_lag;
RESET ROLE;
GRANT EXECUTE ON FUNCTION evc_metrics() TO evc_metrics_nobody;
SET ROLE evc_metrics_nobody;
SELECT evc_metrics() LIKE '# HELP evc_sent_total %' AS granted;
RESET ROLE;
DROP OWNED BY evc_metrics_nobody;
DROP ROLE evc_metrics_nobody;

-- evc_decode: any message of the .proto, by name; errors say what.
SELECT evc_decode(decode('0a0473686f70', 'hex'), 'AggregatedEvent') ->> 'client' AS client;
SELECT evc_decode(decode('0a0473686f70', 'hex'), 'evcollector.SchemaRecord') ->> 'client' AS client;
SELECT evc_decode('\x', 'Metrics') AS empty_metrics;
SELECT evc_decode('\xff', 'Metrics');
SELECT evc_decode('\x0a', 'Nope');
