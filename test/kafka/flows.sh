#!/usr/bin/env bash
# test/kafka/flows.sh: evcollector against real Apache Kafka, the checks that
# the librdkafka mock cluster cannot make.  Sourced by test/run's kafka layer
# in a subshell, after the harness started PostgreSQL (server 1, with
# Debian's librdkafka) and the test Kafka, so test/lib.sh's and
# test/kafka/kafka.sh's functions and the EVC_* variables are here.  It
# starts and stops the real Kafka itself, one cluster at a time, and a second
# PostgreSQL server (server 2) whose librdkafka can log in with SCRAM
# (EVC_KAFKA_REAL_LD_PATH; see test/kafka/README.md).  Prints TAP.
#
# One node:
#  - evc_create_topic: partitions, replication and config read back with
#    Kafka's own tools; its errors (exists, invalid config, not authorized);
#  - <prefix>_evc_schemas and <prefix>_evc_relay are created compacted with
#    hourly segments, and compaction keeps the latest registration per key;
#  - 10,000 events sent and flushed arrive, each once, read back with kcat;
#  - acks=1 in evcollector.kafka_properties does not stop the relay;
#  - an event over the topic's max.message.bytes is a dead letter (and a
#    small one beside it is delivered);
#  - SASL_SSL with SCRAM-SHA-512 (server 2): the right password delivers,
#    a wrong one shows in evc.workers, and no password appears in any view,
#    error or log line of ours;
#  - a topic the relay may not write (an ACL) gives dead letters.
# Three nodes:
#  - evc_create_topic with replication factor 3;
#  - the leader of a partition SIGKILLed and restarted while events flow
#    (the idempotent producer, acks=all): no event lost, none twice;
#  - one consumer group across the two servers rebalances with the real
#    group coordinator: every event lands once.

set -u
SECONDS=0
T=$EVC_RUN/tmp/kflows
PREFIX=kf-
BADPW=not-the-password-7f3a9c
PG2=$EVC_RUN/pg2
PG2_PORT=
mkdir -p "$T"
chmod 777 "$T"

. "$EVC_ROOT/test/tap.sh"
# is GOT WANT DESCRIPTION [DIAG]
is() { [ "$1" = "$2" ]; tap $? "$3" "got '$1', want '$2'${4:+
$4}"; }
q2() { PGPORT=$PG2_PORT psql -X -q -At -v ON_ERROR_STOP=1 -d evc_test -c "$1"; }
# qerr PORT SQL: the error of a statement that must fail, with its SQLSTATE.
qerr() { PGPORT=$1 psql -X -q -At -v VERBOSITY=verbose -d evc_test -c "$2" 2>&1 >/dev/null; }
point() {
	# point q|q2 BROKERS: evcollector.brokers, then reload
	$1 "ALTER SYSTEM SET evcollector.brokers = '$2'" && $1 "SELECT pg_reload_conf()" >/dev/null
}
sasl_props() {
	echo "security.protocol=SASL_SSL;sasl.mechanisms=SCRAM-SHA-512;sasl.username=$EVC_KAFKA_REAL_USER;sasl.password=$1;ssl.ca.location=$EVC_KAFKA_REAL_CA"
}
set_password() {
	q2 "ALTER SYSTEM SET evcollector.kafka_properties = '$(sasl_props "$1")'" && q2 "SELECT pg_reload_conf()" >/dev/null
}
# Kafka's view of a topic: "PartitionCount: N ReplicationFactor: R" and the
# topic's own (dynamic) configs, one key=value a line.
topic_shape() { evc_kafka_real_topics --describe --topic "$1" 2>&1 | sed -n 's/.*\(PartitionCount: [0-9]*\).*\(ReplicationFactor: [0-9]*\).*/\1 \2/p' | head -1; }
topic_configs() { evc_kafka_real_configs --describe --entity-type topics --entity-name "$1" 2>&1 | sed -n 's/^  \([^ ]*=[^ ]*\) .*/\1/p'; }

