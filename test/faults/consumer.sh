#!/usr/bin/env bash
# test/faults/consumer.t: consumer workers under faults, as a TAP script.
#
# These need what a pgTAP session cannot do: SIGKILL a worker (the
# postmaster then restarts every backend, the test's session included) and
# stop and restart an S3 server.  Run by test/run with the cluster, the test
# Kafka and the environment of lib.sh; every check reads the landed data
# independently (files on disk, objects through curl SigV4).
#
#   shared group   two consumers in one group share the partitions; when one
#                  stops, the other takes over with no loss and no overlap
#   SIGTERM        during a batch: exits within about a second, and what
#                  landed is consistent with the stored offsets
#   SIGKILL        mid-batch: after the crash restart nothing is lost, no
#                  file overlaps another, objects were overwritten
#   storage outage S3 down until three landings failed: nothing lands or is
#                  committed past what landed; everything lands once it is back
set -u
run_dir=$EVC_RUN
. "$(dirname "$0")/../lib.sh"
EVC_RUN=$run_dir
bin=$EVC_RUN/bin
storage=$EVC_RUN/storage
n=0

q() { psql -X -At -q -d evc_test -c "$1" 2>/dev/null; }
check() {
	n=$((n + 1))
	if [ "$1" = "$2" ]; then
		echo "ok $n - $3"
	else
		echo "not ok $n - $3"
		echo "#   got: '$1'"
		echo "#  want: '$2'"
	fi
}
# wait_true SECONDS SQL: until the query returns t (reconnecting as needed).
wait_true() {
	local deadline=$((SECONDS + $1))
	until [ "$(q "$2")" = t ]; do
		[ $SECONDS -ge $deadline ] && return 1
		sleep 0.2
	done
}
produce() { "$bin/evc-produce" -b "$EVC_KAFKA_BOOTSTRAP" "$@" >/dev/null; }
topic() { "$bin/kafkactl" -c "$EVC_KAFKA_CONTROL" create_topic "$1" "$2" >/dev/null; }
# Offsets of a topic's files: count of gaps and overlaps per partition.
tiling_errors() {
	q "SELECT count(*) FROM (SELECT first_offset, lag(last_offset) OVER w AS prev, row_number() OVER w AS n
		FROM evc.archive_files WHERE topic = '$1' WINDOW w AS (PARTITION BY partition ORDER BY first_offset)) f
		WHERE (n = 1 AND first_offset <> 0) OR (n > 1 AND first_offset <> prev + 1)"
}
consistent() {
	q "SELECT (SELECT coalesce(sum(events), 0) FROM evc.archive_files WHERE topic = '$1') =
		(SELECT coalesce(sum(next_offset), 0) FROM evc.consumer_offsets WHERE topic = '$1')"
}
landed() { q "SELECT coalesce(sum(events), 0) FROM evc.archive_files WHERE topic = '$1'"; }
file_lines() { (cd "$storage" && find "$1" -name '*.jsonl' -exec cat {} + 2>/dev/null | wc -l); }
file_count() { (cd "$storage" && find "$1" -name '*.jsonl' 2>/dev/null | wc -l); }
fast_group='"kafka": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}'

q "CREATE EXTENSION IF NOT EXISTS evcollector" >/dev/null

# --- shared group ----------------------------------------------------------
topic fg_shared 8
produce -t fg_shared -n 10000 -g fg
q "SELECT evc_consumer_create('fg_a', '{fg_shared}', 'archive', '{\"group_id\": \"fg.shared\", \"batch_size\": 300, \"flush_interval\": 200, $fast_group}')" >/dev/null
q "SELECT evc_consumer_create('fg_b', '{fg_shared}', 'archive', '{\"group_id\": \"fg.shared\", \"batch_size\": 300, \"flush_interval\": 200, $fast_group}')" >/dev/null
wait_true 60 "SELECT coalesce(sum(events), 0) = 10000 FROM evc.archive_files WHERE topic = 'fg_shared'"
check "$(q "SELECT count(DISTINCT consumer) FROM evc.archive_files WHERE topic = 'fg_shared'")" 2 \
	"two consumers in one group both landed part of the partitions"
