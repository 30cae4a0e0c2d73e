# test/minio/minio.sh: a real, signature-checking S3 server (MinIO) for the
# tests, and the independent Python clients.  Sourced by test/lib.sh after its
# own helpers (evc_log, evc_die, evc_free_port, evc_wait_for, EVC_RUN,
# EVC_PIDS); not run.  See test/minio/README.md.

EVC_MINIO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${EVC_MINIO_VERSION:=v0.0.0-20260212201848-7aac2a2c5b7c}"
: "${EVC_CACHE:=/var/cache/evcollector}"

# evc_minio_build: go install the pinned MinIO into
# $EVC_CACHE/minio-$EVC_MINIO_VERSION/minio, once; later calls reuse it.
# Calls at once (the full run builds it in the background, test/run) wait
# for each other on a lock in the cache: one builds, the others reuse.
# Sets EVC_MINIO_BIN.
evc_minio_build() {
	local dir="$EVC_CACHE/minio-$EVC_MINIO_VERSION"
	EVC_MINIO_BIN="$dir/minio"
	[ -x "$EVC_MINIO_BIN" ] && return 0
	command -v go >/dev/null || evc_die "MinIO is built with Go, and go is not on PATH"
	mkdir -p "$EVC_CACHE" || evc_die "cannot create $EVC_CACHE"
	(
		flock 9
		[ -x "$EVC_MINIO_BIN" ] && exit 0
		_evc_minio_go_install "$dir"
	) 9>"$EVC_CACHE/.minio-$EVC_MINIO_VERSION.lock" || exit 1
	[ -x "$EVC_MINIO_BIN" ] || evc_die "no MinIO binary at $EVC_MINIO_BIN after its build"
}

# _evc_minio_go_install DIR: the build itself, into DIR (under the lock).
_evc_minio_go_install() {
	local dir=$1 t0 tmp
	tmp=$(mktemp -d "$EVC_CACHE/.minio-build.XXXXXX") || evc_die "cannot create a build dir in $EVC_CACHE"
	evc_log "building MinIO $EVC_MINIO_VERSION from the Go module proxy (once; about 3.5 min with cold Go caches on 2 cores)"
	t0=$SECONDS
	if ! GOBIN="$tmp" GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local \
		nice -n 19 go install -p "${EVC_GO_JOBS:-2}" -trimpath \
		"github.com/minio/minio@$EVC_MINIO_VERSION" >"$tmp/build.log" 2>&1; then
		cat "$tmp/build.log" >&2
		rm -rf "$tmp"
		evc_die "go install github.com/minio/minio@$EVC_MINIO_VERSION failed"
	fi
	echo "$((SECONDS - t0))" >"$tmp/build-seconds"
	rm -rf "$dir"
	mv "$tmp" "$dir" || evc_die "cannot move the MinIO build into $dir"
	chmod 755 "$dir"
	evc_log "MinIO built in $((SECONDS - t0)) s: $dir/minio"
}

