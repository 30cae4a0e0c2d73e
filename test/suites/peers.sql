-- The test peers are real: kcat talks to the test Kafka (consumer groups
-- included), a broker taken down with the fault command is seen by a
-- client, and an object put into s3rver with curl SigV4 comes back byte for
-- byte.  The commands run as the server's OS user via COPY ... FROM PROGRAM.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(8);

SELECT current_setting('evc_test.kafka_bootstrap') AS boot,
	   current_setting('evc_test.kafka_control') AS ctl,
	   current_setting('evc_test.bin') AS bin,
	   current_setting('evc_test.tmp') AS tmp,
	   current_setting('evc_test.s3_endpoint') AS s3,
	   current_setting('evc_test.s3_bucket') AS bucket \gset

CREATE TEMP TABLE out (line text);

-- kcat sees the three brokers.
SELECT format('kcat -b %s -L -m 10 | grep -c "at 127.0.0.1"', :'boot') AS cmd \gset
COPY out FROM PROGRAM :'cmd';
SELECT is((SELECT line FROM out), '3', 'kcat -L lists 3 brokers of the test Kafka');

-- Produce three messages with kcat, consume them back through a group.
TRUNCATE out;
SELECT format('printf "one\ntwo\nthree\n" | kcat -b %s -P -t evc_peers_test -p 0 && echo produced', :'boot') AS cmd \gset
COPY out FROM PROGRAM :'cmd';
SELECT is((SELECT line FROM out), 'produced', 'kcat produced to the test Kafka');
TRUNCATE out;
SELECT format('timeout 30 kcat -b %s -G evc_peers_group -o beginning -c 3 -f "%%s\n" evc_peers_test 2>/dev/null', :'boot') AS cmd \gset
COPY out FROM PROGRAM :'cmd';
SELECT is((SELECT array_agg(line ORDER BY line) FROM out), ARRAY['one', 'three', 'two'],
	'kcat consumed the messages back through a consumer group');

-- Take broker 1 down: a client that can only reach broker 1 fails.
SELECT split_part(:'boot', ',', 1) AS broker1 \gset
TRUNCATE out;
SELECT format('%s/kafkactl -c %s broker_down 1', :'bin', :'ctl') AS cmd \gset
COPY out FROM PROGRAM :'cmd';
SELECT is((SELECT line FROM out), 'ok', 'fault command broker_down accepted');
TRUNCATE out;
SELECT format('kcat -b %s -L -m 3 >/dev/null 2>&1 && echo reachable || echo unreachable', :'broker1') AS cmd \gset
COPY out FROM PROGRAM :'cmd';
SELECT is((SELECT line FROM out), 'unreachable', 'a client sees broker 1 down');
TRUNCATE out;
SELECT format('%s/kafkactl -c %s broker_up 1 >/dev/null && kcat -b %s -L -m 10 >/dev/null 2>&1 && echo reachable || echo unreachable',
	:'bin', :'ctl', :'broker1') AS cmd \gset
COPY out FROM PROGRAM :'cmd';
SELECT is((SELECT line FROM out), 'reachable', 'broker 1 is back after broker_up');

-- 256 KiB of random bytes through s3rver with curl SigV4, compared by sha256.
CREATE TEMP TABLE blob AS
SELECT string_agg(decode(md5(random()::text), 'hex'), ''::bytea) AS b
FROM generate_series(1, 16384);
SELECT format('base64 -d > %s/peers.bin', :'tmp') AS cmd \gset
COPY (SELECT translate(encode(b, 'base64'), E'\n', '') FROM blob) TO PROGRAM :'cmd';
TRUNCATE out;
SELECT format('%1$s/s3cli %2$s %3$s put peers/blob.bin %4$s/peers.bin && %1$s/s3cli %2$s %3$s get peers/blob.bin %4$s/peers.back && sha256sum < %4$s/peers.back | cut -c1-64',
	:'bin', :'s3', :'bucket', :'tmp') AS cmd \gset
COPY out FROM PROGRAM :'cmd';
SELECT is((SELECT line FROM out), (SELECT encode(sha256(b), 'hex') FROM blob),
	'an object put with curl SigV4 comes back byte for byte');
TRUNCATE out;
SELECT format('%s/s3cli %s %s list peers/', :'bin', :'s3', :'bucket') AS cmd \gset
COPY out FROM PROGRAM :'cmd';
SELECT is((SELECT array_agg(line) FROM out), ARRAY['peers/blob.bin'], 's3rver lists the object');

SELECT * FROM finish();
