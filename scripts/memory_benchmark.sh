#!/usr/bin/env bash
# Prints the memory estimate of `llm-prune prune` next to the measured peak RSS, one run per line.
# Usage: scripts/memory_benchmark.sh [tiny|smollm2|all]   (default tiny; smollm2 needs the transformers folder
# of SmolLM2-135M made by scripts/convert_gguf_with_transformers.py: SMOLLM2 or HF_MODEL, default out/smollm2-hf).
# Every run writes --output to a scratch folder (mktemp), removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release/llm-prune}
SHARED=${SHARED:-../shared}
SMOLLM2=${SMOLLM2:-${HF_MODEL:-out/smollm2-hf}}
WHICH=${1:-tiny}
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
VALID="$SHARED/text/wikitext-2/wiki.valid.tokens"
TEST="$SHARED/text/wikitext-2-raw/wiki.test.raw"
printf "%-12s %-10s %-9s %-5s %11s %11s %7s\n" model method samples eval "estimate" "peak RSS" "ratio"
run() {   # model-label model-dir method nsamples seqlen eval(yes/no) [extra...]; TEST=... for another eval text
  local label=$1 model=$2 method=$3 n=$4 t=$5 ev=$6; shift 6
  local evalargs=()
  [ "$ev" = yes ] && evalargs=(--eval-dataset wikitext2 --eval-file "$TEST" --eval-seqlen "$t")
  local out="$SCRATCH/out-$RANDOM"
  local json
  json=$("$BIN" prune --model "$model" --method "$method" --sparsity 2:4 --calibration-file "$VALID" \
    --calibration-format text --nsamples "$n" --seqlen "$t" "${evalargs[@]}" --output "$out" --quiet --json "$@")
  rm -rf "$out"
  python3 - "$label" "$method" "$n x $t" "$ev" "$json" <<'PY'
import json, sys
label, method, samples, ev, line = sys.argv[1:]
d = json.loads(line)
e, p = d["memory_estimate_bytes"], d["peak_memory_bytes"]
print(f"{label:<12} {method:<10} {samples:<9} {ev:<5} {e / 2**20:8.1f} MiB {p / 2**20:8.1f} MiB {e / p:7.2f}")
PY
}
if [ "$WHICH" = tiny ] || [ "$WHICH" = all ]; then
  M="$SHARED/models/stories260K"
  for method in magnitude wanda sparsegpt wanda++; do run stories260K "$M" $method 128 512 no; done
  run stories260K "$M" wanda 128 512 yes
  run stories260K "$M" wanda++ 128 512 yes
fi
if [ "$WHICH" = smollm2 ] || [ "$WHICH" = all ]; then
  [ -f "$SMOLLM2/config.json" ] || { echo "no $SMOLLM2/config.json" >&2; exit 1; }
  for method in magnitude wanda sparsegpt; do run SmolLM2-135M "$SMOLLM2" $method 8 256 no; done
  # A short evaluation: the first 100 kB of WikiText-2 test (the full file takes long on 2 cores).
  head -c 100000 "$TEST" > "$SCRATCH/test-100k.raw"
  TEST="$SCRATCH/test-100k.raw" run SmolLM2-135M "$SMOLLM2" wanda 8 256 yes
  run SmolLM2-135M "$SMOLLM2" wanda++ 2 256 no --ro-rounds 1 --ro-samples 2
fi
