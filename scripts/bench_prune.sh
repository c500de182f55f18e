#!/usr/bin/env bash
# Benchmark: wall time and peak memory of pruning with llm-prune next to the PyTorch reference
# (scripts/reference_prune.py through scripts/bench_reference_prune.py), same machine, same run, same
# settings: a random TinyLlama-1.1B-shaped checkpoint cut to LAYERS blocks (scripts/make_bench_checkpoint.py),
# NSAMPLES x SEQLEN calibration tokens of WikiText-2 validation, 2:4.
# Usage: scripts/bench_prune.sh [methods] [layers] [nsamples] [seqlen]     PYTHON=<venv>/bin/python with torch
# (default python3); SHARED (default ../shared) is the data folder.
# MODEL="$HF_MODEL" (any HF folder, e.g. out/smollm2-hf from scripts/convert_gguf_with_transformers.py) benchmarks
# that checkpoint instead; layers must then be its block count.
# CAL=ids.safetensors (int input_ids (n, seqlen), e.g. reference_prune.py --save-calibration) gives both sides the
# same calibration ids; without it each side draws its own seeded windows of the text (same shapes, other ids).
# OURS="--compute-dtype bf16" adds options to llm-prune's prune.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SHARED=${SHARED:-../shared}
METHODS=${1:-"magnitude wanda sparsegpt wanda++-rgs wanda++-ro wanda++"}
LAYERS=${2:-2}; NS=${3:-8}; SL=${4:-256}
MODEL=${MODEL:-bench-data/tinyllama-random-${LAYERS}layers}
make -s build >/dev/null
[ -f "$MODEL/config.json" ] || $PY scripts/make_bench_checkpoint.py --layers "$LAYERS" --shards 1 --out "$MODEL"
if [ -n "${CAL:-}" ]; then ourcal=(--calibration-file "$CAL" --calibration-format tokens); refcal=(--calibration-tokens "$CAL")
else ourcal=(--calibration-file "$SHARED/text/wikitext-2/wiki.valid.tokens" --calibration-format text); refcal=(); fi
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); llm-prune options: ${OURS:-none}; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
echo "| method | llm-prune s | reference s | speed-up | llm-prune peak RSS | reference peak RSS |"
echo "|---|---|---|---|---|---|"
for m in $METHODS; do
  ours=$(.build/release/llm-prune prune --model "$MODEL" --method "$m" --sparsity 2:4 \
      "${ourcal[@]}" \
      --nsamples "$NS" --seqlen "$SL" $([[ $m == wanda++* ]] && echo --ro-samples $(( NS < 32 ? NS : 32 ))) --json --quiet ${OURS:-})
  theirs=$($PY scripts/bench_reference_prune.py --model "$MODEL" --methods "$m" --layers "$LAYERS" \
      --nsamples "$NS" --seqlen "$SL" --sparsity 2:4 "${refcal[@]}" | tail -1)
  $PY - "$m" "$ours" "$theirs" <<'PYEOF'
import json, sys
m, o, t = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"| {m} | {o['prune_seconds']:.1f} | {t['seconds']:.1f} | {t['seconds']/max(o['prune_seconds'],1e-9):.2f}x | "
      f"{o['peak_memory_bytes']/2**20:.0f} MiB | {t['peak_rss_bytes']/2**20:.0f} MiB |", flush=True)
PYEOF
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
