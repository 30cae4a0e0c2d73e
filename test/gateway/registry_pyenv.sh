#!/usr/bin/env bash
# test/gateway/registry_pyenv.sh: print the path of a python that has the
# registry and operations tests' clients (registry_requirements.txt beside
# this file), from the cached virtualenv that test/wire/pyenv.sh makes.
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/../wire/pyenv.sh" "$here/registry_requirements.txt" gwreg
