#!/usr/bin/env bash
# test/checks/layout.sh: the tree keeps the shape docs/ and src/*/README.md
# describe.  Run from the repository root after a build; prints TAP.
#
#  - the built library exports only evc_* symbols and PostgreSQL's own;
#  - src/ holds no C file at its top level but the module entry point;
#  - every subsystem folder has its README.md;
#  - a folder's private header (*_int.h) is included only from that folder;
#  - the Linux-only calls and thread starts go through src/util/port.h, and
#    no compiler atomic builtin is used (pg_atomic_* is the portable way);
#  - README.md stays under 25 KB (the reference lives in docs/).
set -u
cd "$(dirname "$0")/../.."
n=0
fails=0
check() {
	# check DESCRIPTION OUTPUT: ok when OUTPUT is empty.
	n=$((n + 1))
	if [ -z "$2" ]; then
		echo "ok $n - $1"
	else
		echo "not ok $n - $1"
		echo "$2" | head -20 | sed 's/^/# /'
		fails=$((fails + 1))
	fi
}

echo "1..7"

if [ -f evcollector.so ]; then
	# A SANITIZE=1 build adds ASan's ODR indicator of each global, __odr_asan.<name>.
	bad=$(nm -D --defined-only evcollector.so | awk '{print $3}' | sed 's/^__odr_asan\.//' |
		grep -Ev '^(evc_|pg_finfo_evc_)' | grep -Exv '_PG_init|Pg_magic_func')
else
	bad="evcollector.so is not built"
fi
check "the library exports only evc_* symbols and PostgreSQL's own" "$bad"

check "src/ has no C file at its top level but src/evcollector.c" \
	"$(find src -maxdepth 1 -name '*.[ch]' ! -name evcollector.c)"

missing=""
for d in src/*/; do
	[ -f "$d/README.md" ] || missing+="${d}README.md is missing"$'\n'
done
check "every subsystem folder has a README.md" "${missing%$'\n'}"

leaks=""
for f in $(git ls-files 'src/*.c' 'src/*.h'); do
	dir=$(dirname "$f")
	while read -r inc; do
		[ -z "$inc" ] && continue
		case "$inc" in
			*/*) owner="src/${inc%/*}" ;;
			*) owner="$dir" ;;
		esac
		[ -f "$owner/$(basename "$inc")" ] || owner=none
		[ "$owner" = "$dir" ] || leaks+="$f includes $inc"$'\n'
	done < <(sed -n 's/^#include "\(.*_int\.h\)".*/\1/p' "$f")
done
check "private headers (*_int.h) are included only inside their folder" "${leaks%$'\n'}"

check "pipe2, pthread_timedjoin_np, mallopt and pthread_create only in src/util/port.h" \
	"$(git grep -nE '\b(pipe2|pthread_timedjoin_np|mallopt|pthread_create)\(' -- 'src/*.c' 'src/*.h' ':!src/util/port.h')"

check "no compiler atomic builtins (use pg_atomic_*)" \
	"$(git grep -nE '__(atomic|sync)_[a-z_]+\(' -- 'src/*.c' 'src/*.h')"

size=$(wc -c <README.md)
check "README.md is under 25 KB (it is $size bytes)" \
	"$([ "$size" -lt 25600 ] || echo "README.md has $size bytes")"

[ $fails -eq 0 ]