q "SELECT evc_consumer_disable('fg_a')" >/dev/null
produce -t fg_shared -n 10000 -s 10000 -g fg
wait_true 60 "SELECT coalesce(sum(events), 0) >= 20000 FROM evc.archive_files WHERE topic = 'fg_shared'"
sleep 1
check "$(landed fg_shared)" 20000 "after one stopped, the other landed the rest: 20000 events"
check "$(tiling_errors fg_shared)" 0 "no gap and no overlap in any partition across the handover"
check "$(file_lines fg_shared)" 20000 "the files hold exactly 20000 lines"
q "SELECT evc_consumer_drop('fg_a'), evc_consumer_drop('fg_b')" >/dev/null

# --- SIGTERM during a batch -----------------------------------------------
topic ft_term 4
produce -t ft_term -n 60000 -g ft
# The restarted worker gets the partitions once the terminated one's
# session has timed out: 44 s with librdkafka's default (45 s).
q "SELECT evc_consumer_create('ft_term', '{ft_term}', 'archive', '{\"batch_size\": 20000, \"flush_interval\": 200, $fast_group}')" >/dev/null
deadline=$((SECONDS + 30))
pid=""
until [ -n "$pid" ] || [ $SECONDS -ge $deadline ]; do
	pid=$(q "SELECT pid FROM pg_stat_activity WHERE application_name = 'evcollector ft_term' AND query LIKE 'landing%' AND state = 'active'")
done
start=$(date +%s%N)
q "SELECT pg_terminate_backend(${pid:-0})" >/dev/null
while kill -0 "${pid:-0}" 2>/dev/null; do sleep 0.02; done
ms=$((($(date +%s%N) - start) / 1000000))
check "$([ -n "$pid" ] && [ $ms -le 1500 ] && echo yes)" yes "SIGTERM while landing: the worker exited in ${ms} ms"
check "$(consistent ft_term)" t "after SIGTERM the index and the stored offsets agree: nothing half-committed"
wait_true 60 "SELECT coalesce(sum(events), 0) = 60000 FROM evc.archive_files WHERE topic = 'ft_term'"
check "$(landed ft_term)/$(tiling_errors ft_term)/$(file_lines ft_term)" 60000/0/60000 \
	"restarted, it landed all 60000 events once"
q "SELECT evc_consumer_drop('ft_term')" >/dev/null

# --- SIGKILL mid-batch -----------------------------------------------------
topic fk_kill 4
produce -t fk_kill -n 10000 -g fk
# The rest arrives while the worker lands, so that the kill always falls
# mid-stream: a backlog alone lands faster than this script can watch it.
(for i in $(seq 0 59); do
	produce -t fk_kill -n 500 -s $((10000 + i * 500)) -g fk
	sleep 0.1
done) &
feeder=$!
# A dead member holds its partitions until its session times out.
q "SELECT evc_consumer_create('fk_kill', '{fk_kill}', 'archive', '{\"batch_size\": 2000, \"flush_interval\": 200, $fast_group}')" >/dev/null
wait_true 30 "SELECT coalesce(sum(events), 0) > 0 FROM evc.archive_files WHERE topic = 'fk_kill'"
pid=$(q "SELECT pid FROM evc.consumers WHERE name = 'fk_kill'")
before=$(landed fk_kill)
kill -9 "$pid"
wait "$feeder"
wait_true 90 "SELECT coalesce(sum(events), 0) = 40000 FROM evc.archive_files WHERE topic = 'fk_kill'"
check "$([ "$before" -lt 40000 ] && echo mid)" mid "the worker was killed with SIGKILL mid-stream ($before of 40000 landed)"
check "$(landed fk_kill)/$(tiling_errors fk_kill)" 40000/0 "after the crash restart all 40000 landed, no file overlapping another"
check "$(file_count fk_kill)/$(file_lines fk_kill)" "$(q "SELECT count(*) FROM evc.archive_files WHERE topic = 'fk_kill'")/40000" \
	"one object per index row: a half-landed batch was overwritten, not duplicated"