pg2_start() {
	mkdir -p "$PG2/storage" "$PG2/tmp"
	chown -R postgres:postgres "$PG2"
	# evc_cluster_start in a subshell of its own: it sets EVC_PGDATA and PGPORT.
	(
		EVC_RUN=$PG2
		EVC_KAFKA_BOOTSTRAP=""
		EVC_S3_ENDPOINT=""
		[ -n "$EVC_KAFKA_REAL_LD_PATH" ] && export LD_LIBRARY_PATH=$EVC_KAFKA_REAL_LD_PATH
		evc_cluster_start "evcollector.brokers = '$EVC_KAFKA_REAL_SASL_BOOTSTRAP'" \
			"evcollector.kafka_properties = '$(sasl_props "$EVC_KAFKA_REAL_PASSWORD")'" \
			"evcollector.topic_prefix = '$PREFIX'"
	) >"$PG2/start.log" 2>&1 || return 1
	PG2_PORT=$(sed -n "s/^port = //p" "$PG2/pgdata/postgresql.conf")
	q2 "CREATE EXTENSION evcollector" >/dev/null 2>&1
}
pg2_stop() {
	[ -f "$PG2/pgdata/postmaster.pid" ] || return 0
	runuser -u postgres -- "$(pg_config --bindir)/pg_ctl" -D "$PG2/pgdata" -m fast -w -t 30 stop >/dev/null 2>&1 ||
		runuser -u postgres -- "$(pg_config --bindir)/pg_ctl" -D "$PG2/pgdata" -m immediate stop >/dev/null 2>&1
}
cleanup() {
	q "SELECT evc_consumer_drop(name) FROM evc.consumer_defs WHERE name LIKE 'kf_%'" >/dev/null 2>&1
	for s in brokers topic_prefix kafka_properties; do
		q "ALTER SYSTEM RESET evcollector.$s" >/dev/null 2>&1
	done
	q "SELECT pg_reload_conf()" >/dev/null 2>&1
	pg2_stop
	evc_kafka_real_stop
}
# Set before evc_kafka_real_start, which puts its stop in front of it.
trap cleanup EXIT

echo "1..43"

# ---------------------------------------------------------------------
# One node
# ---------------------------------------------------------------------
if ! evc_kafka_real_start 1 "$EVC_RUN/kafka-real" >"$T/start1.log" 2>&1; then
	tap 1 "Apache Kafka (1 node) started" "$(tail -20 "$T/start1.log")"
	exit 1
fi
q "ALTER SYSTEM SET evcollector.topic_prefix = '$PREFIX'"
point q "$EVC_KAFKA_REAL_BOOTSTRAP"

# evc_create_topic: what it makes, read back with Kafka's own tools.
out=$(q "SELECT evc_create_topic('kf-created', 4, 1, '{\"cleanup.policy\": \"compact\", \"retention.ms\": 3600000, \"segment.bytes\": \"1048576\"}')" 2>&1)
tap $? "evc_create_topic creates a topic on the real broker" "$out"
is "$(topic_shape kf-created)" "PartitionCount: 4 ReplicationFactor: 1" "the topic has the partitions and replication factor asked for"
is "$(topic_configs kf-created | sort | tr '\n' ' ')" "cleanup.policy=compact retention.ms=3600000 segment.bytes=1048576 " \
	"the topic has the config asked for (kafka-configs --describe)"

# Its errors: SQLSTATE, message, and the broker's reason.
out=$(qerr "$PGPORT" "SELECT evc_create_topic('kf-created', 4, 1)")
echo "$out" | grep -q '^ERROR:  42710: could not create topic "kf-created"' &&
	echo "$out" | grep -q '^DETAIL:  TOPIC_ALREADY_EXISTS: .*kf-created.* already exists'
