-- Metrics: consumer counters in evc.stats, lag per partition while a sink
-- is held back, evc_metrics() checked line by line against the Prometheus
-- text exposition format (and parsed by the official Python client as an
-- independent reader), and the Metrics messages the relay publishes to
-- the metrics topic every evcollector.metrics_interval.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
\ir lib.psql
SELECT plan(25);

SELECT current_setting('evc_test.kafka_bootstrap') AS boot,
	   current_setting('evc_test.kafka_control') AS ctl,
	   current_setting('evc_test.bin') AS bin,
	   current_setting('evc_test.s3_endpoint') AS s3,
	   current_setting('port') AS port \gset

SELECT evc_stats_reset() \gset

-- A table consumer lands 300 events.
SELECT count(*) AS n FROM pg_temp.run(format('%s/kafkactl -c %s create_topic mx_events 3 >/dev/null; echo done', :'bin', :'ctl')) \gset
SELECT count(*) AS n FROM pg_temp.run(format('%s/evc-produce -b %s -t mx_events -n 300 -g mx', :'bin', :'boot')) \gset
SELECT evc_consumer_create('mx_rows', ARRAY['mx_events'], 'table', '{"flush_interval": "100ms"}') \gset
SELECT pg_temp.wait_for($$SELECT landed = 300 FROM evc.consumers WHERE name = 'mx_rows'$$, 30) AS waited \gset
SELECT is((SELECT (consumed, landed, dead_lettered, failed)::text FROM evc.stats WHERE kind = 'consumer' AND name = 'mx_rows'),
	'(300,300,0,0)', 'evc.stats counts what the consumer consumed and landed');
SELECT ok((SELECT bytes_in > 300 * 50 AND batches >= 1 AND latency_p50_ms > 0 AND latency_p99_ms >= latency_p50_ms
	FROM evc.stats WHERE kind = 'consumer' AND name = 'mx_rows'),
	'and its bytes in, batches and per-batch processing time');
SELECT pg_temp.wait_for($$SELECT count(*) = 3 AND sum(high_watermark) = 300 FROM evc.consumer_lag WHERE consumer = 'mx_rows'$$, 10) AS waited \gset
SELECT is((SELECT array_agg((partition, lag)::text ORDER BY partition) FROM evc.consumer_lag WHERE consumer = 'mx_rows'),
	ARRAY['(0,0)', '(1,0)', '(2,0)'], 'evc.consumer_lag: three partitions, nothing left to land');

-- An archive consumer held back by storage (no such bucket): lag grows.
SELECT format($$ALTER SYSTEM SET evcollector.s3_endpoint = '%s'$$, :'s3') AS q \gset
:q;
ALTER SYSTEM SET evcollector.storage_url = 's3://no-such-bucket-mx/x';
ALTER SYSTEM SET evcollector.s3_access_key = 'S3RVER';
ALTER SYSTEM SET evcollector.s3_secret_key = 'S3RVER';
SELECT pg_reload_conf() \gset
SELECT count(*) AS n FROM pg_temp.run(format('%s/kafkactl -c %s create_topic mx_files 2 >/dev/null; echo done', :'bin', :'ctl')) \gset
SELECT count(*) AS n FROM pg_temp.run(format('%s/evc-produce -b %s -t mx_files -n 200 -g mxf', :'bin', :'boot')) \gset
SELECT evc_consumer_create('mx_files', ARRAY['mx_files'], 'archive', '{"flush_interval": "100ms"}') \gset
SELECT ok(pg_temp.wait_for($$SELECT sum(lag) = 200 FROM evc.consumer_lag WHERE consumer = 'mx_files'$$, 30),
	'while storage refuses the batch, evc.consumer_lag shows all 200 messages');
SELECT ok(pg_temp.wait_for($$SELECT failed >= 1 AND landed = 0 AND last_error LIKE '%NoSuchBucket%' FROM evc.stats WHERE name = 'mx_files'$$, 30),
	'evc.stats counts the failed landing and shows the error');

-- evc_metrics(), line by line.
CREATE TEMP TABLE m AS
SELECT n, l FROM regexp_split_to_table(rtrim(evc_metrics(), E'\n'), E'\n') WITH ORDINALITY AS t (l, n);
CREATE TEMP VIEW samples AS
SELECT n, l,
	   substring(l FROM '^([a-zA-Z_:][a-zA-Z0-9_:]*)') AS name,
	   substring(l FROM '\{(.*)\}') AS labels,
	   substring(l FROM ' ([^ ]+)$') AS value
