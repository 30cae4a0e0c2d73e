# test/kafka/eos.sh: exactly once into Kafka, against the real Apache Kafka
# (librdkafka's mock cluster accepts transactions but ignores isolation.level,
# so only a real broker can show that an aborted batch is invisible).
# Sourced by test/run's kafka layer after test/lib.sh, like flows.sh; prints
# TAP.  One node, PLAINTEXT (Debian's librdkafka 2.0.2 speaks Kafka 4.x's
# transaction protocol: test/kafka/eos_txn.c proves it first).
#
#  - the relay runs the transactional producer, shown in evc.workers, and its
#    progress topic <prefix>_evc_relay is compacted and holds its last tick;
#  - the relay SIGKILLed (evcollector.relay_fault_point, a superuser-only
#    test hook) right after Kafka's commit and before PostgreSQL's, many
#    times, then right before Kafka's commit, and the server crashed with
#    pg_ctl -m immediate while batches are in flight, all while senders
#    commit: kcat reading read_committed finds every committed event exactly
#    once by message_id, and the archive sink's files hold each exactly once;
#  - a second producer with the relay's transactional.id fences it: a clear
#    error in evc.workers, and the relay takes its identity back;
#  - evcollector.relay_exactly_once = off: the idempotent producer, shown in
#    evc.workers, delivers;
#  - a small event in the same record batch as a too-large one is delivered,
#    in both modes; only the too-large one is a dead letter.

set -u
SECONDS=0
T=$EVC_RUN/tmp/keos
PREFIX=eos-
mkdir -p "$T"
chmod 777 "$T"

. "$EVC_ROOT/test/tap.sh"
is() { [ "$1" = "$2" ]; tap $? "$3" "got '$1', want '$2'${4:+
$4}"; }
# psql that waits out a crash restart of the server.
qr() {
	local i
	for i in $(seq 1 60); do
		q "$1" 2>/dev/null && return 0
		sleep 0.5
	done
	return 1
}
reload() { qr "ALTER SYSTEM $1" >/dev/null && qr "SELECT pg_reload_conf()" >/dev/null; }
log_count() { grep -c "$1" "$EVC_RUN/postgresql.log"; }
relay_up() { wait_sql "$1" "SELECT mode = '$2' FROM evc.workers WHERE kind = 'relay'"; }
pg_bin=$(pg_config --bindir)
crash() {
	runuser -u postgres -- "$pg_bin/pg_ctl" -D "$EVC_PGDATA" -m immediate stop >/dev/null 2>&1
	runuser -u postgres -- "$pg_bin/pg_ctl" -D "$EVC_PGDATA" -l "$EVC_RUN/postgresql.log" -w -t 60 start >/dev/null
}
cleanup() {
	[ -n "${sender:-}" ] && kill "$sender" 2>/dev/null
	q "SELECT evc_consumer_drop(name) FROM evc.consumer_defs WHERE name LIKE 'eos_%'" >/dev/null 2>&1
	for s in brokers topic_prefix relay_exactly_once relay_fault_point; do
		q "ALTER SYSTEM RESET evcollector.$s" >/dev/null 2>&1
	done
	q "SELECT pg_reload_conf()" >/dev/null 2>&1
	evc_kafka_real_stop
}
trap cleanup EXIT

echo "1..18"

if ! evc_kafka_real_start 1 "$EVC_RUN/kafka-real" >"$T/start.log" 2>&1; then
	tap 1 "Apache Kafka (1 node) started" "$(tail -20 "$T/start.log")"
	exit 1
fi

# librdkafka 2.0.2's transactions against Kafka 4.x, with nothing of ours.
cc -Wall -Wextra -Werror -o "$T/eos_txn" "$EVC_ROOT/test/kafka/eos_txn.c" -lrdkafka 2>"$T/cc.log"
out=$("$T/eos_txn" "$EVC_KAFKA_REAL_BOOTSTRAP" eos-probe eos-probe 3 commit 2>&1 &&
	"$T/eos_txn" "$EVC_KAFKA_REAL_BOOTSTRAP" eos-probe eos-probe 2 abort 2>&1)
got=$(timeout 30 kcat -b "$EVC_KAFKA_REAL_BOOTSTRAP" -X isolation.level=read_committed -C -t eos-probe -o beginning -e -q 2>/dev/null | sort | tr '\n' ' ')
is "$got" "commit-0 commit-1 commit-2 " "librdkafka $(echo "$out" | sed -n 's/^librdkafka //p' | head -1) commits and aborts transactions on Kafka $(evc_kafka_real_version); read_committed sees only the committed" "$out"