q "SELECT evc_consumer_drop('fk_kill')" >/dev/null

# --- storage outage ----------------------------------------------------------
port=$(evc_free_port)
mkdir -p "$EVC_RUN/s3out"
start_s3() {
	"$EVC_ROOT/node_modules/.bin/s3rver" -d "$EVC_RUN/s3out" -a 127.0.0.1 -p "$port" -s \
		--configure-bucket evc-out >>"$EVC_RUN/s3out.log" 2>&1 &
	s3pid=$!
	evc_wait_for 20 curl -sf -o /dev/null "http://127.0.0.1:$port/"
}
start_s3
q "ALTER SYSTEM SET evcollector.storage_url = 's3://evc-out/outage'" >/dev/null
q "ALTER SYSTEM SET evcollector.s3_endpoint = 'http://127.0.0.1:$port'" >/dev/null
q "ALTER SYSTEM SET evcollector.s3_access_key = 'S3RVER'" >/dev/null
q "ALTER SYSTEM SET evcollector.s3_secret_key = 'S3RVER'" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
topic fo_out 4
produce -t fo_out -n 2000 -g fo
q "SELECT evc_consumer_create('fo_out', '{fo_out}', 'archive', '{\"batch_size\": 500, \"flush_interval\": 200}')" >/dev/null
wait_true 30 "SELECT coalesce(sum(events), 0) = 2000 FROM evc.archive_files WHERE topic = 'fo_out'"
# The outage lasts until three landings in a row have failed (the worker
# backs off 1 s, then 2 s): each failure is a WARNING in the server log.
failures() { echo $(($(grep -c 'consumer "fo_out" could not land' "$EVC_RUN/postgresql.log") - failed0)); }
failed0=$(grep -c 'consumer "fo_out" could not land' "$EVC_RUN/postgresql.log")
kill "$s3pid"
wait "$s3pid" 2>/dev/null
down=$SECONDS
produce -t fo_out -n 3000 -s 2000 -g fo
deadline=$((SECONDS + 60))
until [ "$(failures)" -ge 3 ] || [ $SECONDS -ge $deadline ]; do sleep 0.2; done
check "$(landed fo_out)/$(q "SELECT sum(next_offset) FROM evc.consumer_offsets WHERE topic = 'fo_out'")/$([ "$(failures)" -ge 3 ] && echo failed)" 2000/2000/failed \
	"storage down $((SECONDS - down)) s, $(failures) landings failed: nothing landed and no offset moved past the landed 2000"
check "$(q "SELECT last_error LIKE 'could not store object%' FROM evc.consumers WHERE name = 'fo_out'")" t \
	"the outage shows in evc.consumers"
start_s3
wait_true 60 "SELECT coalesce(sum(events), 0) = 5000 FROM evc.archive_files WHERE topic = 'fo_out'"
check "$(landed fo_out)/$(tiling_errors fo_out)" 5000/0 "storage back: all 5000 landed, once"
keys=$("$bin/s3cli" "http://127.0.0.1:$port" evc-out list outage/fo_out/)
lines=0
for k in $keys; do
	"$bin/s3cli" "http://127.0.0.1:$port" evc-out get "$k" "$EVC_RUN/tmp/fo.jsonl"
	lines=$((lines + $(wc -l <"$EVC_RUN/tmp/fo.jsonl")))
done
check "$(echo "$keys" | grep -c .)/$lines" "$(q "SELECT count(*) FROM evc.archive_files WHERE topic = 'fo_out'")/5000" \
	"S3 holds one object per index row and 5000 lines (read with curl SigV4)"
q "SELECT evc_consumer_drop('fo_out')" >/dev/null
for s in storage_url s3_endpoint s3_access_key s3_secret_key; do q "ALTER SYSTEM RESET evcollector.$s" >/dev/null; done
q "SELECT pg_reload_conf()" >/dev/null
kill "$s3pid" 2>/dev/null
wait "$s3pid" 2>/dev/null

echo "1..$n"
