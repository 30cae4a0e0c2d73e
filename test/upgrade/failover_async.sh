#!/usr/bin/env bash
# Failover to an asynchronous standby that was behind.  The standby stops
# receiving WAL; the primary then uses 300 transaction ids and delivers 20
# events (its progress record in <prefix>_evc_relay now holds a snapshot
# beyond anything the standby saw) and is killed.  The standby is promoted
# and takes new events while Kafka is down: their transaction ids are ones
# the primary had used.  The promoted server has the primary's identity, so
# its relay reads that record as its own; applied, the record would take
# the new events as sent.  Every one must arrive.
set -u
. "$(dirname "$0")/clusters.inc"
plan 10

PRI=$EVC_RUN/async-primary
STB=$EVC_RUN/async-standby
PP=$(evc_free_port)
CLUSTERS+=("$PRI" "$STB")
cluster_new "$PRI" "$PP" "wal_level = replica" "max_wal_senders = 4" "wal_keep_size = '256MB'"
ok $? "a primary"
qp "$PP" "SET client_min_messages = warning; CREATE EXTENSION evcollector" &&
	qp "$PP" "SELECT evc_register_schema('fa', 'ev', '{\"type\": \"object\", \"required\": [\"i\"]}')" >/dev/null &&
	qp "$PP" "SELECT evc_send('fa', 'ev', '{\"i\": 0}')" >/dev/null
is "$(qp "$PP" "SELECT evc_flush('30 s')")" 0 "the primary delivers"

as_pg "$BINDIR/pg_basebackup" -h 127.0.0.1 -p "$PP" -U postgres -D "$STB" -R -X stream -c fast >"$STB.basebackup.log" 2>&1
ok $? "pg_basebackup of the primary, on loopback"
SP=$(evc_free_port)
echo "port = $SP" >>"$STB/postgresql.conf"
cluster_start "$STB"
wait_for 30 bash -c "[ \"\$(psql -X -A -t -h 127.0.0.1 -p $PP -d evc_test -c \"SELECT state FROM pg_stat_replication\")\" = streaming ]"
ok $? "the standby streams, asynchronously"

# The standby stops receiving: it falls behind from here.
qp "$SP" "ALTER SYSTEM SET primary_conninfo = ''" && qp "$SP" "SELECT pg_reload_conf()" >/dev/null
wait_for 30 bash -c "[ \"\$(psql -X -A -t -h 127.0.0.1 -p $PP -d evc_test -c \"SELECT count(*) FROM pg_stat_replication\")\" = 0 ]"
ok $? "the standby stopped receiving WAL"

for i in $(seq 300); do echo "SELECT pg_current_xact_id();"; done |
	psql -X -q -A -t -h 127.0.0.1 -p "$PP" -U postgres -d evc_test >/dev/null
for i in $(seq 20); do echo "SELECT evc_send('fa', 'ev', '{\"i\": $i}');"; done |
	psql -X -q -A -t -h 127.0.0.1 -p "$PP" -U postgres -d evc_test >/dev/null
is "$(qp "$PP" "SELECT evc_flush('30 s')")" 0 "the primary delivers what the standby never received"
cluster_stop "$PRI" immediate

kafka_down
as_pg "$BINDIR/pg_ctl" -D "$STB" -w -t 60 promote >/dev/null
ok $? "the standby promoted"
qp "$SP" "CREATE TABLE fa_sent (mid uuid)"
for i in $(seq 100); do echo "INSERT INTO fa_sent SELECT evc_send('fa', 'ev', '{\"i\": $((1000 + i))}');"; done |
	psql -X -q -A -t -h 127.0.0.1 -p "$SP" -U postgres -d evc_test >/dev/null
qp "$SP" "SELECT mid || '|fa.ev' FROM fa_sent" >"$EVC_RUN/tmp/fa-pending.txt"
is "$(grep -c . "$EVC_RUN/tmp/fa-pending.txt")" 100 "100 events committed on the promoted server while Kafka is down"
kafka_up
: >"$EVC_RUN/tmp/fa-before.tsv"
is "$(qp "$SP" "SELECT evc_flush('60 s')" 2>&1)" 0 "the promoted server delivers them"
topic_messages fa.ev >"$EVC_RUN/tmp/fa-after.tsv"
read -r missing dups < <(delivered_once "$EVC_RUN/tmp/fa-pending.txt" "$EVC_RUN/tmp/fa-before.tsv" "$EVC_RUN/tmp/fa-after.tsv")
diag "async failover: 100 new events, $missing missing, $dups duplicates"
is "$missing.$dups" "0.0" "each of the 100 events sent after the promotion arrived once"
grep -q "was written after this server's history left the writer's; it is not applied" "$STB.log"
ok $? "the relay logged that it did not apply the old primary's later progress record"
[ "$TAP_FAILED" -gt 0 ] && grep -E "evcollector|ERROR|FATAL|WARNING|promot|timeline|tick" "$STB.log" | tail -25 | cut -c1-300 | sed 's/^/#   /'
exit $((TAP_FAILED > 0))
