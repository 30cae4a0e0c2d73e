#!/usr/bin/env bash
# The relay killed with SIGKILL in the middle of a batch, then the whole
# server stopped with -m immediate (a crash) while events are pending:
# no committed event is lost, and duplicates, if any, share a message_id.
set -u
. "$(dirname "$0")/tap.inc"
plan 10

N=20000
q "SELECT evc_register_schema('crashtest', 'Ev', '{\"type\": \"object\"}')" >/dev/null
q "SELECT evc_flush('20 s')" >/dev/null
q "CREATE TABLE IF NOT EXISTS crash_sent (mid uuid)" >/dev/null

# Slow the brokers down so the relay is surely mid-batch when killed.
"$EVC_RUN/bin/kafkactl" rtt 1 200 >/dev/null
"$EVC_RUN/bin/kafkactl" rtt 2 200 >/dev/null
"$EVC_RUN/bin/kafkactl" rtt 3 200 >/dev/null
q "INSERT INTO crash_sent SELECT evc_send('crashtest', 'Ev', jsonb_build_object('i', i), key => (i % 13)::text)
   FROM generate_series(1, $N) i" >/dev/null
ok $? "$N events committed"
wait_for 30 bash -c "[ \"\$(psql -X -A -t -d evc_test -c \"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'evcollector relay' AND query = 'evcollector relay: waiting for delivery reports'\")\" = 1 ]"
pid=$(relay_pid)
kill -9 "$pid"
ok $? "relay (pid $pid) killed with SIGKILL mid-batch"
"$EVC_RUN/bin/kafkactl" rtt 1 0 >/dev/null
"$EVC_RUN/bin/kafkactl" rtt 2 0 >/dev/null
"$EVC_RUN/bin/kafkactl" rtt 3 0 >/dev/null

# The postmaster resets all backends after a SIGKILL; wait for a new relay.
sleep 1
wait_for 60 server_up
ok $? "server accepts connections again"
wait_for 60 bash -c "[ -n \"\$(psql -X -A -t -d evc_test -c \"SELECT pid FROM evc.workers WHERE kind = 'relay' AND pid IS NOT NULL AND pid <> $pid\")\" ]"
ok $? "the launcher started a new relay"

# Now a server crash with events still in the outbox.
q "INSERT INTO crash_sent SELECT evc_send('crashtest', 'Ev', jsonb_build_object('i', i), key => (i % 13)::text)
   FROM generate_series($N + 1, $N + 5000) i" >/dev/null
runuser -u postgres -- "$(pg_config --bindir)/pg_ctl" -D "$EVC_PGDATA" -m immediate stop >/dev/null 2>&1
runuser -u postgres -- env ${EVC_SANITIZE_ENV:-} "$(pg_config --bindir)/pg_ctl" -D "$EVC_PGDATA" -l "$EVC_RUN/postgresql.log" -w -t 60 start >/dev/null
ok $? "server crashed (-m immediate) and restarted"
wait_for 60 server_up

pending=$(q "SELECT evc_flush('120 s')")
is "$pending" 0 "the outbox drains after the crashes"

total=$((N + 5000))
topic_ids crashtest.Ev >"$EVC_RUN/tmp/ids.txt"
got=$(sort -u "$EVC_RUN/tmp/ids.txt" | grep -c .)
all=$(grep -c . "$EVC_RUN/tmp/ids.txt")
q "CREATE TEMP TABLE t (mid uuid); COPY t FROM '$EVC_RUN/tmp/ids.txt';
   SELECT count(*) FROM crash_sent s WHERE NOT EXISTS (SELECT FROM t WHERE t.mid = s.mid)" >"$EVC_RUN/tmp/missing.txt"
is "$(cat "$EVC_RUN/tmp/missing.txt")" 0 "no committed event is missing from the topic"
is "$got" "$total" "$total distinct events on the topic"
diag "$((all - got)) duplicate deliveries (same message_id)"
q "DROP TABLE crash_sent" >/dev/null

# A relay that starts while every broker takes 700 ms to answer.  Its
# start's metadata and watermark requests are one librdkafka call each,
# which waits for the answer (a request that timed out would drop the
# connection), and its progress read takes only the tail of
# <prefix>_evc_relay (src/relay/relay_progress.c), so that it ends within
# its 15 s even after the soak made that topic long: the relay must start,
# read its progress back and deliver.
for b in 1 2 3; do "$EVC_RUN/bin/kafkactl" rtt "$b" 700 >/dev/null; done
pid=$(relay_pid)
kill -TERM "$pid"
wait_for 60 bash -c "[ -n \"\$(psql -X -A -t -d evc_test -c \"SELECT pid FROM evc.workers WHERE kind = 'relay' AND pid IS NOT NULL AND pid <> $pid AND mode = 'transactional'\")\" ]"
ok $? "with every broker 700 ms slow, the restarted relay starts its transactional producer"
q "SELECT evc_send('crashtest', 'Ev', '{\"slow\": true}')" >/dev/null
is "$(q "SELECT evc_flush('120 s')")" 0 "and delivers" "$(q "SELECT last_error FROM evc.workers WHERE kind = 'relay'")"
for b in 1 2 3; do "$EVC_RUN/bin/kafkactl" rtt "$b" 0 >/dev/null; done
exit $((TAP_FAILED > 0))