tap $? "a topic that exists: 42710, with the broker's reason" "$out"
out=$(qerr "$PGPORT" "SELECT evc_create_topic('kf-badconf', 1, 1, '{\"cleanup.policy\": \"bogus\"}')")
echo "$out" | grep -q '^ERROR:  22023: could not create topic "kf-badconf"' &&
	echo "$out" | grep -q '^DETAIL:  INVALID_CONFIG: .*bogus.*cleanup.policy'
tap $? "an invalid topic config: 22023, naming the value and the setting" "$out"
out=$(qerr "$PGPORT" "SELECT evc_create_topic('kf-badrf', 1, 3)")
echo "$out" | grep -q '^ERROR:  22023: could not create topic "kf-badrf"' &&
	echo "$out" | grep -q '^DETAIL:  INVALID_REPLICATION_FACTOR: '
tap $? "a replication factor above the brokers' count: 22023, with the broker's reason" "$out"

# The registry's topic <prefix>_evc_schemas is compacted.
q "SELECT evc_register_schema('acme', 'Order', '{\"type\": \"object\"}')" >/dev/null
q "SELECT evc_register_schema('acme', 'Big', '{\"type\": \"object\"}')" >/dev/null
is "$(q "SELECT evc_flush('30 s')")" 0 "the schema registrations are flushed to Kafka"
is "$(topic_configs "${PREFIX}_evc_schemas" | grep -E '^(cleanup.policy|segment.ms)=' | sort | tr '\n' ' ')" "cleanup.policy=compact segment.ms=3600000 " \
	"${PREFIX}_evc_schemas is created compacted, its segments rolled every hour" "$(evc_kafka_real_topics --describe --topic "${PREFIX}_evc_schemas" 2>&1 | head -3)"
# So is the relay's progress topic: the cleaner never compacts the active
# segment, and the relay's start reads the topic's tail back.
is "$(topic_configs "${PREFIX}_evc_relay" | grep -E '^(cleanup.policy|segment.ms)=' | sort | tr '\n' ' ')" "cleanup.policy=compact segment.ms=3600000 " \
	"${PREFIX}_evc_relay is created compacted, its segments rolled every hour" "$(evc_kafka_real_topics --describe --topic "${PREFIX}_evc_relay" 2>&1 | head -3)"
keys=$(timeout 30 kcat -b "$EVC_KAFKA_REAL_BOOTSTRAP" -C -t "${PREFIX}_evc_schemas" -o beginning -e -q -f '%k\n' 2>/dev/null | sort | tr '\n' ' ')
is "$keys" "acme.Big acme.Order " "${PREFIX}_evc_schemas holds one record per registration, keyed client.event"
echo "# ${SECONDS}s: topics and the schemas topic checked"
# Compaction keeps the latest version per key: small segments, so that the
# cleaner (log.cleaner.backoff.ms=1000) sees them; each registration waits
# for the segment before it to be old enough to roll.
evc_kafka_real_configs --alter --entity-type topics --entity-name "${PREFIX}_evc_schemas" \
	--add-config segment.ms=300,min.cleanable.dirty.ratio=0.01 >/dev/null 2>&1
for v in '"a": {"type": "string"}' '"a": {"type": "string"}, "b": {"type": "integer"}'; do
	sleep 0.5
	q "SELECT evc_register_schema('acme', 'Order', '{\"type\": \"object\", \"properties\": {$v}}')" >/dev/null
	q "SELECT evc_flush('30 s')" >/dev/null
done
sleep 0.5
q "SELECT evc_register_schema('acme', 'Tick', '{\"type\": \"object\"}')" >/dev/null
q "SELECT evc_flush('30 s')" >/dev/null
deadline=$((SECONDS + 40))
until [ "$(timeout 30 kcat -b "$EVC_KAFKA_REAL_BOOTSTRAP" -C -t "${PREFIX}_evc_schemas" -o beginning -e -q -f '%k\n' 2>/dev/null | grep -c '^acme.Order$')" = 1 ] ||
	[ $SECONDS -ge $deadline ]; do
	sleep 1
