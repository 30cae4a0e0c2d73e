#!/usr/bin/env bash
# test/fuzz/pyenv.sh: print the path of a python that has the differential
# check's packages (requirements.txt beside this file), from the cached
# virtualenv that test/wire/pyenv.sh makes for a requirements file.
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/../wire/pyenv.sh" "$here/requirements.txt" fuzz
