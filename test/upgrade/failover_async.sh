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
plan 11

PRI=$EVC_RUN/async-primary
STB=$EVC_RUN/async-standby
PP=$(evc_free_port)
CLUSTERS+=("$PRI" "$STB")
primary_new "$PRI" "$PP" fa

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

primary_moves_on "$PP" fa
cluster_stop "$PRI" immediate

kafka_down
as_pg "$BINDIR/pg_ctl" -D "$STB" -w -t 60 promote >/dev/null
ok $? "the standby promoted"
new_history_delivers "$SP" fa "$STB.log"
exit $((TAP_FAILED > 0))
