#!/usr/bin/env bash
# ALTER EXTENSION evcollector UPDATE from the first release, one version at
# a time, with the workers running and events pending: after each step the
# registry, the consumers and every pending event are still there, and at
# the end each pending event arrives once.  The library is always the
# current one; events pending in a 0.3.0 outbox are the rows an old
# evc_send wrote (encoded by the current evc_send in a transaction rolled
# back, as test/suites/relay_upgrade.sql does).
set -u
. "$(dirname "$0")/clusters.inc"
plan 18

UPG=$EVC_RUN/extupgrade
UP=$(evc_free_port)
CLUSTERS+=("$UPG")
cluster_new "$UPG" "$UP"
ok $? "a cluster with the library preloaded"

# 300 encoded events, kept in a file.
as_pg "$BINDIR/createdb" -h 127.0.0.1 -p "$UP" capture
psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$UP" -U postgres -d capture >/dev/null 2>&1 <<SQL
SET client_min_messages = warning;
CREATE EXTENSION evcollector;
SELECT evc_register_schema('eu', 'ev', '{"type": "object"}');
CREATE TABLE rows (message_id uuid, topic text, key bytea, payload bytea, schema_version int, content_type text);
CREATE FUNCTION capture(n int) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE
	saved rows[];
BEGIN
	BEGIN
		PERFORM evc_send('eu', 'ev', jsonb_build_object('i', g), key => (g % 5)::text) FROM generate_series(1, n) g;
		SELECT array_agg(ROW(message_id, topic, key, payload, schema_version, content_type)::rows)
		INTO saved FROM evc.outbox WHERE topic = 'eu.ev';
		RAISE EXCEPTION 'rolled back on purpose';
	EXCEPTION WHEN raise_exception THEN
		NULL;
	END;
	INSERT INTO rows SELECT * FROM unnest(saved);
END \$\$;
SELECT capture(300);
COPY rows TO '$EVC_RUN/tmp/eu-rows.copy';
SQL
is "$(wc -l <"$EVC_RUN/tmp/eu-rows.copy")" 300 "300 encoded events captured"

kafka_down
qp "$UP" "SET client_min_messages = warning; CREATE EXTENSION evcollector VERSION '0.1.0'"
is "$(qp "$UP" "SELECT extversion FROM pg_extension WHERE extname = 'evcollector'")" 0.1.0 "0.1.0 installed"

# check_state N_PENDING: the state every step must keep.
check_state() {
	local types pending consumers
	types=$(qp "$UP" "SELECT count(*) FROM evc.event_types WHERE client = 'eu'" 2>/dev/null)
	pending=$(qp "$UP" "SELECT count(*) FROM evc.outbox WHERE topic = 'eu.ev'" 2>/dev/null)
	consumers=$(qp "$UP" "SELECT count(*) FROM evc.consumer_defs WHERE name = 'eu_rows'" 2>/dev/null)
	echo "$types|$pending|$consumers"
}

step() {
	qp "$UP" "SET client_min_messages = warning; ALTER EXTENSION evcollector UPDATE TO '$1'"
	ok $? "ALTER EXTENSION evcollector UPDATE TO '$1'"
}

step 0.2.0
# The library is ahead of the SQL here: registering cannot publish the
# schema, and says so with the way out; the row goes in by hand instead.
out=$(psql -X -A -t -h 127.0.0.1 -p "$UP" -U postgres -d evc_test -v VERBOSITY=verbose \
	-c "SELECT evc_register_schema('eu', 'ev', '{\"type\": \"object\"}')" 2>&1)
echo "$out" | grep -q "55000: evc.outbox does not have the layout this library expects"
ok $? "0.2.0 with the current library: registering says the SQL is older than the library"
echo "$out" | head -3 | sed 's/^/#   /'
qp "$UP" "INSERT INTO evc.event_types (client, event_name, version, schema, compatibility, topic)
	VALUES ('eu', 'ev', 1, '{\"type\": \"object\"}', 'backward', 'eu.ev')"

step 0.3.0
qp "$UP" "CREATE TEMP TABLE r (message_id uuid, topic text, key bytea, payload bytea, schema_version int, content_type text);
	COPY r FROM '$EVC_RUN/tmp/eu-rows.copy';
	INSERT INTO evc.outbox (message_id, topic, key, payload, schema_version, content_type)
	SELECT message_id, topic, key, payload, schema_version, content_type FROM r WHERE key <> '\\x30';
	-- One in five failed before, with its attempts: it goes to the retry table in 0.6.0.
	INSERT INTO evc.outbox (message_id, topic, key, payload, schema_version, content_type, attempts, last_error, next_attempt_at)
	SELECT message_id, topic, key, payload, schema_version, content_type, 2, 'broker down', now() FROM r WHERE key = '\\x30'"
qp "$UP" "SELECT mid || '|eu.ev' FROM (SELECT message_id AS mid FROM evc.outbox WHERE topic = 'eu.ev') m" >"$EVC_RUN/tmp/eu-pending.txt"
is "$(check_state)" "1|300|" "0.3.0: the schema and 300 events pending"

step 0.4.0
qp "$UP" "SELECT evc_consumer_create('eu_rows', ARRAY['eu.ev'], 'table', '{\"flush_interval\": \"100ms\"}')" >/dev/null
is "$(check_state)" "1|300|1" "0.4.0: the schema, 300 events pending, a consumer"
step 0.5.0
is "$(check_state)" "1|300|1" "0.5.0: nothing lost"
step 0.6.0
is "$(check_state)" "1|300|1" "0.6.0: the pending events moved into the rotating tables"
step 0.7.0
is "$(check_state)" "1|300|1" "0.7.0: nothing lost"
wait_for 30 bash -c "[ -n \"\$(psql -X -A -t -h 127.0.0.1 -p $UP -d evc_test -c \"SELECT pid FROM evc.workers WHERE kind = 'consumer' AND pid IS NOT NULL\")\" ]"
ok $? "the relay and the consumer run"

topic_messages eu.ev >"$EVC_RUN/tmp/eu-before.tsv"
kafka_up
is "$(qp "$UP" "SELECT evc_flush('120 s')")" 0 "after the updates the outbox is delivered"
topic_messages eu.ev >"$EVC_RUN/tmp/eu-after.tsv"
read -r missing dups < <(delivered_once "$EVC_RUN/tmp/eu-pending.txt" "$EVC_RUN/tmp/eu-before.tsv" "$EVC_RUN/tmp/eu-after.tsv")
diag "extension upgrade: 300 pending, $missing missing, $dups duplicates"
is "$missing.$dups" "0.0" "each of the 300 events pending since 0.3.0 arrived once"
exit $((TAP_FAILED > 0))
