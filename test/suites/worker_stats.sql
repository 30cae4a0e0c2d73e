-- Workers report their table statistics, as a backend does when it goes
-- idle: 100,000 events sent and drained show up in pg_stat_user_tables as
-- the relay's inserts into evc.outbox_ticks (since 0.6.0 it deletes no
-- outbox row: tables are emptied by TRUNCATE) and a table-sink consumer's
-- inserts into evc.events.  Autovacuum reads these numbers; without the
-- workers' reports a worker's tables looked untouched to it (pg_net#254).
-- Statistics are flushed lazily (at most once a second, and an idle worker
-- after up to 10 s), so each check waits a bounded time.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS evcollector;
\ir lib.psql
SELECT plan(6);

-- Read the shared statistics afresh at every access, not once per transaction.
SET stats_fetch_consistency = none;

CREATE FUNCTION pg_temp.tup(rel text, col text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE format('SELECT coalesce(%I, 0) FROM pg_stat_user_tables WHERE relid = %L::regclass', col, rel)
		INTO n;
	RETURN coalesce(n, 0);
END $$;

SELECT evc_register_schema('wstats', 'Tick', '{
	"type": "object",
	"required": ["n"],
	"properties": {"n": {"type": "integer"}}
}') AS v \gset
SELECT is(evc_flush('30 s'), 0::bigint, 'registration published');

SELECT pg_temp.tup('evc.outbox_ticks', 'n_tup_ins') AS ticks_ins0,
	   pg_temp.tup('evc.events', 'n_tup_ins') AS events_ins0 \gset

-- Send and drain 100,000 events.
SELECT is((SELECT count(evc_send('wstats', 'Tick', jsonb_build_object('n', g)))
	FROM generate_series(1, 100000) g), 100000::bigint, '100,000 events sent');
SELECT is(evc_flush('300 s'), 0::bigint, 'the relay drained the outbox');

SELECT ok(pg_temp.wait_for(format($$SELECT pg_temp.tup('evc.outbox_ticks', 'n_tup_ins') - %s >= 1$$,
	:ticks_ins0), 60),
	'the relay''s inserts into evc.outbox_ticks reach pg_stat_user_tables');

-- A table sink lands them into evc.events; its inserts reach the statistics.
SELECT evc_consumer_create('wstats_table', ARRAY['wstats.Tick'], 'table', '{"flush_interval": "200ms"}') \gset
SELECT ok(pg_temp.wait_for($$SELECT landed = 100000 FROM evc.consumers WHERE name = 'wstats_table'$$, 300),
	'the table sink landed the 100,000 events');
-- Checked while the consumer still runs: a worker that exits flushes its
-- statistics anyway, which would hide the bug.
SELECT ok(pg_temp.wait_for(format($$SELECT pg_temp.tup('evc.events', 'n_tup_ins') - %s >= 100000$$,
	:events_ins0), 60),
	'the consumer''s 100,000 inserts into evc.events reach pg_stat_user_tables');

SELECT evc_consumer_drop('wstats_table') \gset
DELETE FROM evc.events WHERE topic = 'wstats.Tick';
SELECT * FROM finish();
