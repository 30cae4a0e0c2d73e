# test/lib.sh: shared by test/run, test/demo and bench/*.  Sourced, not run.
#
# It installs what is missing, builds and installs the extension, and starts
# and stops the throwaway peers: a PostgreSQL cluster run as user postgres,
# the test Kafka (test/tools/kafka_mock.c) and s3rver.  Everything listens on
# 127.0.0.1 only, and evc_stop_all stops exactly what was started here.

EVC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EVC_PIDS=()
EVC_RUN=""
EVC_PGDATA=""
EVC_SANITIZE_ENV=${EVC_SANITIZE_ENV:-}
EVC_S3_BUCKET=evc-test
EVC_S3_KEY=S3RVER
EVC_S3_SECRET=S3RVER

# Each line says when, in seconds since the script started: where the suite spends its time.
evc_log() { printf '==> %s (%d s)\n' "$*" "$SECONDS" >&2; }
evc_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Everything here needs root (apt-get, make install, runuser).  A user who
# ran it with plain rights is asked for sudo once, up front.
evc_require_root() {
	if [ "$(id -u)" != 0 ]; then
		command -v sudo >/dev/null || evc_die "run this as root, or install sudo"
		exec sudo -E "$@"
	fi
}

EVC_DEBS=(build-essential curl ca-certificates zlib1g-dev
	postgresql-15 postgresql-server-dev-15 postgresql-15-cron postgresql-15-pgtap
	libtap-parser-sourcehandler-pgtap-perl
	librdkafka-dev libcurl4-openssl-dev libprotobuf-c-dev protobuf-c-compiler
	kcat json-schema-test-suite bc python3-prometheus-client python3-venv protobuf-compiler
	maven openjdk-17-jre-headless openssl jq python3-pip
	libwebsockets-dev nginx-light wrk prometheus clang llvm chromium iproute2)