FROM m WHERE l !~ '^#';
CREATE TEMP VIEW families AS
SELECT n, split_part(l, ' ', 3) AS name, split_part(l, ' ', 4) AS type FROM m WHERE l ~ '^# TYPE ';

SELECT is((SELECT count(*) FROM m WHERE NOT (
		l ~ '^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* [^\n]+$'
	 OR l ~ '^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram)$'
	 OR l ~ '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\["\\n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\["\\n])*")*\})? (-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|\+Inf|-Inf|NaN)$')),
	0::bigint, 'every line is a HELP line, a TYPE line or a sample');
SELECT is((SELECT count(*) FROM m h WHERE h.l ~ '^# HELP ' AND NOT EXISTS (SELECT FROM m t WHERE t.n = h.n + 1
	AND t.l ~ ('^# TYPE ' || split_part(h.l, ' ', 3) || ' '))), 0::bigint,
	'every HELP line is followed by the TYPE line of the same family');
SELECT is((SELECT count(*) - count(DISTINCT name) FROM families), 0::bigint, 'each family is declared once');
SELECT is((SELECT count(*) FROM samples s WHERE NOT EXISTS (
	SELECT FROM families f WHERE f.n < s.n AND (f.name = s.name
		OR (f.type = 'histogram' AND s.name IN (f.name || '_bucket', f.name || '_sum', f.name || '_count')))
	AND NOT EXISTS (SELECT FROM families g WHERE g.n > f.n AND g.n < s.n))), 0::bigint,
	'every sample follows the TYPE line of its own family');
SELECT is((SELECT count(*) FROM families WHERE type = 'counter' AND name !~ '_total$'), 0::bigint,
	'every counter name ends in _total');
SELECT ok((SELECT count(*) >= 10 FROM families WHERE type = 'counter')
	AND (SELECT bool_and(labels ~ '^kind="[a-z]+",name="[^"]+"') FROM samples WHERE name ~ '^evc_.*_total$' AND name <> 'evc_sent_total'),
	'the counters of evc.stats, each per worker with labels kind and name');

-- Histograms: le ascending and ending in +Inf, counts cumulative, +Inf = _count.
CREATE TEMP TABLE buckets AS
SELECT n, substring(labels FROM '^(.*),le="[^"]*"$') AS series,
	   substring(labels FROM 'le="([^"]*)"') AS le, value::numeric AS v
FROM samples WHERE name = 'evc_latency_seconds_bucket';
SELECT is((SELECT count(*) FROM (SELECT series, le, v, lag(le) OVER w AS prev_le, lag(v) OVER w AS prev_v
		FROM buckets WINDOW w AS (PARTITION BY series ORDER BY n)) b
	WHERE (prev_le IS NOT NULL AND (prev_le = '+Inf' OR (le <> '+Inf' AND le::float8 <= prev_le::float8)))
	   OR v < prev_v), 0::bigint,
	'histogram buckets have ascending le and cumulative counts');
SELECT is((SELECT count(*) FROM (SELECT DISTINCT ON (series) series, le, v FROM buckets ORDER BY series, n DESC) last
	WHERE le <> '+Inf' OR v <> (SELECT value::numeric FROM samples WHERE name = 'evc_latency_seconds_count' AND labels = last.series)
	OR NOT EXISTS (SELECT FROM samples WHERE name = 'evc_latency_seconds_sum' AND labels = last.series)), 0::bigint,
	'each histogram ends with le="+Inf", equal to its _count, and has a _sum');
SELECT is((SELECT value FROM samples WHERE name = 'evc_landed_total' AND labels = 'kind="consumer",name="mx_rows"'),
	(SELECT landed::text FROM evc.stats WHERE name = 'mx_rows'), 'the values are those of evc.stats');
SELECT is((SELECT sum(value::numeric) FROM samples WHERE name = 'evc_consumer_lag' AND labels ~ '^consumer="mx_files",topic="mx_files",partition="[01]"$'),
	200::numeric, 'evc_consumer_lag per partition, with labels consumer, topic and partition');

