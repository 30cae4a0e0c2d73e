#!/usr/bin/env bash
# test/kafka/flows_suites.sh: the pgTAP flow suites of test/suites (send,
# relay, consume, aggregates, trace), unchanged, against a real one-node
# Apache Kafka instead of librdkafka's mock cluster.  Sourced by test/run's
# kafka layer in a new bash that has test/lib.sh's functions and the EVC_*
# variables of the harness (EVC_RUN, the s3rver endpoint).  Prints TAP.
#
# What differs from the suites layer, and why:
#  - A server of its own (server 3, in $EVC_RUN/pgk), whose evcollector.brokers
#    and evc_test.kafka_bootstrap are the real cluster's PLAINTEXT listener and
#    whose evc_test.kafka_peer is 'real'.  A fresh database: the suites count
#    what is on a topic and which schema version they registered, and server 1
#    has run them once already against the mock.
#  - Its bin/kafkactl is test/kafka/realctl.py, the client of a control server
#    run here as root (the brokers are root's processes): create_topic is
#    Kafka's TopicCommand, broker_down/broker_up stop and start the node.
#    Faults only the mock can inject (push_errors) are TAP skips that say so
#    (pg_temp.mock_fault in test/suites/lib.psql, and \if :mock).
#  - The broker has auto.create.topics.enable=true (docker/kafka.env, what
#    the compose file runs), so topics the suites do not create are created
#    on first use with num.partitions=3, as the mock does.
#
#   EVC_KAFKA_SUITES="send trace"   only these suites (names without .sql)

set -u
SECONDS=0
PGK=$EVC_RUN/pgk
PGK_PORT=
CTL_PID=
SUITES=${EVC_KAFKA_SUITES:-send send_faults relay_backlog relay_prepared relay_progress relay_reload relay_rotate relay_upgrade consume_archive consume_sinks aggregates trace}

n=0
fails=0
skips=0
pgk_stop() {
	[ -f "$PGK/pgdata/postmaster.pid" ] || return 0
	runuser -u postgres -- "$(pg_config --bindir)/pg_ctl" -D "$PGK/pgdata" -m fast -w -t 30 stop >/dev/null 2>&1 ||
		runuser -u postgres -- "$(pg_config --bindir)/pg_ctl" -D "$PGK/pgdata" -m immediate stop >/dev/null 2>&1
}
cleanup() {
	pgk_stop
	[ -n "$CTL_PID" ] && kill "$CTL_PID" 2>/dev/null
	evc_kafka_real_stop
}
trap cleanup EXIT
bail() {
	echo "not ok $((n + 1)) - $1"
	[ -n "${2:-}" ] && echo "$2" | tail -20 | sed 's/^/# /'
	echo "1..$((n + 1))"
	exit 1
}

if ! evc_kafka_real_start 1 "$EVC_RUN/kafka-suites" >"$EVC_RUN/kafka-suites.log" 2>&1; then
	bail "Apache Kafka (1 node) started for the suites" "$(cat "$EVC_RUN/kafka-suites.log")"
fi
echo "# ${SECONDS}s: Apache Kafka $(evc_kafka_real_version) at $EVC_KAFKA_REAL_BOOTSTRAP"

# The control server, as root, for the suites' kafkactl.
ctl_port=$(evc_free_port) || bail "a free port for the control server"
EVC_ROOT=$EVC_ROOT python3 "$EVC_ROOT/test/kafka/realctl.py" serve --port "$ctl_port" \
	</dev/null >"$EVC_RUN/realctl.log" 2>&1 &
CTL_PID=$!
echo "$CTL_PID" >"$EVC_RUN/realctl.pid"
evc_wait_for 10 python3 "$EVC_ROOT/test/kafka/realctl.py" -c "127.0.0.1:$ctl_port" ping ||
	bail "the control server answers" "$(cat "$EVC_RUN/realctl.log")"