done
is "$(timeout 30 kcat -b "$EVC_KAFKA_REAL_BOOTSTRAP" -C -t "${PREFIX}_evc_schemas" -o beginning -e -q -f '%k %h\n' 2>/dev/null |
	sed -n 's/^acme.Order .*schema_version=\([0-9]*\).*/\1/p' | tr '\n' ' ')" "3 " \
	"compaction keeps only the latest registration of acme.Order (version 3 of 3)"

echo "# ${SECONDS}s: compaction checked"
# 10,000 events end to end, each once.
q "SELECT evc_send('acme', 'Order', jsonb_build_object('n', g), key => 'order-' || (g % 97)) FROM generate_series(1, 5000) g" >"$T/sent10k.ids"
q "SELECT evc_send('acme', 'Order', jsonb_build_object('n', g), key => 'order-' || (g % 97)) FROM generate_series(5001, 10000) g" >>"$T/sent10k.ids"
is "$(q "SELECT evc_flush('60 s')")" 0 "10,000 events sent in two transactions are flushed"
evc_kafka_real_ids "${PREFIX}acme.Order" "$T/sent10k.ids" >"$T/read10k.ids"
is "$(wc -l <"$T/read10k.ids") $(evc_compare_ids "$T/sent10k.ids" "$T/read10k.ids")" "10000 missing 0 duplicated 0 extra 0" \
	"kcat reads the 10,000 events back, each once, by their message_id header"

# acks=all: the idempotent producer needs it, and a user's acks=1 must not
# stop the relay (librdkafka refuses a producer with both).
q "ALTER SYSTEM SET evcollector.kafka_properties = 'acks=1'" && q "SELECT pg_reload_conf()" >/dev/null
q "SELECT evc_send('acme', 'Order', '{\"acks\": 1}')" >"$T/acks.ids"
is "$(q "SELECT evc_flush('20 s')")|$(evc_kafka_real_ids "${PREFIX}acme.Order" "$T/acks.ids" | grep -c -f "$T/acks.ids")" "0|1" \
	"with evcollector.kafka_properties = 'acks=1' the relay still delivers (acks=all is kept)" \
	"$(q "SELECT last_error FROM evc.workers WHERE kind = 'relay'")"
q "ALTER SYSTEM RESET evcollector.kafka_properties" && q "SELECT pg_reload_conf()" >/dev/null

# An event over the topic's max.message.bytes: a dead letter with the reason.
q "SELECT evc_create_topic('${PREFIX}acme.Big', 1, 1, '{\"max.message.bytes\": \"100000\"}')" >/dev/null
big=$(q "SELECT evc_send('acme', 'Big', jsonb_build_object('blob', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 20000) g)))")
wait_sql 30 "SELECT count(*) = 1 FROM evc.dead_letters WHERE message_id = '$big'"
tap $? "an event over the topic's max.message.bytes goes to evc.dead_letters" \
	"$(q "SELECT count(*), max(attempts), max(last_error) FROM evc.outbox WHERE message_id = '$big'")"
is "$(q "SELECT error ~ 'MSG_SIZE_TOO_LARGE', attempts, source FROM evc.dead_letters WHERE message_id = '$big'")" "t|1|relay" \
	"the dead letter names the reason (MSG_SIZE_TOO_LARGE), after one attempt" \
	"$(q "SELECT error FROM evc.dead_letters WHERE message_id = '$big'")"
# The transactional relay writes the dead letter first and then commits the
# batch's other events with its tick, so the event leaves evc.outbox a
# moment after its dead letter appears: wait for that, with a deadline.
wait_sql 10 "SELECT count(*) = 0 FROM evc.outbox WHERE message_id = '$big'" || true
is "$(q "SELECT count(*) FROM evc.outbox WHERE message_id = '$big'")" 0 "the too-large event is not retried: it is no longer in evc.outbox"
# A small event sent beside it is no dead letter.
q "SELECT evc_send('acme', 'Big', jsonb_build_object('blob', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 20000) g))); SELECT evc_send('acme', 'Big', '{\"small\": true}')" >"$T/big2.ids"
small=$(tail -1 "$T/big2.ids")
echo "$small" >"$T/small.id"
q "SELECT evc_flush('30 s')" >/dev/null
# librdkafka puts both in one record batch, which the broker refuses whole
# (the Java producer splits such a batch and sends again; librdkafka fails
# every message in it with MSG_SIZE_TOO_LARGE): the relay sends the small
# one again alone (relay_settle.c).
got="$(q "SELECT count(*) FROM evc.dead_letters WHERE message_id = '$small'")|$(evc_kafka_real_ids "${PREFIX}acme.Big" "$T/small.id" | grep -c "$small")"
is "$got" "0|1" "a small event sent beside a too-large one is delivered, not dead-lettered"

