-- The launcher: visible, survives SIGHUP, exits on SIGTERM within a second
-- and comes back; DROP EXTENSION and DROP DATABASE do not hang; a bad
-- value in postgresql.conf is refused on reload.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS evcollector;
SELECT plan(12);

CREATE OR REPLACE FUNCTION pg_temp.launcher_pid() RETURNS int
LANGUAGE sql AS $$
	SELECT pid FROM pg_stat_activity WHERE backend_type = 'evcollector launcher'
$$;

-- Wait up to `secs` seconds for a launcher whose pid is not `old`.
CREATE OR REPLACE FUNCTION pg_temp.wait_launcher(old int, secs int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
	p int;
BEGIN
	FOR i IN 1 .. secs * 10 LOOP
		PERFORM pg_stat_clear_snapshot();
		p := pg_temp.launcher_pid();
		IF p IS NOT NULL AND p IS DISTINCT FROM old THEN
			RETURN p;
		END IF;
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN NULL;
END $$;

SELECT is((SELECT datname::text FROM pg_stat_activity WHERE backend_type = 'evcollector launcher'),
	'evc_test', 'launcher is connected to evcollector.database');

SELECT pg_temp.launcher_pid() AS pid0 \gset
SELECT ok(pg_reload_conf(), 'configuration reloaded');
SELECT pg_sleep(0.5);
SELECT is(pg_temp.launcher_pid(), :pid0, 'launcher survives SIGHUP');

SELECT starts AS starts0 FROM evc.workers WHERE kind = 'launcher' \gset
SELECT ok(pg_terminate_backend(:pid0, 1500), 'launcher exits within about a second of SIGTERM');
SELECT isnt(pg_temp.wait_launcher(:pid0, 15), NULL, 'launcher comes back after pg_terminate_backend');
SELECT cmp_ok((SELECT starts FROM evc.workers WHERE kind = 'launcher'), '>', :starts0::bigint,
	'evc.workers counts the restart');

-- DROP and CREATE EXTENSION with the launcher running must not wait on it.
SET statement_timeout = '10s';
DROP EXTENSION evcollector;
SELECT hasnt_schema('evc', 'DROP EXTENSION removed schema evc');
CREATE EXTENSION evcollector;
SELECT has_schema('evc', 'extension created again');

CREATE DATABASE evc_other;
DROP DATABASE evc_other;
SELECT ok(NOT EXISTS (SELECT FROM pg_database WHERE datname = 'evc_other'),
	'DROP DATABASE of another database does not hang');
RESET statement_timeout;

-- A bad value written to postgresql.conf is refused on reload; the old
-- value stays in force.
SELECT current_setting('evcollector.batch_size') AS batch0 \gset
SELECT format('echo "evcollector.batch_size = -5" >> %s', current_setting('config_file')) AS cmd \gset
CREATE TEMP TABLE sink (line text);
COPY sink FROM PROGRAM :'cmd';
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
SELECT is(current_setting('evcollector.batch_size'), :'batch0', 'bad batch_size on reload is refused');
SELECT ok((SELECT NOT applied AND error IS NOT NULL FROM pg_file_settings
	WHERE name = 'evcollector.batch_size' AND setting = '-5'), 'pg_file_settings shows why');
SELECT format($c$sed -i '/^evcollector.batch_size = -5$/d' %s$c$, current_setting('config_file')) AS cmd \gset
COPY sink FROM PROGRAM :'cmd';
SELECT pg_reload_conf();
SELECT is((SELECT count(*) FROM pg_file_settings WHERE name = 'evcollector.batch_size'), 0::bigint,
	'the bad line is gone again');

SELECT * FROM finish();
