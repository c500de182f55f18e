#!/usr/bin/env bash
# Runs one method over several calibration seeds with scripts/results_smollm2.sh (32 x 512 calibration,
# 8 windows of 2048, float32 folders removed after evaluation), one folder per seed:
#   OUT/LABEL/seedS/<method>-<pattern>.{prune,eval}.json and OUT/LABEL.rows (the table rows).
# Usage: scripts/results_seeds.sh OUT LABEL METHOD "PATTERNS" "SEEDS" [extra prune flags...]
#   e.g. scripts/results_seeds.sh out/runs/seeds wanda++-auto wanda++ "2:4 4:8" "0 1 2" --alpha auto
# MODEL selects another GGUF (as for results_smollm2.sh). scripts/seed_table.py OUT prints mean and spread.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1; label=$2; method=$3; patterns=$4; seeds=$5; shift 5
for s in $seeds; do
  KEEP=0 scripts/results_smollm2.sh "$out/$label/seed$s" "$method" "$patterns" 32 512 8 --seed "$s" "$@" | tee -a "$out/$label.rows"
done
