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
primary_new "$PRI" "$PP" pitr

as_pg "$BINDIR/pg_basebackup" -h 127.0.0.1 -p "$PP" -U postgres -D "$RST" -X stream -c fast >"$RST.basebackup.log" 2>&1
ok $? "a base backup of the primary"

primary_moves_on "$PP" pitr
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
# reads the progress record only once they are committed (then
# new_history_delivers).
kafka_down
cluster_start "$RST"
ok $? "the backup recovered to its end and promoted"
wait_for 60 bash -c "[ \"\$(psql -X -A -t -h 127.0.0.1 -p $RP -d evc_test -c \"SELECT pg_is_in_recovery()\")\" = f ]"
is "$(qp "$RP" "SELECT timeline_id FROM pg_control_checkpoint()")" 2 "on a new timeline"

new_history_delivers "$RP" pitr "$RST.log"
exit $((TAP_FAILED > 0))
