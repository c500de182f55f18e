#!/usr/bin/env bash
# Benchmark: WikiText-2 evaluation tokens/s of llm-prune next to Hugging Face transformers (float32, CPU),
# on the same machine in the same run, for stories260K (seqlen 512) and a random TinyLlama-1.1B-shaped
# checkpoint (seqlen 2048; made by scripts/make_bench_checkpoint.py into bench-data/, not committed).
# Usage: scripts/bench_eval.sh [windows-small] [windows-large]    Needs a python with torch, transformers and
# safetensors: PYTHON=<venv>/bin/python (default: python3). SHARED (default ../shared) is the data folder.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SHARED=${SHARED:-../shared}
WS=${1:-100}; WL=${2:-2}
WIKI=$SHARED/text/wikitext-2-raw/wiki.test.raw
make -s build >/dev/null
[ -f bench-data/tinyllama-random/config.json ] || $PY scripts/make_bench_checkpoint.py
row() { # name seqlen windows model
  local ours theirs
  ours=$(.build/release/llm-prune eval --model "$4" --data-file "$WIKI" --seqlen "$2" --max-windows "$3" --batch-size 1 --json --quiet)
  theirs=$($PY scripts/bench_transformers_eval.py --model "$4" --eval-file "$WIKI" --seqlen "$2" --windows "$3")
  $PY - "$1" "$ours" "$theirs" <<'PYEOF'
import json, sys
name, o, t = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"| {name} | {o['seqlen']} | {o['windows']} | {o['tokens_per_second']:.0f} | {t['tokens_per_second']:.0f} | "
      f"{o['tokens_per_second']/t['tokens_per_second']:.2f}x | {o['peak_memory_bytes']/2**20:.0f} MiB | {t['peak_rss_bytes']/2**20:.0f} MiB |"
      f" ppl {o['perplexity']:.4f} vs {t.get('perplexity', float('nan')):.4f} |")
PYEOF
}
echo "| model | seqlen | windows | llm-prune tokens/s | transformers tokens/s | ratio | llm-prune peak RSS | transformers peak RSS | check |"
echo "|---|---|---|---|---|---|---|---|---|"
row stories260K 512 "$WS" "$SHARED/models/stories260K"
row tinyllama-random-bf16 2048 "$WL" bench-data/tinyllama-random
