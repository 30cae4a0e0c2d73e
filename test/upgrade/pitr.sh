#!/usr/bin/env bash
# Point-in-time recovery to before the relay's last Kafka commits.  A base
# backup is taken, the primary then sends and delivers more (its progress
# record in <prefix>_evc_relay now holds a snapshot that counts transaction
# ids the backup never saw), and the backup is recovered to its end and
# promoted: a new timeline.  The restored server shares the primary's
# system identifier and database, so its relay reads that record as its
# own.  Applied, the record's snapshot would take the restored server's new
# transactions, whose ids it hands out again, as already sent.  The relay
# must see that the record was written after its history left the
# primary's, not apply it, and deliver every new event.
set -u
. "$(dirname "$0")/clusters.inc"
plan 10

PRI=$EVC_RUN/pitr-primary
RST=$EVC_RUN/pitr-restored
PP=$(evc_free_port)
CLUSTERS+=("$PRI" "$RST")
cluster_new "$PRI" "$PP" "wal_level = replica" "max_wal_senders = 4"
ok $? "a primary"
qp "$PP" "SET client_min_messages = warning; CREATE EXTENSION evcollector" &&
	qp "$PP" "SELECT evc_register_schema('pitr', 'ev', '{\"type\": \"object\", \"required\": [\"i\"]}')" >/dev/null &&
	qp "$PP" "SELECT evc_send('pitr', 'ev', '{\"i\": 0}')" >/dev/null
is "$(qp "$PP" "SELECT evc_flush('30 s')")" 0 "the primary delivers"

as_pg "$BINDIR/pg_basebackup" -h 127.0.0.1 -p "$PP" -U postgres -D "$RST" -X stream -c fast >"$RST.basebackup.log" 2>&1
ok $? "a base backup of the primary"

# After the backup: 300 transactions that use ids, then sent events, so
# that the progress record's snapshot is far ahead of the backup's ids.
for i in $(seq 300); do echo "SELECT pg_current_xact_id();"; done |
	psql -X -q -A -t -h 127.0.0.1 -p "$PP" -U postgres -d evc_test >/dev/null
for i in $(seq 20); do echo "SELECT evc_send('pitr', 'ev', '{\"i\": $i}');"; done |
	psql -X -q -A -t -h 127.0.0.1 -p "$PP" -U postgres -d evc_test >/dev/null
is "$(qp "$PP" "SELECT evc_flush('30 s')")" 0 "the primary delivers after the backup"
cluster_stop "$PRI"

# Recover the backup to its end only, and promote it.
RP=$(evc_free_port)
{
	echo "port = $RP"
	echo "restore_command = '/bin/false'"
	echo "recovery_target = 'immediate'"
	echo "recovery_target_action = 'promote'"
} >>"$RST/postgresql.conf"
as_pg touch "$RST/recovery.signal"
# Kafka down while the restored server takes its first events: its relay
# reads the progress record only once they are committed.
kafka_down
cluster_start "$RST"
ok $? "the backup recovered to its end and promoted"
wait_for 60 bash -c "[ \"\$(psql -X -A -t -h 127.0.0.1 -p $RP -d evc_test -c \"SELECT pg_is_in_recovery()\")\" = f ]"
is "$(qp "$RP" "SELECT timeline_id FROM pg_control_checkpoint()")" 2 "on a new timeline"

# New events on the restored server, each in its own transaction, while
# Kafka is down: their ids are among those the record's snapshot counts as
# completed.
qp "$RP" "CREATE TABLE pitr_sent (mid uuid)"
for i in $(seq 100); do echo "INSERT INTO pitr_sent SELECT evc_send('pitr', 'ev', '{\"i\": $((1000 + i))}');"; done |
	psql -X -q -A -t -h 127.0.0.1 -p "$RP" -U postgres -d evc_test >/dev/null
qp "$RP" "SELECT mid || '|pitr.ev' FROM pitr_sent" >"$EVC_RUN/tmp/pitr-pending.txt"
is "$(grep -c . "$EVC_RUN/tmp/pitr-pending.txt")" 100 "100 events committed on the restored server"
kafka_up
: >"$EVC_RUN/tmp/pitr-before.tsv"
is "$(qp "$RP" "SELECT evc_flush('60 s')" 2>&1)" 0 "the restored server delivers its new events"
topic_messages pitr.ev >"$EVC_RUN/tmp/pitr-after.tsv"
read -r missing dups < <(delivered_once "$EVC_RUN/tmp/pitr-pending.txt" "$EVC_RUN/tmp/pitr-before.tsv" "$EVC_RUN/tmp/pitr-after.tsv")
diag "pitr: 100 new events, $missing missing, $dups duplicates"
is "$missing.$dups" "0.0" "each of the 100 events sent after the recovery arrived once"
grep -q "was written after this server's history left the writer's; it is not applied" "$RST.log"
ok $? "the relay logged that it did not apply the primary's later progress record"
grep "not applied" "$RST.log" | head -2 | cut -c1-400 | sed 's/^/#   /'
[ "$TAP_FAILED" -gt 0 ] && grep -v "^\s*$" "$RST.log" | grep -E "evcollector|ERROR|FATAL|WARNING|recovery|timeline|tick" | tail -25 | cut -c1-300 | sed 's/^/#   /'
exit $((TAP_FAILED > 0))
