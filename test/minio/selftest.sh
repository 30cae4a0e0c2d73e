#!/usr/bin/env bash
# test/minio/selftest.sh: proves the MinIO harness of test/minio/minio.sh.
#
# Starts MinIO on loopback (building it once into the cache), and checks with
# curl --aws-sigv4, MinIO's Python client and boto3 that signatures are
# checked, that awkward keys round-trip, and that restarts keep the objects.
# Prints TAP (ok N - ... / not ok N - ...), then the plan and one closing
# line "minio: N passed, N failed".  Exit code 0 when all passed.
set -u

EVC_SELFTEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
source "$EVC_SELFTEST_DIR/../lib.sh"
# shellcheck source=minio.sh
source "$EVC_SELFTEST_DIR/minio.sh"
evc_require_root "$0" "$@"

N=0
PASSED=0
FAILED=0
tap() { # tap OK|FAIL DESCRIPTION [DETAIL]
	N=$((N + 1))
	if [ "$1" = OK ]; then
		PASSED=$((PASSED + 1))
		echo "ok $N - $2"
	else
		FAILED=$((FAILED + 1))
		echo "not ok $N - $2"
		[ -n "${3:-}" ] && printf '#   %s\n' "$3"
	fi
}
check() { # check DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@"; then tap OK "$what"; else tap FAIL "$what"; fi
}
# Python results (PASS ... / FAIL ...: why) as TAP lines.
pytap() {
	local line
	while IFS= read -r line; do
		case "$line" in
		PASS\ *) tap OK "${line#PASS }" ;;
		FAIL\ *) tap FAIL "${line#FAIL }" ;;
		*) echo "# $line" ;;
		esac
	done < <("$EVC_PY" "$EVC_MINIO_DIR/pycheck.py" "$@" 2>&1)
}

# SigV4 signs the path as sent, and the server re-encodes the key it decoded
# (RFC 3986: all but A-Z a-z 0-9 - . _ ~ and the /), so the caller must send
# each key percent-encoded that way, with upper-case hex.
urlkey() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe="/~"))' "$1"; }

