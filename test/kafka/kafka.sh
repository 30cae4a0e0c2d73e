# test/kafka/kafka.sh: real Apache Kafka (4.x, KRaft) for the tests, natively
# on loopback.  Sourced, not run, after test/lib.sh (it uses evc_free_port and
# evc_log).  See test/kafka/README.md.
#
#   evc_kafka_real_fetch            the broker's jars, from Maven Central, cached
#   evc_kafka_real_start N [DIR]    N = 1 or 3 combined controller+broker nodes
#   evc_kafka_real_kill I           SIGKILL node I (1..N)
#   evc_kafka_real_restart I        start node I again (stopping it first if up)
#   evc_kafka_real_stop             stop every node this cluster started
#   evc_kafka_real_wait_isr TOPIC [SECONDS]   every partition fully in sync
#   evc_kafka_real_topics|acls|configs ARGS   Kafka's own admin commands
#
# The broker's settings come from docker/kafka.env, the file the compose
# file's Kafka service reads; only ports, paths, node ids and the test-only
# SASL_SSL listener are made here.  The functions keep their state in the run
# directory (pid files, java argument files, an info file), so a child script
# that sources this file with EVC_KAFKA_REAL_DIR in its environment can kill
# and restart nodes of the cluster its parent started.

EVC_KAFKA_REAL_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
EVC_KAFKA_REAL_ENV_FILE=${EVC_KAFKA_REAL_ENV_FILE:-$(cd "$EVC_KAFKA_REAL_SRC/../.." && pwd)/docker/kafka.env}
EVC_KAFKA_REAL_COMPOSE=${EVC_KAFKA_REAL_COMPOSE:-$(dirname "$EVC_KAFKA_REAL_ENV_FILE")/docker-compose.yml}
EVC_KAFKA_REAL_USER=${EVC_KAFKA_REAL_USER:-evc}
EVC_KAFKA_REAL_PASSWORD=${EVC_KAFKA_REAL_PASSWORD:-evc-kafka-test-secret}
EVC_KAFKA_REAL_TIMEOUT=${EVC_KAFKA_REAL_TIMEOUT:-120}
EVC_KAFKA_REAL_DIR=${EVC_KAFKA_REAL_DIR:-}
EVC_KAFKA_REAL_NODES=${EVC_KAFKA_REAL_NODES:-0}
EVC_KAFKA_REAL_HOME=${EVC_KAFKA_REAL_HOME:-}
EVC_KAFKA_REAL_LD_PATH=${EVC_KAFKA_REAL_LD_PATH:-}
# librdkafka before 2.6.1 (Debian 12 has 2.0.2) repeats the client nonce in
# its SCRAM client-final-message; Kafka 4.x checks the nonce strictly and
# refuses every SCRAM login from it (librdkafka#4895).  PyPI's confluent-kafka
# wheel ships a current librdkafka.so.1, which kcat (and any program linked
# with librdkafka.so.1) can load through LD_LIBRARY_PATH.
EVC_KAFKA_REAL_RDKAFKA_PIP=${EVC_KAFKA_REAL_RDKAFKA_PIP:-confluent-kafka==2.16.1}

# kafka-run-class.sh's JVM flags, less the ones for a long-running server.
_EVC_KR_JVM="-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
	-XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -XX:-UsePerfData -Djava.awt.headless=true"
# The command-line tools: a quick start matters more than their speed.
_EVC_KR_TOOL_JVM="-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData -Djava.awt.headless=true"

_evc_kr_log() { if declare -F evc_log >/dev/null; then evc_log "$@"; else printf '==> %s\n' "$*" >&2; fi; }
_evc_kr_err() { printf 'error: %s\n' "$*" >&2; }
_evc_kr_now() { local t=${EPOCHREALTIME/,/.}; echo "${t%.*}${t#*.}" | cut -c1-13; }  # milliseconds
_evc_kr_secs() { local ms=$(($(_evc_kr_now) - $1)); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }

# The Kafka version: $EVC_KAFKA_VERSION, else the apache/kafka image tag of
# docker/docker-compose.yml, so that the compose file names what was tested.
evc_kafka_real_version() {
	if [ -n "${EVC_KAFKA_VERSION:-}" ]; then
		echo "$EVC_KAFKA_VERSION"
		return
	fi
	sed -n 's|^[[:space:]]*image:[[:space:]]*apache/kafka:\([0-9][0-9A-Za-z.-]*\)[[:space:]]*$|\1|p' \
		"$EVC_KAFKA_REAL_COMPOSE" 2>/dev/null | head -1
}

