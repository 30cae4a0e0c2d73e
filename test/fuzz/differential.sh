#!/usr/bin/env bash
# test/fuzz/differential.sh: the validator against Python's jsonschema
# (differential.py), FUZZ_CASES cases from seed FUZZ_SEED.  Prints TAP.
# The fuzz layer of test/run runs the bounded check (3,000 cases, seed 18);
# `make fuzz` runs FUZZ_CASES (20,000 by default) from a new seed each time.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=$(test/fuzz/pyenv.sh)
exec nice -n 19 "$py" test/fuzz/differential.py .build/fuzz/bin/validate_cases \
	--cases "${FUZZ_CASES:-3000}" --seed "${FUZZ_SEED:-18}"