q "ALTER SYSTEM SET evcollector.topic_prefix = '$PREFIX'" && q "ALTER SYSTEM SET evcollector.brokers = '$EVC_KAFKA_REAL_BOOTSTRAP'" &&
	q "SELECT pg_reload_conf()" >/dev/null
q "SELECT evc_register_schema('eos', 'Ev', '{\"type\": \"object\"}')" >/dev/null
relay_up 60 transactional
tap $? "the relay runs the transactional producer (evc.workers.mode)" "$(q "SELECT mode, last_error FROM evc.workers WHERE kind = 'relay'")"
ident=$(q "SELECT 'evc-' || system_identifier || '-' || (SELECT oid FROM pg_database WHERE datname = current_database()) FROM pg_control_system()")

# A consumer with the archive sink lands the topic into files.
q "SELECT evc_create_topic('${PREFIX}eos.Ev', 3, 1)" >/dev/null
q "SELECT evc_consumer_create('eos_archive', ARRAY['${PREFIX}eos.Ev'], 'archive', '{\"batch_size\": 500, \"flush_interval\": 300}')" >/dev/null
q "CREATE TABLE IF NOT EXISTS eos_sent (mid uuid)" >/dev/null
q "INSERT INTO eos_sent SELECT evc_send('eos', 'Ev', jsonb_build_object('n', g), key => 'k' || (g % 11)) FROM generate_series(1, 2000) g"
is "$(q "SELECT evc_flush('60 s')")" 0 "2,000 events are flushed through transactions"
progress=$(timeout 30 kcat -b "$EVC_KAFKA_REAL_BOOTSTRAP" -X isolation.level=read_committed -C -t "${PREFIX}_evc_relay" -o beginning -e -q -f '%k %s\n' 2>/dev/null | tail -1)
# Empty ticks (recorded for a waiting evc_flush) write no progress.
tick=$(q "SELECT max(id) FROM evc.outbox_ticks WHERE events > 0")
echo "$progress" | grep -q "^$ident {\"tick\": $tick, "
tap $? "${PREFIX}_evc_relay holds the relay's last tick ($tick), keyed by its identity" "progress: $progress"
is "$(evc_kafka_real_configs --describe --entity-type topics --entity-name "${PREFIX}_evc_relay" 2>&1 | sed -n 's/^  \(cleanup.policy=[^ ]*\) .*/\1/p')" \
	"cleanup.policy=compact" "${PREFIX}_evc_relay is created compacted"

# Senders commit all along: 40 events a transaction, what each committed in eos_sent.
(
	while [ ! -f "$T/stop" ]; do
		q "INSERT INTO eos_sent SELECT evc_send('eos', 'Ev', jsonb_build_object('s', g), key => 'k' || (g % 11)) FROM generate_series(1, 40) g" \
			>/dev/null 2>&1 || sleep 0.3
		sleep 0.05
	done
) &
sender=$!

# The relay killed right after Kafka's commit, before PostgreSQL's, again and again.
kills0=$(log_count "relay_fault_point = after_kafka_commit: killing")
rec0=$(log_count "was committed to Kafka but not recorded here")
reload "SET evcollector.relay_fault_point = 'after_kafka_commit'"
deadline=$((SECONDS + 150))
until [ $(($(log_count "relay_fault_point = after_kafka_commit: killing") - kills0)) -ge 10 ] || [ $SECONDS -ge $deadline ]; do
	sleep 1
done
reload "RESET evcollector.relay_fault_point"
kills=$(($(log_count "relay_fault_point = after_kafka_commit: killing") - kills0))
# The last kill's restart may not have read its progress back yet: give it
# a deadline to find that tick and say so.
deadline=$((SECONDS + 30))
until [ $(($(log_count "was committed to Kafka but not recorded here") - rec0)) -ge "$kills" ] || [ $SECONDS -ge $deadline ]; do
	sleep 0.5
done
recs=$(($(log_count "was committed to Kafka but not recorded here") - rec0))
# Each kill leaves a committed tick that PostgreSQL did not record (the
# record of one found in Kafka can itself be lost in the next kill).
[ "$kills" -ge 10 ] && [ "$recs" -ge "$kills" ]
tap $? "the relay was SIGKILLed $kills times between Kafka's commit and PostgreSQL's; each time it found the tick in Kafka ($recs)" \
	"$(grep -E 'relay_fault_point|was committed to Kafka|evcollector relay' "$EVC_RUN/postgresql.log" | tail -8)"

