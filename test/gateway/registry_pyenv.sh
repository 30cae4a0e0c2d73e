#!/usr/bin/env bash
# test/gateway/registry_pyenv.sh: print the path of a python that has the
# packages of the gateway's registry and operations tests
# (registry_requirements.txt beside this file), installing them from PyPI
# into a virtualenv the first time.  Idempotent and cached, as
# test/wire/pyenv.sh: the venv is $EVC_CACHE/gwreg-<hash of the
# requirements and the base python>, or under the caller's home when the
# cache is not writable.  The base is Debian's /usr/bin/python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
req="$here/registry_requirements.txt"
base=${EVC_PY_BASE:-/usr/bin/python3}
[ -x "$base" ] || base=$(command -v python3) || { echo "registry_pyenv.sh: no python3" >&2; exit 1; }
hash=$({ cat "$req"; echo "$base"; "$base" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-12)
name="gwreg-$hash"
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
		echo "registry_pyenv.sh: installing $(grep -c '==' "$req") pinned packages into $venv" >&2
		rm -rf "$venv"
		(umask 022 && "$base" -m venv "$venv") >/dev/null ||
			{ echo "registry_pyenv.sh: $base -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
		(umask 022 && nice "$venv/bin/python" -m pip install -q --disable-pip-version-check \
			--require-virtualenv -r "$req") >&2 || { rm -rf "$venv"; echo "registry_pyenv.sh: pip install -r $req failed" >&2; exit 1; }
		touch "$venv/.complete"
	fi
fi
echo "$venv/bin/python"