# evc_kafka_real_fetch: puts the broker and its runtime dependencies in
# ${EVC_CACHE:-/var/cache/evcollector}/kafka-VERSION/libs through
# test/kafka/pom.xml and sets EVC_KAFKA_REAL_HOME to that kafka-VERSION.
# A cache made from the same pom.xml and version is used as it is.
evc_kafka_real_fetch() {
	local ver home stamp t0
	ver=$(evc_kafka_real_version)
	[ -n "$ver" ] || { _evc_kr_err "no Kafka version: set EVC_KAFKA_VERSION or an apache/kafka image in $EVC_KAFKA_REAL_COMPOSE"; return 1; }
	home=${EVC_CACHE:-/var/cache/evcollector}/kafka-$ver
	stamp="$ver $(sha256sum <"$EVC_KAFKA_REAL_SRC/pom.xml" | cut -c1-64)"
	if [ "$(cat "$home/.complete" 2>/dev/null)" != "$stamp" ]; then
		command -v mvn >/dev/null || { _evc_kr_err "mvn is not installed (apt-get install maven)"; return 1; }
		mkdir -p "$home" || return 1
		t0=$(_evc_kr_now)
		(
			flock 9
			[ "$(cat "$home/.complete" 2>/dev/null)" = "$stamp" ] && exit 0
			_evc_kr_log "fetching Apache Kafka $ver from Maven Central into $home"
			_evc_kr_mvn() {
				rm -rf "$home/libs.new"
				mvn -q -B -Dstyle.color=never -f "$EVC_KAFKA_REAL_SRC/pom.xml" -Dkafka.version="$ver" "$@" \
					dependency:copy-dependencies -DoutputDirectory="$home/libs.new" >"$home/mvn.log" 2>&1
			}
			_evc_kr_mvn || { _evc_kr_err "mvn could not fetch Apache Kafka $ver; last lines of $home/mvn.log:"; tail -20 "$home/mvn.log" >&2; exit 1; }
			# The slf4j binding is pinned in the pom; log4j-core comes with
			# Kafka.  Another Kafka version may bring another log4j.
			local core impl
			core=$(cd "$home/libs.new" && ls log4j-core-*.jar 2>/dev/null | sed 's/^log4j-core-\(.*\)\.jar$/\1/')
			impl=$(cd "$home/libs.new" && ls log4j-slf4j-impl-*.jar 2>/dev/null | sed 's/^log4j-slf4j-impl-\(.*\)\.jar$/\1/')
			if [ -n "$core" ] && [ "$core" != "$impl" ]; then
				_evc_kr_mvn -Dlog4j.version="$core" || { _evc_kr_err "mvn could not fetch log4j $core; see $home/mvn.log"; exit 1; }
			fi
			[ -f "$home/libs.new/kafka_2.13-$ver.jar" ] || { _evc_kr_err "kafka_2.13-$ver.jar missing after the fetch"; exit 1; }
			rm -rf "$home/libs" && mv "$home/libs.new" "$home/libs" && echo "$stamp" >"$home/.complete"
		) 9>"$home/.lock" || return 1
		_evc_kr_log "Apache Kafka $ver in $home/libs ($(ls "$home/libs" | wc -l) jars, $(_evc_kr_secs "$t0")s)"
	fi
	EVC_KAFKA_REAL_HOME=$home
	export EVC_KAFKA_REAL_HOME
}