# ---------------------------------------------------------------------
# SASL_SSL with SCRAM-SHA-512: server 2
# ---------------------------------------------------------------------
echo "# ${SECONDS}s: one node, PLAINTEXT, done"
pg2_start
tap $? "server 2 (librdkafka from EVC_KAFKA_REAL_LD_PATH, SASL_SSL) started" "$(tail -5 "$PG2/start.log")"
wait_sql 30 "SELECT pid IS NOT NULL FROM evc.workers WHERE kind = 'relay'" q2
rpid=$(q2 "SELECT pid FROM evc.workers WHERE kind = 'relay'")
# The library file itself, through the link the harness made.
want=$(readlink -f "$EVC_KAFKA_REAL_LD_PATH/librdkafka.so.1")
lib=$(grep -o '/[^ ]*librdkafka[^ /]*\.so[^ ]*' "/proc/$rpid/maps" 2>/dev/null | sort -u | tr '\n' ' ')
[ -z "$EVC_KAFKA_REAL_LD_PATH" ] || [ "$lib" = "$want " ]
tap $? "server 2's relay has loaded the librdkafka of EVC_KAFKA_REAL_LD_PATH" "relay $rpid maps: $lib; want $want"
q2 "SELECT evc_register_schema('acme', 'Sasl', '{\"type\": \"object\"}'), evc_register_schema('acme', 'Denied', '{\"type\": \"object\"}')" >/dev/null
q2 "SELECT evc_send('acme', 'Sasl', jsonb_build_object('n', g)) FROM generate_series(1, 200) g" >"$T/sasl.ids"
is "$(q2 "SELECT evc_flush('60 s')")" 0 "with the right password, 200 events are delivered over SASL_SSL"
evc_kafka_real_ids "${PREFIX}acme.Sasl" "$T/sasl.ids" >"$T/sasl.read"
is "$(evc_compare_ids "$T/sasl.ids" "$T/sasl.read")" "missing 0 duplicated 0 extra 0" "kcat reads the 200 events back, each once"

# A wrong password: a clear error, the events held, the password nowhere.
set_password "$BADPW"
q2 "SELECT evc_send('acme', 'Sasl', jsonb_build_object('held', g)) FROM generate_series(1, 5) g" >"$T/held.ids"
wait_sql 40 "SELECT last_error ~* 'authentication' FROM evc.workers WHERE kind = 'relay'" q2
tap $? "a wrong password shows in evc.workers as an authentication failure" \
	"$(q2 "SELECT last_error FROM evc.workers WHERE kind = 'relay'; SELECT pending, last_error FROM evc.outbox_status")"
is "$(q2 "SELECT pending FROM evc.outbox_status")" 5 "the events sent meanwhile are held in the outbox (evc.outbox_status)"
# PostgreSQL quotes a whole rejected value in its own message (docs/
# operations.md, Security); evcollector's detail names the key only.
out=$(qerr "$PG2_PORT" "ALTER SYSTEM SET evcollector.kafka_properties = 'sasl.password=$BADPW;no.such.property=1'")
echo "$out" | grep -q '^DETAIL: .*"no.such.property"' && ! echo "$out" | grep -v '^ERROR:  22023: invalid value for parameter "evcollector.kafka_properties"' | grep -q "$BADPW"
tap $? "a bad evcollector.kafka_properties is refused: the detail names the key, not the password" "$out"
seen=$(q2 "SELECT count(*) FROM (SELECT last_error AS t FROM evc.workers UNION ALL SELECT last_error FROM evc.stats
	UNION ALL SELECT last_error FROM evc.outbox_status UNION ALL SELECT error FROM evc.dead_letters
	UNION ALL SELECT last_error FROM evc.outbox) s WHERE t LIKE '%$BADPW%'")