# Server 3's run directory has the layout evc_run_dir makes: the helpers the
# suites call by evc_test.bin, its tmp, its storage and its log beside them.
mkdir -p "$PGK/bin" "$PGK/tmp" "$PGK/storage" "$PGK/wire"
cp "$EVC_RUN"/bin/* "$PGK/bin/"
cp "$EVC_RUN"/wire/* "$PGK/wire/"
cp "$EVC_ROOT/test/kafka/realctl.py" "$PGK/bin/kafkactl"
chmod 755 "$PGK" "$PGK/bin"/*
chown -R postgres:postgres "$PGK"
if ! (
	EVC_RUN=$PGK
	EVC_KAFKA_BOOTSTRAP=$EVC_KAFKA_REAL_BOOTSTRAP
	EVC_KAFKA_CONTROL=127.0.0.1:$ctl_port
	evc_cluster_start "max_prepared_transactions = 4" "evc_test.kafka_peer = 'real'"
) >"$PGK/start.log" 2>&1; then
	bail "server 3 started against Apache Kafka" "$(cat "$PGK/start.log" "$PGK/postgresql.log" 2>/dev/null)"
fi
PGK_PORT=$(sed -n "s/^port = //p" "$PGK/pgdata/postgresql.conf")
echo "# ${SECONDS}s: server 3 on port $PGK_PORT, brokers $EVC_KAFKA_REAL_BOOTSTRAP"

# Each suite through pg_prove, as run_suites does; its test lines are
# numbered into this one stream and named after the suite.
for s in $SUITES; do
	f=$EVC_ROOT/test/suites/$s.sql
	t0=$SECONDS
	PGPORT=$PGK_PORT PGOPTIONS="-c client_min_messages=warning" psql -X -q -d evc_test \
		-c "CREATE EXTENSION IF NOT EXISTS pgtap; CREATE EXTENSION IF NOT EXISTS evcollector" >/dev/null 2>&1
	out=$(PGPORT=$PGK_PORT timeout 600 pg_prove -v -d evc_test "$f" 2>&1)
	rc=$?
	ok=0
	notok=0
	while IFS= read -r line; do
		line=${line#"${line%%[! ]*}"}
		case $line in
			"ok "[0-9]* | "not ok "[0-9]*)
				n=$((n + 1))
				case $line in
					ok*) ok=$((ok + 1)) ;;
					# A "not ok ... # TODO" is a known bug, not a failure (TAP).
					*"# TODO"*) ;;
					*) notok=$((notok + 1)); fails=$((fails + 1)) ;;
				esac
				case $line in *"# SKIP"* | *"# skip"*) skips=$((skips + 1)) ;; esac
				# "ok 12 - text" becomes "ok N - SUITE: text".
				rest=${line#*ok }
				rest=${rest#*[0-9]}
				rest=${rest#"${rest%%[!0-9]*}"}
				rest=${rest# }
				rest=${rest#- }
				echo "${line%%ok *}ok $n - $s: $rest"
				;;
			"# "*) echo "$line" ;;
		esac
	done <<<"$out"
	if [ $rc -ne 0 ] && [ $notok -eq 0 ]; then
		n=$((n + 1))
		fails=$((fails + 1))
		echo "not ok $n - $s: the suite did not finish (pg_prove exit $rc)"
		echo "$out" | tail -15 | sed 's/^/# /'
	fi
	# Server 3's log goes with its run directory: its last lines say why.
	if [ $notok -gt 0 ] || [ $rc -ne 0 ]; then
		echo "# last lines of server 3's log:"
		tail -8 "$PGK/postgresql.log" 2>/dev/null | cut -c1-300 | sed 's/^/#   /'
	fi
	echo "# ${SECONDS}s: $s: $ok ok, $notok not ok, in $((SECONDS - t0))s"
done

echo "# $skips skipped: faults that only librdkafka's mock cluster can inject"
echo "1..$n"
[ $fails -eq 0 ]
