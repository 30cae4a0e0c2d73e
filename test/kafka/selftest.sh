#!/usr/bin/env bash
# test/kafka/selftest.sh: proves the real-Kafka harness (test/kafka/kafka.sh)
# with independent clients only (kcat, Kafka's own Java tools), and prints TAP.
#
#   bash test/kafka/selftest.sh        (as root, like test/run)
#
# A one-node cluster, then a three-node one (never both at once): produce and
# consume over PLAINTEXT and over SASL_SSL with SCRAM-SHA-512, a wrong
# password and a wrong CA refused, a compacted topic that really compacts, a
# node SIGKILLed and restarted while a replication-3 topic stays readable and
# writable with acks=all, and nothing left running at the end.
set -u
EVC_SELFTEST_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$EVC_SELFTEST_ROOT/test/lib.sh"
. "$EVC_SELFTEST_ROOT/test/kafka/kafka.sh"

T=0
FAILS=0
ok() { T=$((T + 1)); echo "ok $T - $1"; }
notok() { T=$((T + 1)); FAILS=$((FAILS + 1)); echo "not ok $T - $1"; [ $# -gt 1 ] && printf '%s\n' "$2" | sed 's/^/#   /' | head -20; }
check() { # check NAME COMMAND...
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then ok "$name"; else notok "$name" "$out"; fi
}
note() { echo "# $*"; }

RUN=$(mktemp -d /tmp/evc-kafka-selftest.XXXXXX)
chmod 755 "$RUN"
cleanup() { [ -z "${EVC_KEEP_RUN:-}" ] && rm -rf "$RUN"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every java process whose command line names this run directory.
ours() { pgrep -f "java @$RUN/" || true; }

plain() { kcat -b "$EVC_KAFKA_REAL_BOOTSTRAP" "$@"; }
sasl() { # sasl PASSWORD CA kcat-args...: at most 60 s
	local pw=$1 ca=$2
	shift 2
	timeout 60 env ${EVC_KAFKA_REAL_LD_PATH:+LD_LIBRARY_PATH=$EVC_KAFKA_REAL_LD_PATH} kcat -b "$EVC_KAFKA_REAL_SASL_BOOTSTRAP" -X security.protocol=SASL_SSL \
		-X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username="$EVC_KAFKA_REAL_USER" \
		-X sasl.password="$pw" -X ssl.ca.location="$ca" "$@"
}
# roundtrip PRODUCER TOPIC N: produces N keyed messages, reads the topic back
# from the beginning and compares.
roundtrip() {
	local via=$1 topic=$2 n=$3 want got
	want=$(for i in $(seq 1 "$n"); do echo "k$i:v$i-$topic"; done)
	case $via in
		plain) echo "$want" | plain -P -t "$topic" -K: -X acks=all || return 1 ;;
		sasl) echo "$want" | sasl "$EVC_KAFKA_REAL_PASSWORD" "$EVC_KAFKA_REAL_CA" -P -t "$topic" -K: -X acks=all || return 1 ;;
	esac
	case $via in
		plain) got=$(timeout 60 kcat -b "$EVC_KAFKA_REAL_BOOTSTRAP" -C -t "$topic" -o beginning -e -q -f '%k:%s\n') ;;
		sasl) got=$(sasl "$EVC_KAFKA_REAL_PASSWORD" "$EVC_KAFKA_REAL_CA" -C -t "$topic" -o beginning -e -q -f '%k:%s\n') ;;
	esac
	[ "$(sort <<<"$got")" = "$(sort <<<"$want")" ] || { echo "wanted $n messages, read $(grep -c . <<<"$got"):"; head -5 <<<"$got"; return 1; }
}
start_secs() { sed -n 's/.*up in \([0-9.]*\)s$/\1/p' "$1" | tail -1; }
brokers() { plain -L -m 5 | sed -n 's/^ \([0-9]*\) brokers:$/\1/p'; }

# --- Fetch --------------------------------------------------------------------
t0=$SECONDS
if evc_kafka_real_fetch && evc_kafka_real_librdkafka; then
	ok "Apache Kafka $(evc_kafka_real_version) and a SCRAM-capable librdkafka in the cache ($((SECONDS - t0))s)"
else
	notok "fetch Apache Kafka"
	echo "1..$T"
	exit 1
fi
note "system kcat: $(kcat -V | sed -n 's/.*\(librdkafka [0-9.]*\).*/\1/p'); SASL_SSL below uses ${EVC_KAFKA_REAL_LD_PATH:-the system librdkafka}"

# --- One source of settings ------------------------------------------------------
# The compose file (checked by docker compose itself, no engine needed) runs
# the version tested here, and its Kafka service gets every line of
# docker/kafka.env, the file the clusters below are configured from.
if out=$(evc_kafka_real_compose config --format json 2>"$RUN/compose.err"); then
	missing=""
	while IFS= read -r line || [ -n "$line" ]; do
		case $line in '' | '#'*) continue ;; esac
		[ "$(jq -r --arg k "${line%%=*}" '.services.kafka.environment[$k] // empty' <<<"$out")" = "${line#*=}" ] ||
			missing+=" ${line%%=*}"
	done <"$EVC_KAFKA_REAL_ENV_FILE"
	image=$(jq -r .services.kafka.image <<<"$out")
	if [ -z "$missing" ] && [ "$image" = "apache/kafka:$(evc_kafka_real_version)" ]; then
		ok "docker compose config passes; its kafka service is $image with all of docker/kafka.env"
	else
		notok "docker compose config: kafka service matches docker/kafka.env" "image $image; missing or different:$missing"
	fi