# Killed before Kafka's commit: the open transaction is fenced and aborted at the restart.
kills0=$(log_count "relay_fault_point = before_kafka_commit: killing")
reload "SET evcollector.relay_fault_point = 'before_kafka_commit'"
deadline=$((SECONDS + 60))
until [ $(($(log_count "relay_fault_point = before_kafka_commit: killing") - kills0)) -ge 3 ] || [ $SECONDS -ge $deadline ]; do
	sleep 1
done
reload "RESET evcollector.relay_fault_point"
kills=$(($(log_count "relay_fault_point = before_kafka_commit: killing") - kills0))
[ "$kills" -ge 3 ]
tap $? "the relay was SIGKILLed $kills times with its transaction open, before Kafka's commit"

# The server crashed while batches are in flight.
for i in 1 2 3; do
	qr "INSERT INTO eos_sent SELECT evc_send('eos', 'Ev', jsonb_build_object('c', g), key => 'k' || (g % 11)) FROM generate_series(1, 20000) g" >/dev/null
	wait_sql 10 "SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'evcollector relay' AND query ~ 'delivery reports|committing'"
	crash
done
tap 0 "the server was crashed 3 times (pg_ctl -m immediate) with batches in flight"
touch "$T/stop"
wait "$sender"
sender=
relay_up 60 transactional
is "$(qr "SELECT evc_flush('120 s')")" 0 "the outbox drains after the kills and crashes"
qr "COPY eos_sent TO '$T/sent.ids'" >/dev/null
evc_kafka_real_ids "${PREFIX}eos.Ev" "$T/sent.ids" >"$T/read.ids"
is "$(evc_compare_ids "$T/sent.ids" "$T/read.ids")" "missing 0 duplicated 0 extra 0" \
	"read_committed, the topic holds every one of the $(wc -l <"$T/sent.ids") committed events exactly once (by message_id)"
total=$(wc -l <"$T/sent.ids")
wait_sql 120 "SELECT coalesce(sum(events), 0) >= $total FROM evc.archive_files WHERE topic = '${PREFIX}eos.Ev'"
# The files evc.archive_files names (a batch landed again after a crash
# replaces its row, and its object key is deterministic).
q "SELECT object_key FROM evc.archive_files WHERE topic = '${PREFIX}eos.Ev'" |
	while read -r key; do zcat -f "$EVC_RUN/storage/$key"; done |
	grep -o '"message_id": *"[0-9a-f-]\{36\}"' | grep -o '[0-9a-f-]\{36\}' >"$T/archived.ids"
is "$(evc_compare_ids "$T/sent.ids" "$T/archived.ids")" "missing 0 duplicated 0 extra 0" \
	"the archive sink's files hold each of them exactly once" \
	"$(q "SELECT count(*), sum(events) FROM evc.archive_files WHERE topic = '${PREFIX}eos.Ev'"); $(wc -l <"$T/archived.ids") lines"

# Each partition ends with the relay's commit marker, an offset no consumer
# lands: a drained consumer's lag counts from its position, past it.
wait_sql 30 "SELECT count(*) > 0 AND max(lag) = 0 FROM evc.consumer_lag WHERE topic = '${PREFIX}eos.Ev'"
tap $? "evc.consumer_lag is 0 on every partition once the archive sink has landed everything (past the commit markers)" \
	"$(q "SELECT partition, next_offset, high_watermark, lag FROM evc.consumer_lag WHERE topic = '${PREFIX}eos.Ev'")"

# fence_as ID LOG TAG: another producer takes transactional.id ID, then
# four ticks follow, each flushed: while the relay's two producers take
# turns (after a slow transaction), one of them goes to the fenced one.
fence_as() {
	"$T/eos_txn" "$EVC_KAFKA_REAL_BOOTSTRAP" "$1" "${PREFIX}fencer" 1 commit >"$2" 2>&1
	for i in 1 2 3 4; do
		q "INSERT INTO eos_sent SELECT evc_send('eos', 'Ev', jsonb_build_object('$3$i', g)) FROM generate_series(1, 50) g" >/dev/null
		q "SELECT evc_flush('10 s')" >/dev/null
	done
}
# delivered_once N WHAT: the relay delivers, and the topic holds every event
# sent so far exactly once.
delivered_once() {
	is "$(q "SELECT evc_flush('90 s')")" 0 "the relay takes $2 back and delivers"
	q "COPY eos_sent TO '$T/sent$1.ids'" >/dev/null
	evc_kafka_real_ids "${PREFIX}eos.Ev" "$T/sent$1.ids" >"$T/read$1.ids"
	is "$(evc_compare_ids "$T/sent$1.ids" "$T/read$1.ids")" "missing 0 duplicated 0 extra 0" "after fencing $1, still every event exactly once"
}