# PostgreSQL itself logs 'parameter "..." changed to "<value>"' when a reload
# changes a setting, quotes a rejected value, and logs the statement that
# failed (docs/operations.md, Security); no line of ours may.
logged=$(grep -h -e "$BADPW" -e "$EVC_KAFKA_REAL_PASSWORD" "$PG2/postgresql.log" "$EVC_RUN/postgresql.log" |
	grep -v -e 'parameter "evcollector.kafka_properties" changed to' \
		-e 'invalid value for parameter "evcollector.kafka_properties"' \
		-e 'STATEMENT:  ALTER SYSTEM SET evcollector.kafka_properties')
is "$seen|$(grep -c . <<<"$logged")" "0|0" \
	"no password appears in evc.workers, evc.stats, evc.outbox_status, evc.outbox, evc.dead_letters or a log line of ours" "$logged"
set_password "$EVC_KAFKA_REAL_PASSWORD"
is "$(q2 "SELECT evc_flush('60 s')")" 0 "once the password is right, the held events are delivered"
cat "$T/sasl.ids" "$T/held.ids" >"$T/sasl.all"
evc_kafka_real_ids "${PREFIX}acme.Sasl" "$T/sasl.all" >"$T/sasl.read"
is "$(evc_compare_ids "$T/sasl.all" "$T/sasl.read")" "missing 0 duplicated 0 extra 0" "kcat reads all 205 events, each once"

# ACLs for the SCRAM user.  It may not write kf-acme.Denied (created over
# PLAINTEXT, as the super user): its events are dead letters.
q "SELECT evc_create_topic('${PREFIX}acme.Denied', 1, 1)" >/dev/null
out=$(evc_kafka_real_acls --add --deny-principal "User:$EVC_KAFKA_REAL_USER" --operation Write --topic "${PREFIX}acme.Denied" --force 2>&1)
tap $? "an ACL denies User:$EVC_KAFKA_REAL_USER Write on ${PREFIX}acme.Denied" "$out"
q2 "SELECT evc_send('acme', 'Denied', jsonb_build_object('n', g)) FROM generate_series(1, 3) g" >"$T/denied.ids"
wait_sql 30 "SELECT count(*) = 3 FROM evc.dead_letters WHERE topic = '${PREFIX}acme.Denied'" q2
tap $? "events to a topic the relay may not write go to evc.dead_letters" \
	"$(q2 "SELECT attempts, last_error FROM evc.outbox WHERE topic = '${PREFIX}acme.Denied' LIMIT 3")"
wait_sql 10 "SELECT count(*) = 0 FROM evc.outbox" q2 || true
is "$(q2 "SELECT count(*) FILTER (WHERE error ~ 'TOPIC_AUTHORIZATION_FAILED'), max(attempts) FROM evc.dead_letters WHERE topic = '${PREFIX}acme.Denied'")|$(q2 "SELECT count(*) FROM evc.outbox")" \
	"3|1|0" "their dead letters say TOPIC_AUTHORIZATION_FAILED after one attempt, and nothing is retried"
# Nor create topics: CreateTopics is allowed by Create on the cluster or on
# the topic, so both are denied (last: the cluster then has an ACL).
out=$(evc_kafka_real_acls --add --deny-principal "User:$EVC_KAFKA_REAL_USER" --operation Create --cluster --topic kf-denied --force 2>&1)
out=$(qerr "$PG2_PORT" "SELECT evc_create_topic('kf-denied', 1, 1)")
echo "$out" | grep -q '^ERROR:  42501: could not create topic "kf-denied"' &&
	echo "$out" | grep -q '^DETAIL:  TOPIC_AUTHORIZATION_FAILED: '