else
	notok "docker compose -f docker/docker-compose.yml config passes" "$(cat "$RUN/compose.err")"
fi

# --- One node -----------------------------------------------------------------
if evc_kafka_real_start 1 "$RUN/one" 2>"$RUN/start1.log"; then
	ok "1-node cluster answers (up in $(start_secs "$RUN/start1.log")s)"
	check "1 node: produce and consume 20 messages over PLAINTEXT (topic auto-created)" roundtrip plain selftest.plain 20
	check "1 node: produce and consume 20 messages over SASL_SSL, SCRAM-SHA-512" roundtrip sasl selftest.sasl 20
	out=$(sasl wrong-password "$EVC_KAFKA_REAL_CA" -L -m 5 2>&1)
	if [ $? -ne 0 ] && grep -q 'Authentication failed' <<<"$out"; then
		ok "1 node: a wrong password is refused (SASL authentication error)"
	else
		notok "1 node: a wrong password is refused" "$out"
	fi
	out=$(sasl "$EVC_KAFKA_REAL_PASSWORD" /etc/ssl/certs/ca-certificates.crt -L -m 5 2>&1)
	if [ $? -ne 0 ] && grep -qi 'certificate verify failed' <<<"$out"; then
		ok "1 node: a client that does not trust the test CA is refused (certificate verify failed)"
	else
		notok "1 node: a client that does not trust the test CA is refused" "$out"
	fi
	if [ -n "$EVC_KAFKA_REAL_LD_PATH" ]; then
		out=$(kcat -b "$EVC_KAFKA_REAL_SASL_BOOTSTRAP" -F "$EVC_KAFKA_REAL_DIR/sasl.kcat.conf" -L -m 5 2>&1)
		note "the system's librdkafka with the right password: $(grep -o 'Authentication failed[^(]*' <<<"$out" | head -1 || echo "logged in")"
	fi
	n=$(plain -L -t selftest.plain -J -m 5 | jq '.topics[0].partitions | length')
	[ "$n" = 3 ] && ok "1 node: an auto-created topic has num.partitions 3 (docker/kafka.env)" ||
		notok "1 node: an auto-created topic has num.partitions 3" "partitions: $n"

	# A compacted topic: the cleaner (log.cleaner.backoff.ms 1 s) keeps the
	# latest record of each key once the segment holding them is rolled.
	if out=$(evc_kafka_real_topics --create --topic selftest.compact --partitions 1 --replication-factor 1 \
		--config cleanup.policy=compact --config segment.ms=300 --config min.cleanable.dirty.ratio=0.01 \
		--config min.compaction.lag.ms=0 --config delete.retention.ms=0 2>&1) &&
		evc_kafka_real_configs --describe --entity-type topics --entity-name selftest.compact 2>&1 | grep -q 'cleanup.policy=compact'; then
		ok "1 node: a compacted topic is created with CreateTopics (cleanup.policy=compact)"
	else
		notok "1 node: a compacted topic is created" "$out"
	fi
	for r in $(seq 1 10); do for k in 1 2 3 4 5; do echo "k$k:r$r"; done; done | plain -P -t selftest.compact -K:
	sleep 1
	echo "roll:x" | plain -P -t selftest.compact -K:
	deadline=$((SECONDS + 45))
	while :; do
		got=$(timeout 30 kcat -b "$EVC_KAFKA_REAL_BOOTSTRAP" -C -t selftest.compact -o beginning -e -q -f '%k:%s\n')
		[ "$(grep -vc '^roll:' <<<"$got")" -le 5 ] && break
		[ $SECONDS -ge $deadline ] && break
		sleep 1
		# A write after segment.ms rolls the active segment again.
		echo "roll:x" | plain -P -t selftest.compact -K:
	done
	latest=$(grep -v '^roll:' <<<"$got" | sort | tr '\n' ' ')
	if [ "$latest" = "k1:r10 k2:r10 k3:r10 k4:r10 k5:r10 " ]; then
		ok "1 node: compaction keeps only the latest record of each key (50 records -> 5)"
	else
		notok "1 node: compaction keeps only the latest record of each key" "read: $(tr '\n' ' ' <<<"$got" | cut -c1-300)"
	fi
	evc_kafka_real_stop 2>/dev/null
	[ -z "$(ours)" ] && ok "1 node: stopped, no java process left" || notok "1 node: stopped, no java process left" "$(ours)"
else
	notok "1-node cluster answers" "$(cat "$RUN/start1.log")"
fi

