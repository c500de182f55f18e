#!/usr/bin/env bash
# A long fuzz campaign against the llm-prune binary: seeded corrupt safetensors, config.json,
# tokenizer.json, shard indexes, calibration and evaluation files and flag values (Tests/FuzzTests),
# each run as a subprocess under an address-space limit. Prints the counts by outcome
# (ok, error, trap, hang, leftover, bad-message, memory) overall and per format, with the first cases of
# every bad outcome; exits non-zero if any case ended in anything but ok or a one-line error.
#
# Usage: scripts/fuzz_campaign.sh [cases (5000)] [seed (20261201)] [parallel workers (2)] [first case (0)]
# A failing case is reproduced by its seed and index: FUZZ_SEED=<seed> FUZZ_FIRST_CASE=<index> FUZZ_CLI_CASES=1.
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-5000}
seed=${2:-20261201}
workers=${3:-2}
first=${4:-0}
swift build -c release --build-tests 2>&1 | grep -E "error|Compiling|Build" | tail -3
log=$(mktemp)
set +e
FUZZ_CLI_CASES=$cases FUZZ_SEED=$seed FUZZ_WORKERS=$workers FUZZ_FIRST_CASE=$first \
    swift test -c release --skip-build --filter 'FuzzTests/commandLineCases' >"$log" 2>&1
status=$?
set -e
grep -E '^(fuzz:|  )' "$log" || tail -20 "$log"
grep -E 'Test run with' "$log" | tail -1 || true
rm -f "$log"
exit $status