tap $? "a topic the principal may not create: 42501, with the broker's reason" "$out"

# ---------------------------------------------------------------------
# Three nodes
# ---------------------------------------------------------------------
echo "# ${SECONDS}s: SASL_SSL and ACLs done"
evc_kafka_real_stop >/dev/null 2>&1
if ! evc_kafka_real_start 3 "$EVC_RUN/kafka-real" >"$T/start3.log" 2>&1; then
	tap 1 "Apache Kafka (3 nodes) started" "$(tail -20 "$T/start3.log")"
	exit 1
fi
point q "$EVC_KAFKA_REAL_BOOTSTRAP"
# The CA is made again at every start, at the same path.
point q2 "$EVC_KAFKA_REAL_SASL_BOOTSTRAP"

q "SELECT evc_create_topic('kf-rebal', 6, 3, '{\"min.insync.replicas\": \"2\"}')" >/dev/null
is "$(topic_shape kf-rebal)|$(topic_configs kf-rebal | tr '\n' ' ')" "PartitionCount: 6 ReplicationFactor: 3|min.insync.replicas=2 " \
	"evc_create_topic on three brokers: 6 partitions, replication factor 3, its config"

# A partition leader SIGKILLed and restarted while events flow.
q "SELECT evc_send('acme', 'Order', '{\"first\": true}')" >"$T/kill.ids"
q "SELECT evc_flush('60 s')" >/dev/null
leader=$(kcat -b "$EVC_KAFKA_REAL_BOOTSTRAP" -L -J -t "${PREFIX}acme.Order" 2>/dev/null |
	jq -r --arg t "${PREFIX}acme.Order" '.topics[] | select(.topic == $t) | .partitions[] | select(.partition == 0) | .leader')
ports=$(kcat -b "$EVC_KAFKA_REAL_BOOTSTRAP" -L -J 2>/dev/null | jq -r --argjson l "${leader:-0}" '.brokers[] | select(.id == $l) | .name')
[ -n "$leader" ] && [ "$leader" = "${leader//[^0-9]/}" ]
tap $? "the leader of partition 0 of ${PREFIX}acme.Order (replication factor 3) is broker $leader ($ports)"
rm -f "$T/stop"
(
	while [ ! -e "$T/stop" ]; do
		q "SELECT evc_send('acme', 'Order', jsonb_build_object('n', g), key => 'k' || g) FROM generate_series(1, 200) g" >>"$T/kill.ids" 2>>"$T/kill.err"
		sleep 0.1
	done
) &
sender=$!
sleep 3
evc_kafka_real_kill "${leader:-1}" >>"$T/kill.log" 2>&1
sleep 10
evc_kafka_real_restart "${leader:-1}" >>"$T/kill.log" 2>&1
rc=$?
sleep 2
touch "$T/stop"
wait $sender
tap $rc "broker $leader SIGKILLed while events flowed, and restarted" "$(cat "$T/kill.log")"
sent=$(wc -l <"$T/kill.ids")
is "$(q "SELECT evc_flush('120 s')")|$(grep -c . "$T/kill.err")" "0|0" "all $sent events sent meanwhile are flushed" \
	"$(head -5 "$T/kill.err"; q "SELECT * FROM evc.outbox_status")"
evc_kafka_real_ids "${PREFIX}acme.Order" "$T/kill.ids" >"$T/kill.read"
res=$(evc_compare_ids "$T/kill.ids" "$T/kill.read")
is "${res% duplicated*}" "missing 0" "no event is lost through the broker's SIGKILL ($sent events)" "$res"
is "${res#missing * }" "duplicated 0 extra 0" "and none is written twice (the idempotent producer)" "$res"
is "$(q "SELECT count(*) FROM evc.dead_letters WHERE topic = '${PREFIX}acme.Order'")" 0 "no event went to dead letters"
evc_kafka_real_wait_isr "${PREFIX}acme.Order" 60 >/dev/null 2>&1

