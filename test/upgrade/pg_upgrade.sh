#!/usr/bin/env bash
# pg_upgrade of a cluster that uses evcollector, PostgreSQL 15 to 15:
# --check, then a real run in --link mode.  pg_upgrade keeps transaction
# ids (it sets the new cluster's next xid and epoch to the old one's), so
# here, unlike a dump, even the outbox tables, ticks and rotation come
# over unchanged; every table of evc is compared, and the events pending
# before the upgrade arrive once after it.
set -u
. "$(dirname "$0")/clusters.inc"
plan 10

OLD=$EVC_RUN/upg-old
NEW=$EVC_RUN/upg-new
OP=$(evc_free_port)
NP=$(evc_free_port)
CLUSTERS+=("$OLD" "$NEW")
cluster_new "$OLD" "$OP"
ok $? "the old cluster"
qp "$OP" "SET client_min_messages = warning; CREATE EXTENSION evcollector" &&
	psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$OP" -U postgres -d evc_test -v bin="$EVC_RUN/bin" \
		-v boot="$EVC_KAFKA_BOOTSTRAP" -v ctl="$EVC_KAFKA_CONTROL" -v c=pu \
		-f "$(dirname "$0")/state.sql" >"$EVC_RUN/tmp/upg-state.out" 2>&1
ok $? "it holds every kind of state"
sed 's/^/#   /' "$EVC_RUN/tmp/upg-state.out" | head -10
# What the topic holds before, read while Kafka is up: with every broker
# down kcat reads nothing (it gives up after 5 s a topic).
topic_messages $(qp "$OP" "SELECT DISTINCT topic FROM evc.event_types WHERE client = 'pu'") >"$EVC_RUN/tmp/upg-before.tsv"
diag "$(grep -c . "$EVC_RUN/tmp/upg-before.tsv") messages on the topic before"
kafka_down
qp "$OP" "SELECT count(evc_send('pu', 'reading', jsonb_build_object('room', 'r1', 'v', i), jsonb_build_object('sent_at', now())))
	FROM generate_series(1, 400) i" >/dev/null
pending_ids "$OP" "$EVC_RUN/tmp/upg-pending.txt"
[ "$(grep -c . "$EVC_RUN/tmp/upg-pending.txt")" -ge 400 ]
ok $? "$(grep -c . "$EVC_RUN/tmp/upg-pending.txt") events pending with Kafka down"

# Everything, the outbox's own tables included: pg_upgrade keeps xids.
snapshot_full() {
	snapshot_state "$1" "$2"
	for t in outbox_0 outbox_1 outbox_2 outbox_tables outbox_ticks; do
		echo "== table $t" >>"$2"
		qp "$1" "SELECT x::text FROM evc.$t x ORDER BY 1" >>"$2"
	done
	qp "$1" "SELECT (SELECT count(*) FROM evc.outbox_retry), pg_current_snapshot() IS NOT NULL" >>"$2"
}
snapshot_full "$OP" "$EVC_RUN/tmp/upg-old.state"
cluster_stop "$OLD"

as_pg "$BINDIR/initdb" -D "$NEW" -A trust -U postgres -E UTF8 --no-sync >"$NEW.initdb.log" 2>&1 &&
	cluster_conf "$NEW" "$NP"
ok $? "the new cluster, initialised with the same settings"
cd "$EVC_RUN/tmp" || exit 1
chown postgres "$EVC_RUN/tmp"
as_pg "$BINDIR/pg_upgrade" -b "$BINDIR" -B "$BINDIR" -d "$OLD" -D "$NEW" -p "$OP" -P "$NP" \
	-s "$EVC_RUN/tmp" --check >"$EVC_RUN/tmp/upg-check.out" 2>&1
ok $? "pg_upgrade --check"
grep -iE 'fatal|failure|error' "$EVC_RUN/tmp/upg-check.out" | head -5 | sed 's/^/#   /'
as_pg "$BINDIR/pg_upgrade" -b "$BINDIR" -B "$BINDIR" -d "$OLD" -D "$NEW" -p "$OP" -P "$NP" \
	-s "$EVC_RUN/tmp" --link >"$EVC_RUN/tmp/upg-run.out" 2>&1
rc=$?
ok $rc "pg_upgrade --link"
[ $rc -ne 0 ] && tail -15 "$EVC_RUN/tmp/upg-run.out" | sed 's/^/#   /'
cluster_start "$NEW"
ok $? "the upgraded cluster starts"
# Before the relay gets far enough to change anything: Kafka is still down.
snapshot_full "$NP" "$EVC_RUN/tmp/upg-new.state"
diff "$EVC_RUN/tmp/upg-old.state" "$EVC_RUN/tmp/upg-new.state" >"$EVC_RUN/tmp/upg.diff"
ok $? "every evc table, sequence, tick and pending event kept ($(grep -c '^== table' "$EVC_RUN/tmp/upg-old.state") tables)"
head -20 "$EVC_RUN/tmp/upg.diff" | sed 's/^/#   /'

kafka_up
is "$(qp "$NP" "SELECT evc_flush('120 s')")" 0 "the upgraded server delivers its outbox"
topic_messages $(pending_topics "$EVC_RUN/tmp/upg-pending.txt") >"$EVC_RUN/tmp/upg-after.tsv"
read -r missing dups < <(delivered_once "$EVC_RUN/tmp/upg-pending.txt" "$EVC_RUN/tmp/upg-before.tsv" "$EVC_RUN/tmp/upg-after.tsv")
diag "pg_upgrade: $missing missing, $dups duplicates"
is "$missing.$dups" "0.0" "each event pending before the upgrade arrived once"
exit $((TAP_FAILED > 0))