# --- Three nodes ----------------------------------------------------------------
if evc_kafka_real_start 3 "$RUN/three" 2>"$RUN/start3.log"; then
	ok "3-node cluster answers, all 3 brokers listed (up in $(start_secs "$RUN/start3.log")s)"
	rf=$(grep -c . <<<"$(tr ',' '\n' <<<"$EVC_KAFKA_REAL_BOOTSTRAP")")
	[ "$rf" = 3 ] && [ "$(brokers)" = 3 ] && ok "3 nodes: three PLAINTEXT bootstrap addresses, metadata lists 3 brokers" ||
		notok "3 nodes: 3 brokers" "bootstrap $EVC_KAFKA_REAL_BOOTSTRAP, brokers $(brokers)"
	out=$(evc_kafka_real_configs --describe --entity-type brokers --entity-name 1 --all 2>&1)
	if grep -q '^ *default.replication.factor=3 ' <<<"$out" && grep -q '^ *min.insync.replicas=2 ' <<<"$out" &&
		grep -q '^ *offsets.topic.replication.factor=3 ' <<<"$out" && grep -q '^ *transaction.state.log.min.isr=2 ' <<<"$out"; then
		ok "3 nodes: default.replication.factor 3, min.insync.replicas 2, internal topics replicated 3"
	else
		notok "3 nodes: replication settings" "$(grep -E 'replication.factor|min.insync|min.isr' <<<"$out")"
	fi
	check "3 nodes: produce and consume 100 messages over PLAINTEXT with acks=all (auto-created, RF 3)" roundtrip plain selftest.rf3 100
	reps=$(plain -L -t selftest.rf3 -J -m 5 | jq '[.topics[0].partitions[].replicas | length] | unique | join(",")' -r)
	[ "$reps" = 3 ] && ok "3 nodes: every partition of the auto-created topic has 3 replicas" ||
		notok "3 nodes: 3 replicas per partition" "replicas: $reps"
	check "3 nodes: produce and consume 20 messages over SASL_SSL, SCRAM-SHA-512" roundtrip sasl selftest.sasl3 20
	check "3 nodes: all replicas in sync before the kill" evc_kafka_real_wait_isr selftest.rf3 60

	t1=$SECONDS
	check "3 nodes: node 2 SIGKILLed" evc_kafka_real_kill 2
	got=$(timeout 90 kcat -b "$EVC_KAFKA_REAL_BOOTSTRAP" -C -t selftest.rf3 -o beginning -e -q -f '%k:%s\n')
	[ "$(grep -c . <<<"$got")" = 100 ] && ok "3 nodes, one down: all 100 messages still readable ($((SECONDS - t1))s after the kill)" ||
		notok "3 nodes, one down: all 100 messages still readable" "read $(grep -c . <<<"$got")"
	want=$(for i in $(seq 101 150); do echo "k$i:v$i-selftest.rf3"; done)
	if echo "$want" | timeout 90 kcat -b "$EVC_KAFKA_REAL_BOOTSTRAP" -P -t selftest.rf3 -K: -X acks=all 2>"$RUN/p2.err"; then
		ok "3 nodes, one down: 50 more messages written with acks=all (2 in sync >= min.insync.replicas 2)"
	else
		notok "3 nodes, one down: 50 more written with acks=all" "$(tail -5 "$RUN/p2.err")"
	fi
	t2=$SECONDS
	if evc_kafka_real_restart 2 2>"$RUN/restart.log"; then
		ok "3 nodes: node 2 restarted and listed again ($((SECONDS - t2))s)"
	else
		notok "3 nodes: node 2 restarted" "$(tail -20 "$RUN/restart.log")"
	fi
	t3=$SECONDS
	check "3 nodes: node 2 back in sync on every partition" evc_kafka_real_wait_isr selftest.rf3 90
	note "node 2 back in the ISR $((SECONDS - t3))s after its restart"
	got=$(timeout 60 kcat -b "$EVC_KAFKA_REAL_BOOTSTRAP" -C -t selftest.rf3 -o beginning -e -q -f '%k:%s\n' | sort -u)
	[ "$(grep -c . <<<"$got")" = 150 ] && ok "3 nodes, after the restart: all 150 messages readable, none lost" ||
		notok "3 nodes, after the restart: all 150 messages readable" "read $(grep -c . <<<"$got")"
	# The restarted node serves on its own: read only through it.
	got=$(timeout 60 kcat -b "127.0.0.1:$(evc_kafka_real_port 2)" -C -t selftest.rf3 -o beginning -e -q -f '%k\n' | grep -c .)
	[ "$got" = 150 ] && ok "3 nodes: reading through the restarted node alone gives all 150" ||
		notok "3 nodes: reading through the restarted node" "read $got"
	t4=$SECONDS
	evc_kafka_real_stop 2>/dev/null
	note "3-node stop took $((SECONDS - t4))s"
	[ -z "$(ours)" ] && ok "3 nodes: stopped, no java process left" || notok "3 nodes: stopped, no java process left" "$(ours)"
else
	notok "3-node cluster answers" "$(cat "$RUN/start3.log")"
	evc_kafka_real_stop 2>/dev/null
fi

echo "1..$T"
echo "# $((T - FAILS)) passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
