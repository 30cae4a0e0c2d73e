#!/usr/bin/env bash
# A hot standby runs no evcollector worker, reads and validates, and
# refuses evc_send as a read-only server does.  Then a failover: events
# are committed on the primary (synchronous replication) while Kafka is
# down, the primary is killed with -m immediate, the standby is promoted,
# Kafka comes back, and every committed event arrives once, sent by the
# promoted server.  Duplicates are counted and reported, and must be none.
set -u
. "$(dirname "$0")/clusters.inc"
plan 17

PRI=$EVC_RUN/primary
STB=$EVC_RUN/standby
PP=$(evc_free_port)
CLUSTERS+=("$PRI" "$STB")
primary_new "$PRI" "$PP" fo

as_pg "$BINDIR/pg_basebackup" -h 127.0.0.1 -p "$PP" -U postgres -D "$STB" -R -X stream -c fast >"$STB.basebackup.log" 2>&1
ok $? "pg_basebackup of the primary, on loopback"
SP=$(evc_free_port)
echo "port = $SP" >>"$STB/postgresql.conf"
cluster_start "$STB"
ok $? "the standby starts"
# Synchronous from here on: a commit on the primary waits for the standby.
qp "$PP" "ALTER SYSTEM SET synchronous_standby_names = '*'" && qp "$PP" "SELECT pg_reload_conf()" >/dev/null
wait_for 30 bash -c "[ \"\$(psql -X -A -t -h 127.0.0.1 -p $PP -d evc_test -c \"SELECT sync_state FROM pg_stat_replication\")\" = sync ]"
ok $? "it replicates synchronously"

# The standby: no worker, reading and validating work, sending does not.
sleep 2
is "$(qp "$SP" "SELECT pg_is_in_recovery()")" t "the standby is in recovery"
is "$(qp "$SP" "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'evcollector%'")" 0 \
	"no evcollector worker runs on the standby"
is "$(qp "$SP" "SELECT count(*) FROM evc.workers WHERE pid IS NOT NULL")" 0 "evc.workers reads, and shows none running"
is "$(qp "$SP" "SELECT evc_check_event('fo', 'ev', '{\"i\": 1}')")" 1 "evc_check_event validates on the standby"
out=$(psql -X -A -t -h 127.0.0.1 -p "$SP" -U postgres -d evc_test -v VERBOSITY=verbose \
	-c "SELECT evc_send('fo', 'ev', '{\"i\": 1}')" 2>&1)
echo "$out" | grep -q "25006"
ok $? "evc_send fails on the standby with SQLSTATE 25006"
echo "$out" | head -3 | sed 's/^/#   /'

# Events committed on the primary while Kafka is down, then the crash.
kafka_down
qp "$PP" "CREATE TABLE fo_sent (mid uuid)"
for i in $(seq 1 20); do
	qp "$PP" "INSERT INTO fo_sent SELECT evc_send('fo', 'ev', jsonb_build_object('i', g)) FROM generate_series($((i * 100)), $((i * 100 + 99))) g"
done
is "$(qp "$PP" "SELECT count(*) FROM evc.outbox WHERE topic = 'fo.ev'")" 2000 "2000 events committed on the primary, pending"
qp "$PP" "SELECT mid || '|fo.ev' FROM fo_sent" >"$EVC_RUN/tmp/fo-pending.txt"
topic_messages fo.ev >"$EVC_RUN/tmp/fo-before.tsv"
cluster_stop "$PRI" immediate
ok $? "the primary killed with -m immediate"
as_pg "$BINDIR/pg_ctl" -D "$STB" -w -t 60 promote >/dev/null
ok $? "the standby promoted"
is "$(qp "$SP" "SELECT count(*) FROM fo_sent")" 2000 "every transaction committed on the primary is on the promoted server"
wait_for 60 bash -c "[ -n \"\$(psql -X -A -t -h 127.0.0.1 -p $SP -d evc_test -c \"SELECT pid FROM evc.workers WHERE kind = 'relay' AND pid IS NOT NULL\")\" ]"
ok $? "after promotion the launcher starts the relay"

kafka_up
is "$(qp "$SP" "SELECT evc_flush('120 s')")" 0 "the promoted server delivers its outbox"
topic_messages fo.ev >"$EVC_RUN/tmp/fo-after.tsv"
read -r missing dups < <(delivered_once "$EVC_RUN/tmp/fo-pending.txt" "$EVC_RUN/tmp/fo-before.tsv" "$EVC_RUN/tmp/fo-after.tsv")
diag "failover: $(grep -c . "$EVC_RUN/tmp/fo-pending.txt") committed, $missing missing, $dups duplicates"
is "$missing.$dups" "0.0" "every event committed on the primary arrived exactly once, from the promoted server"
exit $((TAP_FAILED > 0))
