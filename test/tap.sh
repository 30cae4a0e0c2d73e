# test/tap.sh: TAP helpers for the shell test scripts that run against the
# harness's cluster (test/minio/*.sh, test/kafka/flows.sh).  Sourced, not run.
#
#   tap RC DESCRIPTION [DIAG]    one "ok N" / "not ok N" line (RC 0 is ok);
#                                DIAG is printed as "# " lines on failure
#   q SQL                        one statement on evc_test, unaligned
#   wait_sql SECONDS QUERY [FN]  until QUERY (run by FN, default q) returns t
#
# The counters n and fails are the caller's; a script ends with
# [ $fails -eq 0 ].
n=0
fails=0

tap() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		[ -n "${3:-}" ] && echo "$3" | head -20 | sed 's/^/# /'
		# A "# TODO" test is a known bug (TAP): shown, not a failure.
		case "$2" in *"# TODO"*) ;; *) fails=$((fails + 1)) ;; esac
	fi
}

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d evc_test -c "$1"; }

wait_sql() {
	local deadline=$((SECONDS + $1)) f=${3:-q}
	until [ "$($f "$2" 2>/dev/null)" = t ]; do
		[ $SECONDS -ge $deadline ] && return 1
		sleep 0.2
	done
}