# evc_minio_start: start MinIO (single drive) on 127.0.0.1, data in
# $EVC_RUN/minio/data, bucket $EVC_MINIO_BUCKET created, ready when it
# returns.  A first start picks free ports and a fresh secret; a start after
# evc_minio_stop reuses the same ports, credentials and data (that is what
# evc_minio_restart does).  Exports EVC_MINIO_ENDPOINT, EVC_MINIO_KEY,
# EVC_MINIO_SECRET, EVC_MINIO_BUCKET, EVC_MINIO_REGION; the pid is
# EVC_MINIO_PID and is in EVC_PIDS, so evc_stop_all stops it.
evc_minio_start() {
	local dir code t0 deadline
	t0=$(date +%s%N)
	[ -n "${EVC_RUN:-}" ] || evc_die "evc_minio_start needs EVC_RUN (call evc_run_dir first)"
	if [ -n "${EVC_MINIO_PID:-}" ]; then
		kill -0 "$EVC_MINIO_PID" 2>/dev/null && evc_die "MinIO is already running (pid $EVC_MINIO_PID)"
		EVC_MINIO_PID="" # stopped by evc_stop_all
	fi
	# A new run dir (evc_stop_all, then evc_run_dir again) is a new server:
	# new ports, and a new secret unless the caller chose one.
	if [ -n "${EVC_MINIO_RUN:-}" ] && [ "$EVC_MINIO_RUN" != "$EVC_RUN" ]; then
		EVC_MINIO_PORT="" EVC_MINIO_CONSOLE_PORT=""
		[ "${EVC_MINIO_SECRET_MADE:-}" = 1 ] && EVC_MINIO_SECRET=""
	fi
	EVC_MINIO_RUN=$EVC_RUN
	evc_minio_build
	dir="$EVC_RUN/minio"
	mkdir -p "$dir/data" "$dir/certs" "$dir/config"
	: "${EVC_MINIO_PORT:=$(evc_free_port)}"
	while [ -z "${EVC_MINIO_CONSOLE_PORT:-}" ] || [ "$EVC_MINIO_CONSOLE_PORT" = "$EVC_MINIO_PORT" ]; do
		EVC_MINIO_CONSOLE_PORT=$(evc_free_port) || evc_die "no free port for MinIO's console"
	done
	[ -n "$EVC_MINIO_PORT" ] && [ -n "$EVC_MINIO_CONSOLE_PORT" ] || evc_die "no free port for MinIO"
	: "${EVC_MINIO_KEY:=evc-minio}"
	if [ -z "${EVC_MINIO_SECRET:-}" ]; then
		EVC_MINIO_SECRET=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
		EVC_MINIO_SECRET_MADE=1
	fi
	: "${EVC_MINIO_BUCKET:=evc-test}"
	: "${EVC_MINIO_REGION:=us-east-1}"
	EVC_MINIO_ENDPOINT="http://127.0.0.1:$EVC_MINIO_PORT"
	export EVC_MINIO_ENDPOINT EVC_MINIO_KEY EVC_MINIO_SECRET EVC_MINIO_BUCKET EVC_MINIO_REGION

	# Only our settings: no inherited MINIO_* variable, no ~/.minio (certs
	# there would turn TLS on), no update check, no call home, no console.
	env $(env | sed -n 's/^\(MINIO_[A-Za-z0-9_]*\)=.*/-u \1/p') \
		HOME="$dir/config" \
		MINIO_ROOT_USER="$EVC_MINIO_KEY" MINIO_ROOT_PASSWORD="$EVC_MINIO_SECRET" \
		MINIO_REGION="$EVC_MINIO_REGION" \
		MINIO_UPDATE=off MINIO_CALLHOME_ENABLE=off MINIO_BROWSER=off MINIO_CI_CD=1 \
		"$EVC_MINIO_BIN" server --certs-dir "$dir/certs" \
		--address "127.0.0.1:$EVC_MINIO_PORT" --console-address "127.0.0.1:$EVC_MINIO_CONSOLE_PORT" \
		"$dir/data" </dev/null >>"$EVC_RUN/minio.log" 2>&1 &
	EVC_MINIO_PID=$!
	EVC_PIDS+=("$EVC_MINIO_PID")

	deadline=$((SECONDS + ${EVC_MINIO_TIMEOUT:-60}))
	until curl -sf -o /dev/null --max-time 2 "$EVC_MINIO_ENDPOINT/minio/health/ready"; do
		kill -0 "$EVC_MINIO_PID" 2>/dev/null || {
			tail -n 20 "$EVC_RUN/minio.log" >&2
			EVC_MINIO_PID=""
			evc_die "MinIO exited at start; see $EVC_RUN/minio.log"
		}
		[ $SECONDS -ge $deadline ] && {
			tail -n 20 "$EVC_RUN/minio.log" >&2
			evc_die "MinIO not ready after ${EVC_MINIO_TIMEOUT:-60} s; see $EVC_RUN/minio.log"
		}
		sleep 0.1
	done
	# PUT Bucket: 200 the first time, 409 BucketAlreadyOwnedByYou after a restart.
	code=$(curl -s -o "$dir/mkbucket.xml" -w '%{http_code}' --max-time 10 -X PUT \
		--aws-sigv4 "aws:amz:$EVC_MINIO_REGION:s3" --user "$EVC_MINIO_KEY:$EVC_MINIO_SECRET" \
		"$EVC_MINIO_ENDPOINT/$EVC_MINIO_BUCKET")
	case "$code" in
	200 | 409) ;;
	*) evc_die "MinIO: creating bucket $EVC_MINIO_BUCKET gave HTTP $code: $(cat "$dir/mkbucket.xml")" ;;
	esac
	evc_log "MinIO at $EVC_MINIO_ENDPOINT (bucket $EVC_MINIO_BUCKET, key $EVC_MINIO_KEY), ready in $((($(date +%s%N) - t0) / 1000000)) ms"
}