S3=() # curl arguments for the right credentials; set once MinIO is up
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
# s3curl OUTFILE CURL-ARGS...: prints the HTTP status.  Like the extension
# (src/storage/storage_s3.c) it sends x-amz-content-sha256, the hash of the
# -T file or of nothing, which SigV4 signs; curl 7.88 does not add it.
# S3_HASH, if set, is sent instead (to send a wrong one).
s3curl() {
	local out=$1 a prev="" hash=$EMPTY_SHA256
	shift
	for a in "$@"; do
		[ "$prev" = -T ] && hash=$(sha "$a")
		prev=$a
	done
	curl -s -o "$out" -w '%{http_code}' --max-time 30 -H "x-amz-content-sha256: ${S3_HASH:-$hash}" "$@"
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
s3code() { sed -n 's:.*<Code>\([^<]*\)</Code>.*:\1:p' "$1"; }

evc_run_dir
W="$EVC_RUN/selftest"
mkdir -p "$W"

t0=$SECONDS
evc_minio_build
build_note="in the cache"
f="$EVC_CACHE/minio-$EVC_MINIO_VERSION/build-seconds"
[ -f "$f" ] && build_note="built $(date -u -r "$f" +%FT%TZ) in $(cat "$f") s"
echo "# MinIO binary $EVC_MINIO_BIN ($build_note), ready in $((SECONDS - t0)) s"
t0=$SECONDS
evc_pyclients_install
echo "# Python clients: $EVC_PY, ready in $((SECONDS - t0)) s"

t0=$SECONDS
evc_minio_start
echo "# MinIO started in $((SECONDS - t0)) s at $EVC_MINIO_ENDPOINT"
tap OK "MinIO listens on $EVC_MINIO_ENDPOINT, bucket $EVC_MINIO_BUCKET exists"
S3=(--aws-sigv4 "aws:amz:$EVC_MINIO_REGION:s3" --user "$EVC_MINIO_KEY:$EVC_MINIO_SECRET")
BAD=(--aws-sigv4 "aws:amz:$EVC_MINIO_REGION:s3" --user "$EVC_MINIO_KEY:$EVC_MINIO_SECRET-wrong")
BADKEY=(--aws-sigv4 "aws:amz:$EVC_MINIO_REGION:s3" --user "nobody:$EVC_MINIO_SECRET")
B="$EVC_MINIO_ENDPOINT/$EVC_MINIO_BUCKET"

# MinIO binds the --address and, always, every loopback address (::1 too,
# for its console), and nothing else: all must be loopback.
listening=$(ss -Hltnp 2>/dev/null | grep "pid=$EVC_MINIO_PID," | awk '{print $4}' | sort -u)
nonloop=$(grep -vE '^(127\.[0-9.]+|\[::1\]):[0-9]+$' <<<"$listening")
tap "$([ -n "$listening" ] && [ -z "$nonloop" ] && echo OK || echo FAIL)" \
	"every socket MinIO listens on is loopback: $(echo $listening)"

# --- PUT and GET, signed -------------------------------------------------
head -c 100000 /dev/urandom >"$W/plain.bin"
code=$(s3curl "$W/put.out" "${S3[@]}" -T "$W/plain.bin" "$B/plain/one.bin")
tap "$([ "$code" = 200 ] && echo OK || echo FAIL)" "curl --aws-sigv4 PUT plain/one.bin: $code" "$(cat "$W/put.out")"
code=$(s3curl "$W/get.bin" "${S3[@]}" "$B/plain/one.bin")
tap "$([ "$code" = 200 ] && cmp -s "$W/get.bin" "$W/plain.bin" && echo OK || echo FAIL)" \
	"curl --aws-sigv4 GET plain/one.bin: $code, same 100000 bytes"

# --- wrong credentials are refused ----------------------------------------
head -c 1000 /dev/urandom >"$W/small.bin"
code=$(s3curl "$W/bad.xml" "${BAD[@]}" -T "$W/small.bin" "$B/plain/bad-secret.bin")
c=$(s3code "$W/bad.xml")
tap "$([ "$code" = 403 ] && [ "$c" = SignatureDoesNotMatch ] && echo OK || echo FAIL)" \
	"PUT with a wrong secret is refused: $code $c" "$(cat "$W/bad.xml")"
code=$(s3curl "$W/bad2.out" "${S3[@]}" "$B/plain/bad-secret.bin")
tap "$([ "$code" = 404 ] && [ "$(s3code "$W/bad2.out")" = NoSuchKey ] && echo OK || echo FAIL)" \
	"the refused PUT stored nothing: GET gives $code $(s3code "$W/bad2.out")"
code=$(s3curl "$W/bad3.xml" "${BAD[@]}" "$B/plain/one.bin")
c=$(s3code "$W/bad3.xml")
tap "$([ "$code" = 403 ] && [ "$c" = SignatureDoesNotMatch ] && echo OK || echo FAIL)" \
	"GET with a wrong secret is refused: $code $c"
code=$(S3_HASH=$(sha "$W/plain.bin") s3curl "$W/badhash.xml" "${S3[@]}" -T "$W/small.bin" "$B/plain/bad-hash.bin")
c=$(s3code "$W/badhash.xml")
tap "$([ "$code" = 400 ] && [ "$c" = XAmzContentSHA256Mismatch ] && echo OK || echo FAIL)" \
	"PUT whose body is not the signed x-amz-content-sha256 is refused: $code $c"
code=$(s3curl "$W/bad4.xml" "${BADKEY[@]}" "$B/plain/one.bin")
c=$(s3code "$W/bad4.xml")
tap "$([ "$code" = 403 ] && [ "$c" = InvalidAccessKeyId ] && echo OK || echo FAIL)" \
	"GET with an unknown access key is refused: $code $c"
code=$(s3curl "$W/anon.xml" "$B/plain/one.bin")
c=$(s3code "$W/anon.xml")
tap "$([ "$code" = 403 ] && [ "$c" = AccessDenied ] && echo OK || echo FAIL)" \
	"an unsigned GET is refused: $code $c"
pytap badsecret minio
pytap badsecret boto3

# --- awkward keys ----------------------------------------------------------
KEYS=("keys/plus+sign.txt"
	"keys/with space.txt"
	"keys/a+b c+d.txt"
	"keys/ünïcødé-ключ-日本語.bin"
	"keys/dir one/sub+dir/é+ü ✓.dat"
	"keys/100% sure~_-.txt")
expected="$W/keys.json"
{
	echo "{"
	i=0
	for k in "${KEYS[@]}"; do
		i=$((i + 1))
		head -c $((1000 + i * 777)) /dev/urandom >"$W/key$i"
		[ $i -gt 1 ] && echo ","
		python3 -c 'import json, sys; print(json.dumps(sys.argv[1]) + ": " + json.dumps(sys.argv[2]), end="")' "$k" "$(sha "$W/key$i")"
	done
	echo
	echo "}"
} >"$expected"
i=0
for k in "${KEYS[@]}"; do
	i=$((i + 1))
	u=$(urlkey "$k")
	code=$(s3curl "$W/kput.out" "${S3[@]}" -T "$W/key$i" "$B/$u")
	tap "$([ "$code" = 200 ] && echo OK || echo FAIL)" "curl PUT '$k' as /$u: $code" "$(cat "$W/kput.out")"
	code=$(s3curl "$W/kget" "${S3[@]}" "$B/$u")
	tap "$([ "$code" = 200 ] && cmp -s "$W/kget" "$W/key$i" && echo OK || echo FAIL)" "curl GET '$k' back: $code, same bytes"
done
pytap check minio keys/ "$expected"
pytap check boto3 keys/ "$expected"

# What happens to an unencoded '+': curl signs the path as written, the
# server decodes '+' as itself and re-encodes it as %2B for the signature.
code=$(s3curl "$W/rawplus.xml" "${S3[@]}" -T "$W/small.bin" "$B/raw/raw+plus.txt")
echo "# an unencoded '+' in the URL: PUT gives $code $(s3code "$W/rawplus.xml")"

# The other way: the Python clients write, curl reads by the encoded name.
head -c 5000 /dev/urandom >"$W/py.bin"
PYKEYS=("py/boto3 a+b é.txt" "py/minio a+b ü.txt")
pytap put boto3 "${PYKEYS[0]}" "$W/py.bin"
pytap put minio "${PYKEYS[1]}" "$W/py.bin"
for k in "${PYKEYS[@]}"; do
	code=$(s3curl "$W/pyget" "${S3[@]}" "$B/$(urlkey "$k")")
	tap "$([ "$code" = 200 ] && cmp -s "$W/pyget" "$W/py.bin" && echo OK || echo FAIL)" \
		"curl GET '$k' (put by a Python client): $code, same bytes"
done

# --- restarts keep the objects ----------------------------------------------
all_back() { # every key, read by curl after a restart
	local i=0 k
	for k in "${KEYS[@]}"; do
		i=$((i + 1))
		[ "$(s3curl "$W/rget" "${S3[@]}" "$B/$(urlkey "$k")")" = 200 ] && cmp -s "$W/rget" "$W/key$i" || return 1
	done
	[ "$(s3curl "$W/rget" "${S3[@]}" "$B/plain/one.bin")" = 200 ] && cmp -s "$W/rget" "$W/plain.bin"
}
port_before=$EVC_MINIO_PORT
t0=$SECONDS
evc_minio_restart
tap "$([ "$EVC_MINIO_PORT" = "$port_before" ] && echo OK || echo FAIL)" \
	"graceful restart in $((SECONDS - t0)) s, same endpoint $EVC_MINIO_ENDPOINT"
check "after the graceful restart, curl reads every object back" all_back
pytap check boto3 keys/ "$expected"

t0=$SECONDS
evc_minio_restart -9
tap "$([ "$EVC_MINIO_PORT" = "$port_before" ] && echo OK || echo FAIL)" \
	"restart after SIGKILL in $((SECONDS - t0)) s, same endpoint $EVC_MINIO_ENDPOINT"
check "after SIGKILL and restart, curl reads every object back" all_back
pytap check minio keys/ "$expected"

# Written just before a SIGKILL: what MinIO acknowledged survives the crash
# of its process, the point of the "restart mid-batch" tests.
for i in $(seq 1 20); do
	s3curl /dev/null "${S3[@]}" -T "$W/small.bin" "$B/batch/obj-$i" >"$W/batch-$i.code"
done
evc_minio_restart -9
ok=0
for i in $(seq 1 20); do
	[ "$(cat "$W/batch-$i.code")" = 200 ] || continue
	[ "$(s3curl "$W/bget" "${S3[@]}" "$B/batch/obj-$i")" = 200 ] && cmp -s "$W/bget" "$W/small.bin" && ok=$((ok + 1))
done
tap "$([ $ok = 20 ] && echo OK || echo FAIL)" "20 PUTs acknowledged just before a SIGKILL: $ok read back after the restart"

# --- everything stops ----------------------------------------------------------
pid=$EVC_MINIO_PID
evc_minio_stop
check "evc_minio_stop stopped MinIO (pid $pid) and freed port $EVC_MINIO_PORT" \
	bash -c "! kill -0 $pid 2>/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/$EVC_MINIO_PORT) 2>/dev/null"

echo "1..$N"
echo "minio: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
