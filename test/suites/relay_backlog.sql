-- The relay drains a backlog of several chunks (evcollector.relay_batch_size,
-- 10,000 by default) without skipping the row of a transaction that sent first and
-- committed last, below rows already sent, and without sending a row twice
-- while two batches are in flight.  Every message on the topic is counted.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS evcollector;
CREATE EXTENSION IF NOT EXISTS dblink;
\ir lib.psql
SELECT plan(18);

SELECT evc_register_schema('backlog', 'Tick', '{"type": "object", "required": ["i"]}');
SELECT is(evc_flush('20 s'), 0::bigint, 'schema published; the outbox is empty');

-- A second session sends first, so its row has the lowest id, and stays open.
SELECT pg_temp.connect_self('late');
SELECT dblink_exec('late', 'BEGIN');
SELECT is((SELECT mid FROM dblink('late',
		$$SELECT evc_send('backlog', 'Tick', '{"i": 0, "late": true}', key => 'late')::text$$) AS t(mid text))
		IS NOT NULL, true, 'the late transaction sent its event and is still open');
SELECT last_value AS late_id FROM evc.outbox_seq \gset

-- Kafka goes away, and 40,000 events commit: the relay reads full batches
-- after the last one it read, and has two of them in flight.
SELECT produced AS produced_before FROM evc.stats WHERE kind = 'relay' \gset
SELECT is(pg_temp.all_brokers('down'),
	'okokok', 'all three brokers taken down');
SELECT is(count(evc_send('backlog', 'Tick', jsonb_build_object('i', i), key => (i % 50)::text)), 40000::bigint,
	'40,000 events committed after the late one was sent')
FROM generate_series(1, 40000) i;
SELECT ok((SELECT min(id) FROM evc.outbox) > :late_id, 'their ids are all above the late row''s');

-- Once the relay has read and produced two batches of them, the late
-- transaction commits, below every row already sent.
SELECT ok(pg_temp.wait_for(format('SELECT produced >= %s + 2 * %s FROM evc.stats WHERE kind = %L',
	:produced_before, current_setting('evcollector.relay_batch_size'), 'relay'), 30),
	'the relay has two full chunks in flight');
SELECT dblink_exec('late', 'COMMIT');
SELECT dblink_disconnect('late');
SELECT is(pg_temp.all_brokers('up'),
	'okokok', 'brokers back');
SELECT is(evc_flush('120 s'), 0::bigint, 'the backlog and the late event are delivered');

CREATE TEMP TABLE got AS
SELECT substring(headers FROM 'message_id=([0-9a-f-]{36})') AS mid, encode(decode(payload_hex, 'hex'), 'escape') AS body
FROM pg_temp.read_topic('backlog.Tick');
SELECT is((SELECT count(DISTINCT mid) FROM got), 40001::bigint, 'every one of the 40,001 events is on the topic');
SELECT is((SELECT count(*) FROM got), 40001::bigint, 'and none twice: no row was read again while in flight');
SELECT is((SELECT count(*) FROM got WHERE body LIKE '%"late": true%'), 1::bigint,
	'the event that committed last, below rows already sent, was not skipped');

-- A tick of large events is cut by bytes too (64 MB of keys and values a
-- chunk).  With Kafka away, 350 events of 400 kB (140 MB) are three chunks:
-- the relay reads and produces two, and reads the third only once the first
-- is acknowledged.  Cut by count alone (10,000) they would be one chunk, all
-- produced at once, and twice that in memory.
SELECT produced AS big_before, delivered AS big_delivered_before FROM evc.stats WHERE kind = 'relay' \gset
SELECT is(pg_temp.all_brokers('down'),
	'okokok', 'all three brokers taken down again');
SELECT is(count(evc_send('backlog', 'Tick', jsonb_build_object('i', i, 'big', repeat('x', 400000)))), 350::bigint,
	'350 events of 400 kB committed in one transaction')
FROM generate_series(1, 350) i;
SELECT ok(pg_temp.wait_for(format('SELECT produced >= %s + 300 FROM evc.stats WHERE kind = %L',
	:big_before, 'relay'), 60),
	'two chunks of about 64 MB are produced');
SELECT cmp_ok((SELECT produced - :big_before FROM evc.stats WHERE kind = 'relay'), '<', 350::bigint,
	'and the third waits: a chunk stops at 64 MB, well before 10,000 events');
SELECT is(pg_temp.all_brokers('up'),
	'okokok', 'brokers back');
SELECT is(evc_flush('120 s'), 0::bigint, 'the 140 MB tick, cut by bytes, is delivered');
SELECT cmp_ok((SELECT delivered - :big_delivered_before FROM evc.stats WHERE kind = 'relay'), '>=', 350::bigint,
	'all 350 of its events');
SELECT * FROM finish();