# Fencing: another producer takes the relay's transactional.id.
q "INSERT INTO eos_sent SELECT evc_send('eos', 'Ev', jsonb_build_object('f', g)) FROM generate_series(1, 200) g" >/dev/null
fence_as "$ident" "$T/fence.log" f2
wait_sql 60 "SELECT last_error ~ 'fenced' FROM evc.workers WHERE kind = 'relay'"
tap $? "a second producer with the relay's transactional.id fences it: evc.workers says so" \
	"$(cat "$T/fence.log"; q "SELECT last_error FROM evc.workers WHERE kind = 'relay'")"
delivered_once 2 "its identity"

# The relay's second producer has the identity with "-2": taking that one
# fences the relay too, and the error names it.  The producers take turns
# after a transaction of 20 ms or more; one tick of 20,000 events takes
# longer than that.
q "INSERT INTO eos_sent SELECT evc_send('eos', 'Ev', jsonb_build_object('g', g)) FROM generate_series(1, 20000) g" >/dev/null
q "SELECT evc_flush('60 s')" >/dev/null
fence_as "${ident}-2" "$T/fence2.log" g
# evc.workers still shows the first fencing's error: the server log tells.
fenced2=1
for _ in $(seq 60); do
	[ "$(log_count "fenced: another producer took transactional.id \"${ident}-2\"")" -ge 1 ] && { fenced2=0; break; }
	sleep 1
done
tap $fenced2 "a producer taking the second transactional.id (${ident}-2) fences the relay, and its error names that id" \
	"$(cat "$T/fence2.log"; grep -iE "fenced|fatal|recreating|batch failed" "$EVC_RUN/postgresql.log" | tail -8)"
delivered_once 3 "both identities"

# Too large beside small, one partition: only the large one is a dead letter.
q "SELECT evc_register_schema('eos', 'Big', '{\"type\": \"object\"}')" >/dev/null
q "SELECT evc_create_topic('${PREFIX}eos.Big', 1, 1, '{\"max.message.bytes\": \"100000\"}')" >/dev/null
big_pair() {
	q "SELECT evc_send('eos', 'Big', jsonb_build_object('blob', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 20000) g))); SELECT evc_send('eos', 'Big', '{\"small\": true}')"
}
big_pair >"$T/big1.ids"
q "SELECT evc_flush('60 s')" >/dev/null
b=$(head -1 "$T/big1.ids") s=$(tail -1 "$T/big1.ids")
tail -1 "$T/big1.ids" >"$T/small1.id"
is "$(q "SELECT count(*) FILTER (WHERE message_id = '$b'), count(*) FILTER (WHERE message_id = '$s') FROM evc.dead_letters")|$(evc_kafka_real_ids "${PREFIX}eos.Big" "$T/small1.id" | grep -c "$s")" \
	"1|0|1" "transactional: a small event beside a too-large one is delivered once; only the large one is dead-lettered"

# The fallback: the idempotent producer.
reload "SET evcollector.relay_exactly_once = off"
relay_up 30 idempotent
tap $? "evcollector.relay_exactly_once = off: the relay runs the idempotent producer (evc.workers.mode)" \
	"$(q "SELECT mode, last_error FROM evc.workers WHERE kind = 'relay'")"
big_pair >"$T/big2.ids"
q "SELECT evc_flush('60 s')" >/dev/null
b=$(head -1 "$T/big2.ids") s=$(tail -1 "$T/big2.ids")
tail -1 "$T/big2.ids" >"$T/small2.id"
is "$(q "SELECT count(*) FILTER (WHERE message_id = '$b'), count(*) FILTER (WHERE message_id = '$s') FROM evc.dead_letters")|$(evc_kafka_real_ids "${PREFIX}eos.Big" "$T/small2.id" | grep -c "$s")" \
	"1|0|1" "idempotent: a small event beside a too-large one is delivered (sent again alone); only the large one is dead-lettered"
reload "RESET evcollector.relay_exactly_once"
relay_up 30 transactional
tap $? "back to the transactional producer"

echo "# ${SECONDS}s"
[ $fails -eq 0 ]