-- The official Python client parses it the same way.
SELECT is(pg_temp.run(format($$psql -X -At -h 127.0.0.1 -p %s -U postgres -d evc_test -c 'SELECT evc_metrics()' | /usr/bin/python3 -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = list(text_string_to_metric_families(sys.stdin.read()))
print(len(fams), sum(len(f.samples) for f in fams))'$$, :'port')),
	(SELECT count(*) FROM families) || ' ' || (SELECT count(*) FROM samples),
	'prometheus_client parses the same families and samples');

-- Storage fixed: the held batch lands and the lag drains.
ALTER SYSTEM RESET evcollector.storage_url;
ALTER SYSTEM RESET evcollector.s3_endpoint;
ALTER SYSTEM RESET evcollector.s3_access_key;
ALTER SYSTEM RESET evcollector.s3_secret_key;
SELECT pg_reload_conf() \gset
SELECT ok(pg_temp.wait_for($$SELECT coalesce(sum(lag), -1) = 0 FROM evc.consumer_lag WHERE consumer = 'mx_files'$$, 30),
	'once storage is back, the lag drains to 0');

-- A message Kafka can never take (above librdkafka's message.max.bytes):
-- the relay counts a failed delivery and a dead letter, and evc_trace
-- finds it there.
SET evcollector.require_schema = off;
SET evcollector.max_event_size = '2MB';
SELECT evc_send('mxbig', 'Big', jsonb_build_object('pad', repeat('x', 1100000))) AS big_id \gset
RESET evcollector.max_event_size;
RESET evcollector.require_schema;
SELECT pg_temp.wait_for(format($$SELECT EXISTS (SELECT FROM evc.dead_letters WHERE message_id = %L AND source = 'relay')$$, :'big_id'), 30) AS waited \gset
SELECT is((SELECT (failed, dead_lettered)::text FROM evc.stats WHERE kind = 'relay'), '(1,1)',
	'the relay counts the failed delivery and the dead letter');
-- Exactly once: the dead letter is written when its transaction is
-- aborted; its tick, sent again without it, is delivered a moment later.
SELECT evc_flush('30 s') \gset
SELECT is((SELECT stage || ' ' || (detail->>'error') FROM evc_trace(:'big_id')), 'dead_letter MSG_SIZE_TOO_LARGE: Broker: Message size too large',
	'evc_trace finds it among the dead letters, with the reason');

-- Metrics messages every second on the metrics topic.
ALTER SYSTEM SET evcollector.metrics_interval = '1s';
SELECT pg_reload_conf() \gset
SELECT pg_sleep(3.5) \gset
ALTER SYSTEM RESET evcollector.metrics_interval;
SELECT pg_reload_conf() \gset
SELECT is(evc_flush('20 s'), 0::bigint, 'the metrics messages left the outbox');
SELECT format('COPY msgs FROM PROGRAM %L', format('%s/kafka-dump %s metrics', :'bin', :'boot')) AS q \gset
:q;
CREATE TEMP TABLE metrics_msgs AS
SELECT convert_from(decode(key, 'hex'), 'UTF8') AS key, headers, evc_decode(decode(payload_hex, 'hex'), 'Metrics') AS m
FROM msgs;
SELECT cmp_ok((SELECT count(*) FROM metrics_msgs), '>=', 2::bigint, 'the relay published Metrics messages');
SELECT ok((SELECT bool_and(key = m->>'source' AND m->>'source' LIKE '%/evc_test'
		AND headers LIKE '%content-type=application/x-protobuf; proto=evcollector.Metrics%') FROM metrics_msgs),
	'keyed by their source, cluster/database');
-- Distinct ones: on librdkafka's mock cluster, which ignores
-- isolation.level, a Metrics message of a transaction that was aborted (the
-- dead letter's above) is read beside the one sent again.
SELECT cmp_ok((SELECT min(d) FROM (SELECT t - lag(t) OVER (ORDER BY t) AS d
	FROM (SELECT DISTINCT (m->>'taken_at')::timestamptz AS t FROM metrics_msgs) u) x), '>=', interval '900 ms', 'about one second apart');
SELECT ok((SELECT bool_or(w->>'kind' = 'consumer' AND w->>'name' = 'mx_rows' AND (w->>'landed')::int = 300
		AND jsonb_array_length(w->'latency_count') = 18)
	FROM metrics_msgs, jsonb_array_elements(m->'workers') AS w),
	'they carry every worker''s counters and histogram');
SELECT ok((SELECT bool_or(l->>'consumer' = 'mx_rows' AND l->>'topic' = 'mx_events')
	FROM metrics_msgs, jsonb_array_elements(m->'lag') AS l), 'and the lag per partition');

SELECT evc_consumer_drop('mx_rows') \gset
SELECT evc_consumer_drop('mx_files') \gset
SELECT * FROM finish();