evc_install_deps() {
	local missing=() p
	for p in "${EVC_DEBS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	command -v npm >/dev/null || missing+=(nodejs npm)
	if [ ${#missing[@]} -gt 0 ]; then
		evc_log "installing Debian packages: ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
	if ! cmp -s "$EVC_ROOT/package-lock.json" "$EVC_ROOT/node_modules/.package-lock.json.ci" 2>/dev/null; then
		evc_log "installing npm packages (npm ci)"
		(cd "$EVC_ROOT" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || evc_die "npm ci failed"
		cp "$EVC_ROOT/package-lock.json" "$EVC_ROOT/node_modules/.package-lock.json.ci"
	fi
}

evc_build_install() {
	evc_log "building and installing the extension"
	make -C "$EVC_ROOT" -s >/dev/null || evc_die "build failed"
	make -C "$EVC_ROOT" -s install >/dev/null || evc_die "install failed"
	make -C "$EVC_ROOT" -s tools >/dev/null || evc_die "build of the test tools (test/tools) failed"
}

# A port nobody listens on, found by trying to connect to it.
evc_free_port() {
	# Below the kernel's ephemeral range: a port handed out here must not be
	# taken meanwhile as the local end of some outgoing connection (Kafka's
	# clients make many), which a listener's bind then fails on (EADDRINUSE).
	# Not one in use in any state (ss), nor one this run handed out already.
	local p i lo used="${EVC_RUN:+$EVC_RUN/ports}"
	lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
	[ "${lo:-0}" -gt 12000 ] 2>/dev/null || lo=32768
	for i in $(seq 1 200); do
		p=$((10000 + RANDOM % (lo - 10000)))
		[ -n "$used" ] && grep -qx "$p" "$used" 2>/dev/null && continue
		[ -n "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			[ -n "$used" ] && echo "$p" >>"$used" 2>/dev/null
			echo "$p"
			return 0
		fi
	done
	return 1
}

# evc_wait_for SECONDS COMMAND...: retry COMMAND until it succeeds.
evc_wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -ge $deadline ] && return 1
		sleep 0.1
	done
}

# The run directory holds the cluster, peer data, logs and the helper
# scripts that SQL tests call through COPY ... FROM PROGRAM; the server runs
# as postgres, so it lives outside the (possibly root-only) checkout.
evc_run_dir() {
	EVC_RUN=$(mktemp -d /tmp/evc-run.XXXXXX)
	mkdir -p "$EVC_RUN/bin" "$EVC_RUN/tmp" "$EVC_RUN/storage"
	cp "$EVC_ROOT"/test/helpers/* "$EVC_ROOT"/.build/bin/evc-* "$EVC_RUN/bin/" 2>/dev/null || true
	cp "$EVC_ROOT/test/kafkactl" "$EVC_RUN/bin/"
	# The wire-format checker and the .proto it decodes with (test/wire).
	mkdir -p "$EVC_RUN/wire" && cp "$EVC_ROOT"/test/wire/* "$EVC_ROOT/proto/evcollector.proto" "$EVC_RUN/wire/"
	chmod 755 "$EVC_RUN" "$EVC_RUN/bin"/*
	chown -R postgres:postgres "$EVC_RUN"
	trap evc_stop_all EXIT
	trap 'exit 130' INT TERM
}

evc_kafka_start() {
	local info="$EVC_RUN/kafka.info"
	"$EVC_ROOT/.build/bin/kafka_mock" --brokers 3 --info-file "$info" \
		</dev/null >"$EVC_RUN/kafka.log" 2>&1 &
	EVC_PIDS+=($!)
	evc_wait_for 15 test -s "$info" || evc_die "test Kafka did not start; see $EVC_RUN/kafka.log"
	EVC_KAFKA_BOOTSTRAP=$(sed -n 's/^bootstrap=//p' "$info")
	EVC_KAFKA_CONTROL=$(sed -n 's/^control=//p' "$info")
	export EVC_KAFKA_BOOTSTRAP EVC_KAFKA_CONTROL
	evc_log "test Kafka at $EVC_KAFKA_BOOTSTRAP (control $EVC_KAFKA_CONTROL)"
}

evc_s3_start() {
	local port
	port=$(evc_free_port) || evc_die "no free port for s3rver"
	mkdir -p "$EVC_RUN/s3"
	"$EVC_ROOT/node_modules/.bin/s3rver" -d "$EVC_RUN/s3" -a 127.0.0.1 -p "$port" -s \
		--configure-bucket "$EVC_S3_BUCKET" >"$EVC_RUN/s3rver.log" 2>&1 &
	EVC_PIDS+=($!)
	EVC_S3_ENDPOINT="http://127.0.0.1:$port"
	export EVC_S3_ENDPOINT
	evc_wait_for 60 curl -sf -o /dev/null "$EVC_S3_ENDPOINT/" || evc_die "s3rver did not start; see $EVC_RUN/s3rver.log"
	evc_log "s3rver at $EVC_S3_ENDPOINT (bucket $EVC_S3_BUCKET)"
}

# evc_cluster_start [extra postgresql.conf lines...]
evc_cluster_start() {
	local bindir port line
	bindir=$(pg_config --bindir)
	EVC_PGDATA="$EVC_RUN/pgdata"
	port=$(evc_free_port) || evc_die "no free port for PostgreSQL"
	runuser -u postgres -- "$bindir/initdb" -D "$EVC_PGDATA" -A trust -U postgres \
		-E UTF8 --no-sync >"$EVC_RUN/initdb.log" 2>&1 || evc_die "initdb failed; see $EVC_RUN/initdb.log"
	cat >>"$EVC_PGDATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$EVC_RUN'
shared_preload_libraries = 'evcollector, pg_cron'
max_worker_processes = 32
fsync = off
cron.database_name = 'evc_test'
evcollector.database = 'evc_test'
evcollector.storage_url = 'file://$EVC_RUN/storage'
evc_test.bin = '$EVC_RUN/bin'
evc_test.tmp = '$EVC_RUN/tmp'
CONF
	[ -n "${EVC_KAFKA_BOOTSTRAP:-}" ] && cat >>"$EVC_PGDATA/postgresql.conf" <<CONF
evcollector.brokers = '$EVC_KAFKA_BOOTSTRAP'
evc_test.kafka_bootstrap = '$EVC_KAFKA_BOOTSTRAP'
evc_test.kafka_control = '$EVC_KAFKA_CONTROL'
CONF
	[ -n "${EVC_S3_ENDPOINT:-}" ] && cat >>"$EVC_PGDATA/postgresql.conf" <<CONF
evc_test.s3_endpoint = '$EVC_S3_ENDPOINT'
evc_test.s3_bucket = '$EVC_S3_BUCKET'
CONF
	for line in "$@"; do
		echo "$line" >>"$EVC_PGDATA/postgresql.conf"
	done
	# The database the workers connect to exists before they start.
	echo "CREATE DATABASE evc_test" | runuser -u postgres -- "$bindir/postgres" --single \
		-D "$EVC_PGDATA" -c shared_preload_libraries= postgres >"$EVC_RUN/single.log" 2>&1 ||
		evc_die "could not create database evc_test; see $EVC_RUN/single.log"
	evc_sanitize_env
	runuser -u postgres -- env $EVC_SANITIZE_ENV "$bindir/pg_ctl" -D "$EVC_PGDATA" -l "$EVC_RUN/postgresql.log" \
		-w -t 60 start >/dev/null || evc_die "PostgreSQL did not start; see $EVC_RUN/postgresql.log"
	export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres
	evc_log "PostgreSQL on 127.0.0.1:$port, data in $EVC_PGDATA"
}

# SANITIZE=1 (mk/sanitize.mk, docs/testing.md): the library has ASan and
# UBSan in it but postgres does not, so the ASan runtime is preloaded into the
# postmaster (it must be bound before libc's malloc).  Leaks are not reported:
# memory contexts are freed wholesale at exit, not chunk by chunk.  Reports go
# to $EVC_RUN/sanitize, which test/run reads.  Set once per run, exported, and
# given to every `pg_ctl start` as `env $EVC_SANITIZE_ENV` (empty otherwise).
evc_sanitize_env() {
	[ "${SANITIZE:-0}" = 1 ] && [ -z "${EVC_SANITIZE_ENV:-}" ] || return 0
	local asan
	asan=$(ldd "$(pg_config --pkglibdir)/evcollector.so" | awk '/libasan/ { print $3 }')
	[ -n "$asan" ] || evc_die "SANITIZE=1 but the installed evcollector.so has no ASan runtime; make clean first"
	mkdir -p "$EVC_RUN/sanitize" && chown postgres:postgres "$EVC_RUN/sanitize"
	# evc-asan-first.so (test/sanitize/asan_first.c) lets the runtime start.
	EVC_SANITIZE_ENV="LD_PRELOAD=$asan:$EVC_RUN/bin/evc-asan-first.so"
	EVC_SANITIZE_ENV+=" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:quarantine_size_mb=32:log_path=$EVC_RUN/sanitize/asan"
	EVC_SANITIZE_ENV+=" UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$EVC_RUN/sanitize/ubsan"
	export EVC_SANITIZE_ENV
}

evc_cluster_stop() {
	[ -n "$EVC_PGDATA" ] && [ -f "$EVC_PGDATA/postmaster.pid" ] || return 0
	runuser -u postgres -- "$(pg_config --bindir)/pg_ctl" -D "$EVC_PGDATA" -m fast -w -t 30 stop >/dev/null 2>&1 ||
		runuser -u postgres -- "$(pg_config --bindir)/pg_ctl" -D "$EVC_PGDATA" -m immediate stop >/dev/null 2>&1
}

evc_stop_all() {
	local pid
	evc_cluster_stop
	for pid in "${EVC_PIDS[@]}"; do
		kill "$pid" 2>/dev/null
	done
	for pid in "${EVC_PIDS[@]}"; do
		for _ in $(seq 1 30); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null
	done
	EVC_PIDS=()
	# The real Kafka's pid files are in $EVC_RUN (test/kafka/README.md).
	evc_kafka_real_stop
	if [ -n "$EVC_RUN" ] && [ -z "${EVC_KEEP_RUN:-}" ]; then
		rm -rf "$EVC_RUN"
	fi
}

# The real MinIO and the independent Python S3 clients (test/minio/README.md).
. "$EVC_ROOT/test/minio/minio.sh"

# The real Apache Kafka (test/kafka/README.md).
. "$EVC_ROOT/test/kafka/kafka.sh"
