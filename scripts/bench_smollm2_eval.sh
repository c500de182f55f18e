#!/usr/bin/env bash
# Benchmark: WikiText-2 evaluation tokens/s of llm-prune next to transformers (float32, CPU) on a real
# model at seqlen 2048, in PAIRS back-to-back pairs (ours, then theirs), printing each pair's ratio and the
# min/median/max. Default model: $HF_MODEL, the SmolLM2-135M folder scripts/convert_gguf_with_transformers.py
# makes from the shared GGUF (default out/smollm2-hf).
# Usage: scripts/bench_smollm2_eval.sh [model-dir] [windows] [pairs]   PYTHON=<venv>/bin/python with torch
# (default python3); SHARED (default ../shared) is the data folder.
# OURS="--compute-dtype bf16" adds options to llm-prune's eval, THEIRS="--dtype bfloat16" to the transformers side.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SHARED=${SHARED:-../shared}
MODEL=${1:-${HF_MODEL:-out/smollm2-hf}}; W=${2:-2}; PAIRS=${3:-3}
WIKI=$SHARED/text/wikitext-2-raw/wiki.test.raw
[ -x .build/release/llm-prune ] || swift build -c release >/dev/null
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); llm-prune options: ${OURS:-none}; transformers options: ${THEIRS:-none}; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
echo "| pair | llm-prune tokens/s | transformers tokens/s | ratio | llm-prune ppl | transformers ppl |"
echo "|---|---|---|---|---|---|"
ratios=()
for p in $(seq 1 "$PAIRS"); do
  ours=$(.build/release/llm-prune eval --model "$MODEL" --data-file "$WIKI" --seqlen 2048 --max-windows "$W" --batch-size 1 --json --quiet ${OURS:-})
  theirs=$($PY scripts/bench_transformers_eval.py --model "$MODEL" --eval-file "$WIKI" --seqlen 2048 --windows "$W" ${THEIRS:-})
  r=$($PY - "$p" "$ours" "$theirs" <<'PYEOF'
import json, sys
p, o, t = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
r = o['tokens_per_second'] / t['tokens_per_second']
print(f"| {p} | {o['tokens_per_second']:.0f} | {t['tokens_per_second']:.0f} | {r:.2f}x | {o['perplexity']:.4f} | {t.get('perplexity', float('nan')):.4f} |", file=sys.stderr)
print(r)
PYEOF
)
  ratios+=("$r")
done
printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {printf "ratio min %.2fx median %.2fx max %.2fx over %d pairs\n", a[1], a[int((NR+1)/2)], a[NR], NR}'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