echo "# ${SECONDS}s: the broker SIGKILL done"
# One consumer group across the two servers, with the real coordinator.
produce() { "$EVC_ROOT/.build/bin/evc-produce" -b "$EVC_KAFKA_REAL_BOOTSTRAP" -t kf-rebal -g kfr "$@" >/dev/null 2>>"$T/produce.log" || echo "evc-produce $* failed" >>"$T/produce.err"; }
landed() { $1 "SELECT count(*) FROM evc.events WHERE topic = 'kf-rebal'"; }
opts='{"group_id": "kf-rebal", "batch_size": 200, "flush_interval": 200}'
q "SELECT evc_consumer_create('kf_rebal', ARRAY['kf-rebal'], 'table', '$opts')" >/dev/null
produce -n 3000 -s 0
wait_sql 60 "SELECT count(*) = 3000 FROM evc.events WHERE topic = 'kf-rebal'"
tap $? "server 1's consumer alone lands 3000 events" "server 1: $(landed q)"
q2 "SELECT evc_consumer_create('kf_rebal', ARRAY['kf-rebal'], 'table', '$opts')" >/dev/null
# 3000 more in six steps a second apart, while the group rebalances.
for i in 0 1 2 3 4 5; do
	produce -n 500 -s $((3000 + 500 * i))
	sleep 1
done
wait_total() {
	local deadline=$((SECONDS + 60))
	until [ $(($(landed q) + $(landed q2))) -ge "$1" ]; do
		[ $SECONDS -ge $deadline ] && return 1
		sleep 0.3
	done
}
wait_total 6000
l1=$(landed q)
l2=$(landed q2)
[ "$l2" -gt 0 ] && [ $((l1 - 3000)) -gt 0 ]
tap $? "once server 2's consumer joins the group, both servers land events (server 1: $((l1 - 3000)), server 2: $l2 of 3000)"
q "SELECT evc_consumer_disable('kf_rebal')" >/dev/null
for i in 0 1 2; do
	produce -n 1000 -s $((6000 + 1000 * i))
	sleep 0.5
done
wait_total 9000
tap $? "once server 1's consumer leaves, server 2's lands the rest" "server 1: $(landed q), server 2: $(landed q2)"
sleep 1
{
	q "SELECT partition || ':' || \"offset\" FROM evc.events WHERE topic = 'kf-rebal'"
	q2 "SELECT partition || ':' || \"offset\" FROM evc.events WHERE topic = 'kf-rebal'"
} >"$T/rebal.landed"
is "$(wc -l <"$T/rebal.landed")|$(sort -u "$T/rebal.landed" | wc -l)|$(cat "$T/produce.err" 2>/dev/null | grep -c .)" "9000|9000|0" \
	"across the two servers every one of the 9000 events landed once (rows, distinct offsets, failed produces)" \
	"$(sort "$T/rebal.landed" | uniq -d | head -5; head -5 "$T/produce.log")"
# The lag of the consumer that took over every partition, as its own
# server shows it: positions and offsets of partitions it was handed in the
# rebalance, not read from the start.
lag_zero() { q2 "SELECT count(*) > 0 AND coalesce(sum(lag), -1) = 0 FROM evc.consumer_lag WHERE consumer = 'kf_rebal'"; }
deadline=$((SECONDS + 30))
until [ "$(lag_zero)" = t ] || [ $SECONDS -ge $deadline ]; do sleep 0.5; done
is "$(lag_zero)" t "after the rebalance server 2's evc.consumer_lag reaches 0 on every partition it holds" \
	"$(q2 "SELECT partition, next_offset, high_watermark, lag FROM evc.consumer_lag WHERE consumer = 'kf_rebal'")"
q2 "SELECT evc_consumer_drop('kf_rebal')" >/dev/null
echo "# ${SECONDS}s: the rebalance done"

[ $fails -eq 0 ]
