#!/usr/bin/env bash
# test/fuzz/run.sh: runs the libFuzzer targets built by `make fuzz-build`.
#
#   test/fuzz/run.sh regress [TARGET..]     each target once over its corpus;
#                                           TAP, one line per target
#   test/fuzz/run.sh fuzz [TARGET..]        each target for FUZZ_TIME seconds,
#                                           one at a time, with libFuzzer's
#                                           own summary for each
#   test/fuzz/run.sh differential           the validator against Python's
#                                           jsonschema, FUZZ_CASES cases
#
# New inputs that fuzzing finds go to .build/fuzz/work/<target>, crashes to
# .build/fuzz/artifacts; the committed corpus is only read.  A crash that
# was fixed goes into test/fuzz/corpus/<target>/ as a regression input.
set -u
cd "$(dirname "$0")/../.."
B=.build/fuzz
mode=${1:?usage: run.sh regress|fuzz|differential [TARGET..]}
shift
# no target named: every test/fuzz/fuzz_<name>.c
if [ $# -eq 0 ] && [ "$mode" != differential ]; then
	set -- $(ls test/fuzz/fuzz_*.c | sed 's|test/fuzz/fuzz_\(.*\)\.c|\1|')
fi

case "$mode" in
regress)
	n=0
	fail=0
	echo "1..$#"
	for t in "$@"; do
		n=$((n + 1))
		out=$("$B/bin/$t" -runs=0 -timeout=20 "test/fuzz/corpus/$t" 2>&1)
		if [ $? -eq 0 ]; then
			echo "ok $n - fuzz target $t over its corpus ($(ls "test/fuzz/corpus/$t" | wc -l) inputs)"
		else
			echo "not ok $n - fuzz target $t over its corpus"
			echo "$out" | grep -E 'ERROR|FUZZ|SUMMARY|#[0-9]+ ' | head -20 | sed 's/^/# /'
			fail=1
		fi
	done
	exit $fail
	;;
fuzz)
	mkdir -p "$B/artifacts"
	rc=0
	for t in "$@"; do
		mkdir -p "$B/work/$t"
		echo "==> fuzzing $t for ${FUZZ_TIME:-60} s"
		# libFuzzer's own summary: its last status line and final stats
		${FUZZ_NICE:-nice -n 19} "$B/bin/$t" -max_total_time="${FUZZ_TIME:-60}" \
			-print_final_stats=1 -timeout=20 -artifact_prefix="$B/artifacts/$t-" \
			"$B/work/$t" "test/fuzz/corpus/$t" >"$B/work/$t.log" 2>&1
		r=$?
		grep -E '^(#[0-9]+\s+(DONE|INITED)|Done [0-9]+ runs|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))' \
			"$B/work/$t.log"
		if [ $r -ne 0 ]; then
			rc=1
			grep -E 'ERROR:|FUZZ (FINDING|HARNESS)|SUMMARY:|Test unit written' "$B/work/$t.log" | head -10
		fi
	done
	exit $rc
	;;
differential)
	exec test/fuzz/differential.sh
	;;
*)
	echo "unknown mode \"$mode\": use regress, fuzz or differential" >&2
	exit 2
	;;
esac
