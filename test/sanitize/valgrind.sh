#!/usr/bin/env bash
# test/sanitize/valgrind.sh: the relay and a consumer under valgrind's
# memcheck (docs/testing.md, "Valgrind").  Not part of make test: it takes
# several minutes.
#
# PostgreSQL cannot exec one background worker under a tool, so the whole
# postmaster runs under valgrind, started by pg_ctl through a wrapper (-p);
# every backend and worker is a fork of it, and valgrind follows forks.  The
# programs the server runs (COPY ... FROM PROGRAM) are not traced.  One relay
# suite and one consumer suite run against it, then the server stops, and
# every error valgrind reported is read: an error whose stack has a frame of
# ours (a function evc_*, a file of src/, or the library) is a failure;
# PostgreSQL's own known reports are suppressed (valgrind.supp).  The suites'
# own assertions are shown, but their time limits were set for a server
# running at full speed, so only whether each suite ran is counted.
#
#   test/sanitize/valgrind.sh [SUITE.sql ...]
set -u
. "$(dirname "$0")/../lib.sh"
evc_require_root "$0" "$@"

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=("$EVC_ROOT/test/suites/relay_prepared.sql" "$EVC_ROOT/test/suites/consume_sinks.sql")
command -v valgrind >/dev/null || evc_die "valgrind is not installed (apt-get install valgrind)"

n=0
failed=0
tap() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi
}

evc_install_deps
evc_build_install
evc_run_dir
evc_kafka_start
evc_s3_start
evc_cluster_start "max_prepared_transactions = 4"
evc_cluster_stop

bindir=$(pg_config --bindir)
vg=$EVC_RUN/valgrind
mkdir -p "$vg" && chown postgres:postgres "$vg"
cp "$EVC_ROOT/test/sanitize/valgrind.supp" "$EVC_RUN/bin/"
cat >"$EVC_RUN/bin/postgres-valgrind" <<EOF
#!/bin/sh
exec valgrind --tool=memcheck --trace-children=no --error-limit=no --num-callers=40 \\
	--leak-check=no --suppressions=$EVC_RUN/bin/valgrind.supp --log-file=$vg/vg.%p \\
	$bindir/postgres "\$@"
EOF
chmod 755 "$EVC_RUN/bin/postgres-valgrind"
t0=$SECONDS
runuser -u postgres -- "$bindir/pg_ctl" -D "$EVC_PGDATA" -p "$EVC_RUN/bin/postgres-valgrind" \
	-l "$EVC_RUN/postgresql.log" -w -t 600 start >/dev/null
tap $? "the server started under valgrind ($((SECONDS - t0)) s)"
psql -X -q -d evc_test -c "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS evcollector" >/dev/null
# Which workers ran, and as which processes: polled all along the suites.
(while :; do
	psql -X -A -t -F ' ' -d evc_test -c "SELECT kind, pid FROM evc.workers WHERE pid IS NOT NULL" 2>/dev/null
	sleep 1
done) >"$EVC_RUN/workers.txt" &
poller=$!

for f in "${suites[@]}"; do
	PGOPTIONS="-c client_min_messages=warning" psql -X -q -d evc_test \
		-c "CREATE EXTENSION IF NOT EXISTS pgtap; CREATE EXTENSION IF NOT EXISTS evcollector" >/dev/null
	t0=$SECONDS
	out=$(timeout 1200 pg_prove -v -d evc_test "$f" 2>&1)
	okn=$(echo "$out" | grep -cE '^ *ok [0-9]+')
	notok=$(echo "$out" | grep -cE '^ *not ok [0-9]+')
	echo "$out" | grep -E '^ *not ok' | sed 's/^ */# suite: /'
	tap $((okn == 0)) "$(basename "$f") ran under valgrind in $((SECONDS - t0)) s: $okn ok, $notok not ok"
done

kill "$poller"
runuser -u postgres -- "$bindir/pg_ctl" -D "$EVC_PGDATA" -m fast -w -t 300 stop >/dev/null 2>&1 ||
	runuser -u postgres -- "$bindir/pg_ctl" -D "$EVC_PGDATA" -m immediate stop >/dev/null 2>&1

# The relay and a consumer really ran under valgrind: each has a log.
for kind in relay consumer; do
	logged=0
	for pid in $(awk -v k="$kind" '$1 == k { print $2 }' "$EVC_RUN/workers.txt" | sort -u); do
		[ -s "$vg/vg.$pid" ] && logged=$((logged + 1))
	done
	tap $((logged == 0)) "$kind processes under valgrind: $logged"
done

# One error is one block of a log, from its heading to the blank line.
ours=$(cd "$EVC_ROOT/src" && ls */*.c | xargs -n1 basename | sed 's/\./\\./' | paste -sd'|')
logs=$(ls "$vg"/vg.* 2>/dev/null | wc -l)
errors=$(cat "$vg"/vg.* 2>/dev/null | grep -cE '^==[0-9]+== ERROR SUMMARY: [1-9]')
awk -v ours="$ours" '
	function flush() {
		if (blk ~ /(at|by) 0x[0-9A-Fa-f]+: / &&
			(blk ~ /: evc_/ || blk ~ /evcollector\.so/ || blk ~ ("\\((" ours "):[0-9]+\\)")))
		{
			count++
			printf "%s", blk > "/dev/stderr"
			print "--" > "/dev/stderr"
		}
		blk = ""
	}
	/^==[0-9]+== *$/ { flush(); next }
	/^==[0-9]+== / { line = $0; sub(/^==[0-9]+== /, "", line); blk = blk line "\n"; next }
	END { flush(); print count + 0 }
' "$vg"/vg.* 2>"$EVC_RUN/valgrind-ours.txt" >"$EVC_RUN/valgrind-count.txt"
mine=$(cat "$EVC_RUN/valgrind-count.txt")
[ "$mine" -gt 0 ] && sed 's/^/# /' "$EVC_RUN/valgrind-ours.txt" | head -200
tap $((mine > 0)) "no memcheck error with a frame of ours ($mine of ours; $logs process logs, $errors with errors of any kind)"
echo "1..$n"
echo "$((n - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