# evc_kafka_real_librdkafka: sets EVC_KAFKA_REAL_LD_PATH to a directory
# holding a librdkafka.so.1 that can log in with SCRAM to Kafka 4.x, fetched
# once from PyPI into the cache, or to "" when the system's kcat already
# uses librdkafka 2.6.1 or later.
evc_kafka_real_librdkafka() {
	local sys need=2.6.1 ver home arch so
	sys=$(kcat -V 2>/dev/null | sed -n 's/.*librdkafka \([0-9][0-9.]*\).*/\1/p')
	if [ -n "$sys" ] && [ "$(printf '%s\n' "$need" "$sys" | sort -V | head -1)" = "$need" ]; then
		EVC_KAFKA_REAL_LD_PATH=""
		export EVC_KAFKA_REAL_LD_PATH
		return 0
	fi
	ver=${EVC_KAFKA_REAL_RDKAFKA_PIP#*==}
	home=${EVC_CACHE:-/var/cache/evcollector}/librdkafka-from-confluent-kafka-$ver
	if [ ! -e "$home/lib/librdkafka.so.1" ]; then
		mkdir -p "$home" || return 1
		arch=$(uname -m)
		(
			flock 9
			[ -e "$home/lib/librdkafka.so.1" ] && exit 0
			_evc_kr_log "fetching librdkafka from PyPI ($EVC_KAFKA_REAL_RDKAFKA_PIP): the system's $sys cannot log in with SCRAM to Kafka 4.x"
			rm -rf "$home/wheel" "$home/lib" && mkdir -p "$home/wheel" "$home/lib"
			python3 -m pip download -q --no-deps --only-binary :all: --python-version 3.11 \
				--platform "manylinux_2_28_$arch" --platform "manylinux2014_$arch" \
				-d "$home/wheel" "$EVC_KAFKA_REAL_RDKAFKA_PIP" >"$home/pip.log" 2>&1 ||
				{ _evc_kr_err "pip could not fetch $EVC_KAFKA_REAL_RDKAFKA_PIP; see $home/pip.log"; exit 1; }
			(cd "$home/wheel" && python3 -m zipfile -e ./*.whl x >/dev/null) || { _evc_kr_err "could not unpack the confluent-kafka wheel"; exit 1; }
			so=$(ls "$home"/wheel/x/confluent_kafka.libs/librdkafka*.so* 2>/dev/null | head -1)
			[ -n "$so" ] || { _evc_kr_err "no librdkafka in the confluent-kafka wheel"; exit 1; }
			cp "$so" "$home/lib/" && ln -sf "$(basename "$so")" "$home/lib/librdkafka.so.1" && rm -rf "$home/wheel"
		) 9>"$home/.lock" || return 1
	fi
	EVC_KAFKA_REAL_LD_PATH=$home/lib
	export EVC_KAFKA_REAL_LD_PATH
}

# evc_kafka_real_kcat ARGS...: kcat with a librdkafka that can SCRAM (above).
evc_kafka_real_kcat() {
	if [ -n "$EVC_KAFKA_REAL_LD_PATH" ]; then
		LD_LIBRARY_PATH=$EVC_KAFKA_REAL_LD_PATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} kcat "$@"
	else
		kcat "$@"
	fi
}

# The broker settings of docker/kafka.env as server.properties lines, the
# way the apache/kafka image translates them, with the replication values
# raised for N nodes.
_evc_kr_props() {
	local n=$1 line key val prop rf isr
	rf=$((n < 3 ? n : 3))
	isr=$((rf >= 3 ? 2 : 1))
	while IFS= read -r line || [ -n "$line" ]; do
		case $line in '' | '#'*) continue ;; esac
		key=${line%%=*}
		val=${line#*=}
		case $key in
			# What the apache/kafka image reads for its launcher, not the broker.
			KAFKA_VERSION | KAFKA_HEAP_OPTS | KAFKA_LOG4J_OPTS | KAFKA_OPTS | KAFKA_JMX_OPTS | \
				KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_GC_LOG_OPTS | KAFKA_LOG4J_ROOT_LOGLEVEL | \
				KAFKA_LOG4J_LOGGERS | KAFKA_TOOLS_LOG4J_LOGLEVEL | KAFKA_JMX_HOSTNAME) continue ;;
			KAFKA_*) ;;
			*) continue ;;
		esac
		prop=${key#KAFKA_}
		prop=${prop//_/.}
		prop=${prop//.../-}
		prop=${prop//../_}
		prop=${prop,,}
		case $prop in
			*.replication.factor) val=$rf ;;
			*.min.isr | min.insync.replicas) val=$isr ;;
		esac
		echo "$prop=$val"
	done <"$EVC_KAFKA_REAL_ENV_FILE"
}

_evc_kr_env_value() {
	sed -n "s/^$1=//p" "$EVC_KAFKA_REAL_ENV_FILE" | tail -1
}

# A CA and one broker certificate (127.0.0.1, localhost) in a PKCS12
# keystore; the CA as PEM for clients.  EC keys: made in milliseconds.
_evc_kr_tls() {
	local d=$1/tls pw=$2
	mkdir -p "$d" && chmod 755 "$d" || return 1
	(
		cd "$d" || exit 1
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
			-days 30 -subj "/CN=evcollector test CA" -addext basicConstraints=critical,CA:TRUE \
			-addext keyUsage=critical,keyCertSign,cRLSign &&
			openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout broker.key -out broker.csr \
				-subj "/CN=localhost" &&
			printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
				"keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >broker.ext &&
			openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out broker.pem \
				-days 30 -extfile broker.ext &&
			openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
				-out broker.p12 -passout "pass:$pw"
	) >"$d/openssl.log" 2>&1 || { _evc_kr_err "openssl could not make the test certificate; see $d/openssl.log"; return 1; }
	chmod 600 "$d"/*.key "$d/broker.p12"
	chmod 644 "$d/ca.pem"
}

_evc_kr_node_dir() { echo "$EVC_KAFKA_REAL_DIR/node$1"; }

# The pid of node I if it is running (its java process, checked by its
# command line, so a reused pid is never taken for it).
_evc_kr_pid() {
	local nd pid
	nd=$(_evc_kr_node_dir "$1")
	pid=$(cat "$nd/pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$nd/java.args" || return 1
	echo "$pid"
}

_evc_kr_launch() {
	local i=$1 nd
	nd=$(_evc_kr_node_dir "$i")
	mkdir -p "$nd/logs"
	(cd "$nd" && exec java @"$nd/java.args") </dev/null >>"$nd/logs/stdout.log" 2>&1 &
	echo $! >"$nd/pid"
	# No "Killed" job report from this shell when a test SIGKILLs it.
	disown $!
}

# Waits until the PLAINTEXT listener of every node answers and the cluster
# lists all N brokers.  Nodes given as arguments are the ones just started:
# if one of them exits, waiting stops at once.
_evc_kr_wait_up() {
	local deadline=$((SECONDS + EVC_KAFKA_REAL_TIMEOUT)) i out count n=$EVC_KAFKA_REAL_NODES port
	while :; do
		for i in "$@"; do
			if ! _evc_kr_pid "$i" >/dev/null; then
				_evc_kr_fail "$i" "Apache Kafka node $i exited while starting"
				return 1
			fi
		done
		count=0
		for i in $(seq 1 "$n"); do
			port=$(evc_kafka_real_port "$i")
			out=$(kcat -L -b "127.0.0.1:$port" -m 2 2>/dev/null) || break
			[ "$(sed -n 's/^ \([0-9]*\) brokers:$/\1/p' <<<"$out")" = "$n" ] || break
			count=$((count + 1))
		done
		[ "$count" = "$n" ] && return 0
		if [ $SECONDS -ge $deadline ]; then
			_evc_kr_fail "${1:-1}" "Apache Kafka did not answer on 127.0.0.1 within ${EVC_KAFKA_REAL_TIMEOUT}s (nodes up: $count of $n; kcat -L -b 127.0.0.1:$port)"
			return 1
		fi
		sleep 0.3
	done
}

_evc_kr_fail() {
	local nd
	nd=$(_evc_kr_node_dir "$1")
	_evc_kr_err "$2"
	printf '==> last lines of %s\n' "$nd/logs/server.log" >&2
	tail -n 25 "$nd/logs/server.log" 2>/dev/null | cut -c1-400 >&2
	if [ -s "$nd/logs/stdout.log" ]; then
		printf '==> last lines of %s\n' "$nd/logs/stdout.log" >&2
		tail -n 15 "$nd/logs/stdout.log" | cut -c1-400 >&2
	fi
}

# Runs on EXIT besides whatever trap the caller has (test/lib.sh's
# evc_stop_all), so that an interrupted caller leaves no broker behind.
_evc_kr_trap() {
	local cur
	eval "set -- $(trap -p EXIT)"
	cur=${3:-}
	case $cur in *evc_kafka_real_stop*) ;; *) trap "evc_kafka_real_stop; $cur" EXIT ;; esac
	[ -n "$(trap -p INT)" ] || trap 'exit 130' INT
	[ -n "$(trap -p TERM)" ] || trap 'exit 143' TERM
}

# evc_kafka_real_start N [DIR]: a cluster of N (1 or 3) combined KRaft
# controller+broker nodes in DIR (default $EVC_RUN/kafka-real), with a
# PLAINTEXT and a SASL_SSL (SCRAM-SHA-512) listener each.  Returns once every
# node answers; on failure prints the log's tail, stops what it started and
# returns 1.
evc_kafka_real_start() {
	local n=${1:-1} dir=${2:-${EVC_RUN:+$EVC_RUN/kafka-real}} t0 i j p ports=() voters="" pw cid heap
	local plain="" sasl="" nd ver
	case $n in 1 | 3) ;; *) _evc_kr_err "evc_kafka_real_start: 1 or 3 nodes, not '$n'"; return 1 ;; esac
	[ -n "$dir" ] || { _evc_kr_err "evc_kafka_real_start: no run directory (give one or set EVC_RUN)"; return 1; }
	if [ -n "$EVC_KAFKA_REAL_DIR" ] && [ "$EVC_KAFKA_REAL_NODES" -gt 0 ]; then
		for i in $(seq 1 "$EVC_KAFKA_REAL_NODES"); do
			_evc_kr_pid "$i" >/dev/null && { _evc_kr_err "a real Kafka cluster is already running in $EVC_KAFKA_REAL_DIR"; return 1; }
		done
	fi
	for p in java kcat openssl; do
		command -v "$p" >/dev/null || { _evc_kr_err "$p is not installed"; return 1; }
	done
	evc_kafka_real_fetch || return 1
	evc_kafka_real_librdkafka || return 1
	ver=$(evc_kafka_real_version)
	t0=$(_evc_kr_now)
	# DIR is emptied: only if it is new, empty or an earlier cluster's.
	if [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ] && [ ! -f "$dir/info" ] && [ ! -d "$dir/node1" ]; then
		_evc_kr_err "evc_kafka_real_start: $dir is not empty and holds no earlier Kafka cluster; give a directory of its own"
		return 1
	fi
	rm -rf "$dir" && mkdir -p "$dir" && chmod 755 "$dir" || return 1
	EVC_KAFKA_REAL_DIR=$(cd "$dir" && pwd)
	EVC_KAFKA_REAL_NODES=$n
	export EVC_KAFKA_REAL_DIR EVC_KAFKA_REAL_NODES
	_evc_kr_trap

	# Three ports a node, all different, none in use.
	while [ ${#ports[@]} -lt $((3 * n)) ]; do
		p=$(evc_free_port) || { _evc_kr_err "no free port for Kafka"; return 1; }
		case " ${ports[*]} " in *" $p "*) continue ;; esac
		ports+=("$p")
	done
	for i in $(seq 1 "$n"); do
		voters+="${voters:+,}$i@127.0.0.1:${ports[3 * i - 1]}"
		plain+="${plain:+,}127.0.0.1:${ports[3 * i - 3]}"
		sasl+="${sasl:+,}127.0.0.1:${ports[3 * i - 2]}"
	done

	pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
	_evc_kr_tls "$EVC_KAFKA_REAL_DIR" "$pw" || return 1
	# A cluster id is 16 random bytes in unpadded base64url, not starting with '-'.
	cid=-
	while [ "${cid#-}" != "$cid" ]; do
		cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
	done
	heap=${EVC_KAFKA_REAL_HEAP:-$(_evc_kr_env_value KAFKA_HEAP_OPTS)}

	for i in $(seq 1 "$n"); do
		nd=$(_evc_kr_node_dir "$i")
		mkdir -p "$nd/data" "$nd/logs"
		{
			echo "# Made by test/kafka/kafka.sh: the settings of $EVC_KAFKA_REAL_ENV_FILE for $n node(s),"
			echo "# then this node's listeners and the test-only SASL_SSL listener."
			_evc_kr_props "$n"
			echo
			echo "node.id=$i"
			echo "listeners=PLAINTEXT://127.0.0.1:${ports[3 * i - 3]},SASL_SSL://127.0.0.1:${ports[3 * i - 2]},CONTROLLER://127.0.0.1:${ports[3 * i - 1]}"
			echo "advertised.listeners=PLAINTEXT://127.0.0.1:${ports[3 * i - 3]},SASL_SSL://127.0.0.1:${ports[3 * i - 2]}"
			echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL"
			echo "controller.quorum.voters=$voters"
			echo "log.dirs=$nd/data"
			echo "sasl.enabled.mechanisms=SCRAM-SHA-512"
			echo "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
			echo "ssl.keystore.type=PKCS12"
			echo "ssl.keystore.location=$EVC_KAFKA_REAL_DIR/tls/broker.p12"
			echo "ssl.keystore.password=$pw"
			echo "ssl.key.password=$pw"
			echo "ssl.client.auth=none"
		} >"$nd/server.properties"
		chmod 600 "$nd/server.properties"
		# One argument a line: the same java command from any shell.
		{
			printf '%s\n' $heap $_EVC_KR_JVM
			echo "-Dlog4j2.configurationFile=$EVC_KAFKA_REAL_SRC/log4j2.properties"
			echo "-Dkafka.logs.dir=$nd/logs"
			echo "-cp"
			echo "$EVC_KAFKA_REAL_HOME/libs/*"
			echo "kafka.Kafka"
			echo "$nd/server.properties"
		} >"$nd/java.args"
	done

	# Format every node's storage with the same cluster id and SCRAM user
	# (the controller that wins the first election writes them), in parallel.
	local fpids=()
	for i in $(seq 1 "$n"); do
		nd=$(_evc_kr_node_dir "$i")
		java $_EVC_KR_TOOL_JVM -Dlog4j2.configurationFile="$EVC_KAFKA_REAL_SRC/tools-log4j2.properties" \
			-cp "$EVC_KAFKA_REAL_HOME/libs/*" kafka.tools.StorageTool format -t "$cid" -c "$nd/server.properties" \
			--add-scram "SCRAM-SHA-512=[name=$EVC_KAFKA_REAL_USER,password=$EVC_KAFKA_REAL_PASSWORD]" \
			</dev/null >"$nd/logs/format.log" 2>&1 &
		fpids+=($!)
	done
	for i in $(seq 1 "$n"); do
		if ! wait "${fpids[i - 1]}"; then
			_evc_kr_err "formatting the storage of Kafka node $i failed:"
			tail -n 20 "$(_evc_kr_node_dir "$i")/logs/format.log" >&2
			return 1
		fi
	done

	for i in $(seq 1 "$n"); do
		_evc_kr_launch "$i"
	done

	EVC_KAFKA_REAL_BOOTSTRAP=$plain
	EVC_KAFKA_REAL_SASL_BOOTSTRAP=$sasl
	EVC_KAFKA_REAL_CA=$EVC_KAFKA_REAL_DIR/tls/ca.pem
	EVC_KAFKA_REAL_VERSION=$ver
	export EVC_KAFKA_REAL_BOOTSTRAP EVC_KAFKA_REAL_SASL_BOOTSTRAP EVC_KAFKA_REAL_CA EVC_KAFKA_REAL_VERSION \
		EVC_KAFKA_REAL_USER EVC_KAFKA_REAL_PASSWORD
	{
		# Client settings for SASL_SSL: librdkafka / kcat -F, and Java clients.
		echo "security.protocol=SASL_SSL"
		echo "sasl.mechanisms=SCRAM-SHA-512"
		echo "sasl.username=$EVC_KAFKA_REAL_USER"
		echo "sasl.password=$EVC_KAFKA_REAL_PASSWORD"
		echo "ssl.ca.location=$EVC_KAFKA_REAL_CA"
	} >"$EVC_KAFKA_REAL_DIR/sasl.kcat.conf"
	{
		echo "security.protocol=SASL_SSL"
		echo "sasl.mechanism=SCRAM-SHA-512"
		echo "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$EVC_KAFKA_REAL_USER\" password=\"$EVC_KAFKA_REAL_PASSWORD\";"
		echo "ssl.truststore.type=PEM"
		echo "ssl.truststore.location=$EVC_KAFKA_REAL_CA"
	} >"$EVC_KAFKA_REAL_DIR/sasl.java.properties"
	{
		# For helpers that do not inherit the environment (COPY ... FROM PROGRAM).
		for p in VERSION NODES DIR HOME LD_PATH BOOTSTRAP SASL_BOOTSTRAP CA USER PASSWORD; do
			eval "echo EVC_KAFKA_REAL_$p=\$EVC_KAFKA_REAL_$p"
		done
	} >"$EVC_KAFKA_REAL_DIR/info"
	chmod 644 "$EVC_KAFKA_REAL_DIR/sasl.kcat.conf" "$EVC_KAFKA_REAL_DIR/sasl.java.properties" "$EVC_KAFKA_REAL_DIR/info"

	if ! _evc_kr_wait_up $(seq 1 "$n"); then
		evc_kafka_real_stop
		return 1
	fi
	# The SCRAM user is in the metadata and TLS works.
	if ! evc_kafka_real_kcat -L -b "$sasl" -F "$EVC_KAFKA_REAL_DIR/sasl.kcat.conf" -m 10 >/dev/null 2>"$EVC_KAFKA_REAL_DIR/sasl-check.log"; then
		_evc_kr_fail 1 "Apache Kafka answers on PLAINTEXT but not on SASL_SSL as $EVC_KAFKA_REAL_USER; see $EVC_KAFKA_REAL_DIR/sasl-check.log"
		evc_kafka_real_stop
		return 1
	fi
	_evc_kr_log "Apache Kafka $ver, $n node(s), at $plain (SASL_SSL $sasl), up in $(_evc_kr_secs "$t0")s"
}

# evc_kafka_real_port I [plain|sasl|controller]: node I's port.
evc_kafka_real_port() {
	local kind=${2:-plain} l
	l=$(sed -n 's/^listeners=//p' "$(_evc_kr_node_dir "$1")/server.properties" 2>/dev/null)
	case $kind in
		plain) l=${l#*PLAINTEXT://} ;;
		sasl) l=${l#*SASL_SSL://} ;;
		controller) l=${l#*CONTROLLER://} ;;
	esac
	l=${l%%,*}
	echo "${l##*:}"
}

# evc_kafka_real_kill I: SIGKILL node I; returns when it is gone.
evc_kafka_real_kill() {
	local i=$1 pid
	pid=$(_evc_kr_pid "$i") || { _evc_kr_err "Kafka node $i is not running"; return 1; }
	kill -KILL "$pid"
	_evc_kr_gone "$pid" 10
	wait "$pid" 2>/dev/null
	rm -f "$(_evc_kr_node_dir "$i")/pid"
	_evc_kr_log "Kafka node $i (pid $pid) killed"
}

_evc_kr_gone() {
	local pid=$1 deadline=$((SECONDS + $2))
	while kill -0 "$pid" 2>/dev/null; do
		[ $SECONDS -ge $deadline ] && return 1
		# A child of this shell would stay a zombie until waited for.
		[ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" = Z ] && wait "$pid" 2>/dev/null
		sleep 0.1
	done
}

# evc_kafka_real_restart I: start node I again, after stopping it (SIGTERM,
# then SIGKILL after 30 s) if it still runs; returns once the cluster lists
# all its brokers again.
evc_kafka_real_restart() {
	local i=$1 pid t0
	[ -f "$(_evc_kr_node_dir "$i")/java.args" ] || { _evc_kr_err "no Kafka node $i in ${EVC_KAFKA_REAL_DIR:-(no cluster)}"; return 1; }
	t0=$(_evc_kr_now)
	if pid=$(_evc_kr_pid "$i"); then
		kill -TERM "$pid"
		_evc_kr_gone "$pid" 30 || { kill -KILL "$pid"; _evc_kr_gone "$pid" 10; }
		wait "$pid" 2>/dev/null
	fi
	_evc_kr_launch "$i"
	_evc_kr_wait_up "$i" || return 1
	_evc_kr_log "Kafka node $i restarted in $(_evc_kr_secs "$t0")s"
}

# evc_kafka_real_stop: SIGTERM every node, SIGKILL those still up after
# EVC_KAFKA_REAL_STOP_WAIT seconds (default 15); safe to call twice.
evc_kafka_real_stop() {
	local i pid pids=() deadline
	[ -n "$EVC_KAFKA_REAL_DIR" ] && [ -d "$EVC_KAFKA_REAL_DIR" ] || return 0
	for i in $(seq 1 "$EVC_KAFKA_REAL_NODES"); do
		pid=$(_evc_kr_pid "$i") && pids+=("$pid")
	done
	[ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null
	deadline=$((SECONDS + ${EVC_KAFKA_REAL_STOP_WAIT:-15}))
	for pid in "${pids[@]}"; do
		_evc_kr_gone "$pid" $((deadline - SECONDS > 0 ? deadline - SECONDS : 0)) || kill -KILL "$pid" 2>/dev/null
	done
	for pid in "${pids[@]}"; do
		_evc_kr_gone "$pid" 10
		wait "$pid" 2>/dev/null
	done
	rm -f "$EVC_KAFKA_REAL_DIR"/node*/pid
	[ ${#pids[@]} -gt 0 ] && _evc_kr_log "Apache Kafka stopped (${#pids[@]} node(s))"
	return 0
}

# evc_kafka_real_wait_isr TOPIC [SECONDS]: waits until every partition of
# TOPIC has all its replicas in sync (after a restart, before the next kill).
evc_kafka_real_wait_isr() {
	local topic=$1 deadline=$((SECONDS + ${2:-60})) js
	while :; do
		js=$(kcat -L -b "$EVC_KAFKA_REAL_BOOTSTRAP" -t "$topic" -J -m 5 2>/dev/null)
		if [ -n "$js" ] && jq -e --arg t "$topic" \
			'[.topics[] | select(.topic == $t) | .partitions[]] as $p
			 | ($p | length) > 0 and all($p[]; (.isrs | length) == (.replicas | length))' <<<"$js" >/dev/null; then
			return 0
		fi
		[ $SECONDS -ge $deadline ] && { _evc_kr_err "topic $topic not fully in sync after ${2:-60}s"; return 1; }
		sleep 0.5
	done
}

# evc_kafka_real_ids TOPIC [EXPECTED]: the message ids (the message_id
# header) of TOPIC as a read_committed consumer sees them, one a line.  Kafka
# answers a commit before it writes the transaction's markers, and until it
# has, a read_committed consumer stops at the last stable offset: an
# evc_flush that returned may be read a moment early.  Given the file of
# EXPECTED ids, the topic is read again (up to 30 s) until every one is
# there; the last read is printed whole, duplicates and extras included.
evc_kafka_real_ids() {
	local out deadline=$((SECONDS + 30))
	while :; do
		out=$(timeout 60 kcat -b "$EVC_KAFKA_REAL_BOOTSTRAP" -X isolation.level=read_committed -C -t "$1" \
			-o beginning -e -q -f '%h\n' 2>/dev/null | sed -n 's/.*message_id=\([0-9a-f-]\{36\}\).*/\1/p')
		if [ -z "${2:-}" ] || [ $SECONDS -ge $deadline ] ||
			[ -z "$(comm -23 <(sort -u "$2") <(sort -u <<<"$out"))" ]; then
			[ -n "$out" ] && echo "$out"
			return 0
		fi
		sleep 0.5
	done
}
# evc_compare_ids SENT READ: "missing M duplicated D extra E".
evc_compare_ids() {
	local m d e
	m=$(comm -23 <(sort -u "$1") <(sort -u "$2") | wc -l)
	d=$(sort "$2" | uniq -d | wc -l)
	e=$(comm -13 <(sort -u "$1") <(sort -u "$2") | wc -l)
	echo "missing $m duplicated $d extra $e"
}

# Kafka's own commands against the PLAINTEXT listener (an unauthenticated
# super user), e.g.
#   evc_kafka_real_topics --create --topic t --partitions 3 --replication-factor 3 --config cleanup.policy=compact
#   evc_kafka_real_acls --add --deny-principal User:evc --operation Write --topic t
#   evc_kafka_real_configs --describe --entity-type topics --entity-name t
# evc_kafka_real_tool CLASS ARGS... runs any other class of the cached jars.
evc_kafka_real_tool() {
	[ -n "$EVC_KAFKA_REAL_HOME" ] || { _evc_kr_err "no Kafka fetched (evc_kafka_real_fetch)"; return 1; }
	java $_EVC_KR_TOOL_JVM -Dlog4j2.configurationFile="$EVC_KAFKA_REAL_SRC/tools-log4j2.properties" \
		-cp "$EVC_KAFKA_REAL_HOME/libs/*" "$@"
}
evc_kafka_real_topics() { evc_kafka_real_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$EVC_KAFKA_REAL_BOOTSTRAP" "$@"; }
evc_kafka_real_acls() { evc_kafka_real_tool org.apache.kafka.tools.AclCommand --bootstrap-server "$EVC_KAFKA_REAL_BOOTSTRAP" "$@"; }
evc_kafka_real_configs() { evc_kafka_real_tool org.apache.kafka.tools.ConfigCommand --bootstrap-server "$EVC_KAFKA_REAL_BOOTSTRAP" "$@"; }

# evc_kafka_real_compose ARGS...: `docker compose -f docker/docker-compose.yml
# ARGS` without an engine (config needs none), e.g. `evc_kafka_real_compose
# config -q`.  When the docker client has no compose plugin, one is built
# once from the Go module proxy (github.com/docker/compose/v2, ~90 s on two
# cores) into ${EVC_CACHE:-/var/cache/evcollector}/docker-compose-VERSION.
evc_kafka_real_compose() {
	local ver=${EVC_COMPOSE_VERSION:-v2.40.3} dir src
	command -v docker >/dev/null || { _evc_kr_err "the docker client is not installed"; return 1; }
	if docker compose version >/dev/null 2>&1; then
		docker compose -f "$EVC_KAFKA_REAL_COMPOSE" "$@"
		return
	fi
	dir=${EVC_CACHE:-/var/cache/evcollector}/docker-compose-$ver
	if [ ! -x "$dir/cli-plugins/docker-compose" ]; then
		command -v go >/dev/null || { _evc_kr_err "docker has no compose plugin and go is not installed to build one"; return 1; }
		mkdir -p "$dir/cli-plugins" || return 1
		(
			flock 9
			[ -x "$dir/cli-plugins/docker-compose" ] && exit 0
			_evc_kr_log "building docker compose $ver from the Go module proxy into $dir"
			src=$(go mod download -json "github.com/docker/compose/v2@$ver" 2>"$dir/build.log" | jq -r .Dir) &&
				[ -d "$src" ] && (cd "$src" && go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$ver" \
				-o "$dir/cli-plugins/docker-compose.new" ./cmd) >>"$dir/build.log" 2>&1 &&
				mv "$dir/cli-plugins/docker-compose.new" "$dir/cli-plugins/docker-compose" ||
				{ _evc_kr_err "could not build docker compose $ver; see $dir/build.log"; exit 1; }
		) 9>"$dir/.lock" || return 1
	fi
	DOCKER_CONFIG=$dir docker compose -f "$EVC_KAFKA_REAL_COMPOSE" "$@"
}
