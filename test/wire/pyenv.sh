#!/usr/bin/env bash
# test/wire/pyenv.sh [REQUIREMENTS NAME]: print the path of a python that
# has the packages of REQUIREMENTS (default: the wire-format checker's,
# requirements.txt beside this file; NAME wire), installing them from PyPI
# into a virtualenv the first time.  Idempotent and cached: later calls
# print the same path at once.  test/fuzz/pyenv.sh and
# test/gateway/registry_pyenv.sh, test/gateway/lib.sh and test/live/lib.sh
# call it with their own pins.
#
# The venv lives in $EVC_CACHE (/var/cache/evcollector) as
# wire-<hash of requirements.txt and the base python>.  The suite calls this
# as the server's OS user (postgres), who cannot write there; it then uses
# a venv root made there before, or makes its own under its home
# (~/.cache/evcollector).  The base is Debian's /usr/bin/python3: a python
# under /root (pyenv) cannot be run by postgres.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
req=${1:-$here/requirements.txt}
prefix=${2:-wire}
base=${EVC_PY_BASE:-/usr/bin/python3}
[ -x "$base" ] || base=$(command -v python3) || { echo "pyenv.sh: no python3" >&2; exit 1; }
hash=$({ cat "$req"; echo "$base"; "$base" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-12)
name="$prefix-$hash"
cache=${EVC_CACHE:-/var/cache/evcollector}

if [ ! -f "$cache/$name/.complete" ]; then
	if ! { mkdir -p "$cache" && [ -w "$cache" ]; } 2>/dev/null; then
		home=$(getent passwd "$(id -un)" | cut -d: -f6)
		cache="${home:-$HOME}/.cache/evcollector"
		mkdir -p "$cache"
	fi
fi
venv="$cache/$name"
if [ ! -f "$venv/.complete" ]; then
	# One installer at a time; a second waits and then finds it done.
	exec 9>"$cache/.$name.lock"
	flock 9
	if [ ! -f "$venv/.complete" ]; then
		echo "pyenv.sh: installing $(grep -c '==' "$req") pinned packages into $venv" >&2
		rm -rf "$venv"
		(umask 022 && "$base" -m venv "$venv") >/dev/null ||
			{ echo "pyenv.sh: $base -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
		(umask 022 && nice "$venv/bin/python" -m pip install -q --disable-pip-version-check \
			--require-virtualenv -r "$req") >&2 || { rm -rf "$venv"; echo "pyenv.sh: pip install -r $req failed" >&2; exit 1; }
		touch "$venv/.complete"
	fi
fi
echo "$venv/bin/python"