# evc_minio_stop [-9]: stop MinIO (SIGTERM, then SIGKILL after 15 s; with -9,
# SIGKILL at once) and wait until its port is free.  Ports, credentials and
# data stay, for a later evc_minio_start.
evc_minio_stop() {
	local pid=${EVC_MINIO_PID:-} sig=TERM i p keep=()
	[ -n "$pid" ] || return 0
	[ "${1:-}" = -9 ] && sig=KILL
	# stderr off for the lot: bash reports a job that died of a signal
	# ("Killed") on its own stderr when it reaps it.
	{
		kill -s "$sig" "$pid"
		for i in $(seq 1 150); do
			kill -0 "$pid" || break
			sleep 0.1
		done
		kill -0 "$pid" && kill -9 "$pid"
		wait "$pid"
	} 2>/dev/null
	for p in "${EVC_PIDS[@]}"; do
		[ "$p" = "$pid" ] || keep+=("$p")
	done
	EVC_PIDS=("${keep[@]}")
	EVC_MINIO_PID=""
	evc_wait_for 15 bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$EVC_MINIO_PORT)" ||
		evc_die "MinIO's port $EVC_MINIO_PORT is still taken after it stopped"
}

# evc_minio_restart [-9]: stop (gracefully, or SIGKILL with -9) and start
# again on the same port, credentials and data dir.
evc_minio_restart() {
	evc_minio_stop "$@"
	evc_minio_start
}

# evc_pyclients_install: a virtualenv with MinIO's Python client and boto3,
# pinned by test/minio/requirements.txt, from PyPI, cached in
# $EVC_CACHE/pyclients-<hash of requirements.txt and the base python>;
# exports EVC_PY, its python.  The base is Debian's /usr/bin/python3 where
# there is one (EVC_PY_BASE to choose): a python under /root (pyenv) could not
# be run by the postgres user, and COPY ... FROM PROGRAM runs as postgres.
evc_pyclients_install() {
	local req="$EVC_MINIO_DIR/requirements.txt" base hash venv
	base=${EVC_PY_BASE:-}
	[ -n "$base" ] || { [ -x /usr/bin/python3 ] && base=/usr/bin/python3; } || base=$(command -v python3) ||
		evc_die "no python3 for the Python S3 clients"
	hash=$({ cat "$req"; echo "$base"; "$base" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-12)
	venv="$EVC_CACHE/pyclients-$hash"
	if [ ! -f "$venv/.complete" ]; then
		mkdir -p "$EVC_CACHE" || evc_die "cannot create $EVC_CACHE"
		# One install at a time (see evc_minio_build); a second caller
		# waits, then finds it complete.
		(
			flock 9
			[ -f "$venv/.complete" ] && exit 0
			evc_log "installing the Python S3 clients (minio, boto3) into $venv"
			rm -rf "$venv"
			(umask 022 && "$base" -m venv "$venv") >/dev/null ||
				evc_die "$base -m venv failed (Debian: apt-get install python3-venv)"
			(umask 022 && nice "$venv/bin/python" -m pip install -q --disable-pip-version-check \
				--require-virtualenv -r "$req") || { rm -rf "$venv"; evc_die "pip install -r $req failed"; }
			touch "$venv/.complete"
		) 9>"$EVC_CACHE/.${venv##*/}.lock" || exit 1
	fi
	EVC_PY="$venv/bin/python"
	export EVC_PY
}
