#!/usr/bin/env bash
# Produces the SmolLM2-135M rows of docs/RESULTS.md (and, with MODEL set, another GGUF's: Gemma 3 270M's with
# MODEL=models/gemma-3-270m/gemma-3-270m-q4_k_m.gguf): every method and pattern pruned from the GGUF,
# calibrated on NSAMPLES x SEQLEN tokens of wiki.valid.tokens (seed 0), written as float32 Hugging Face
# folders under OUT, then evaluated on the first WINDOWS windows of 2048 of WikiText-2 test
# (WINDOWS=all for the whole text). One table row per run, with prune wall time and peak RSS.
# Usage: scripts/results_smollm2.sh OUT "METHODS" "PATTERNS" [NSAMPLES] [SEQLEN] [WINDOWS] [extra prune flags...]
#   e.g. scripts/results_smollm2.sh out/runs/smollm2 "wanda sparsegpt" "2:4 0.5" 32 512 16
# Checkpoints are kept (the zero-shot and fine-tuning tables read them); KEEP=0 removes each after its row
# (its pruning.json stays beside it as <tag>.pruning.json).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
out=$1; methods=$2; patterns=$3; ns=${4:-32}; sl=${5:-512}; windows=${6:-16}; shift $(( $# < 6 ? $# : 6 ))
bin=${BIN:-.build/release/llm-prune}
gguf=${MODEL:-$SHARED/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}
mw=(); [ "$windows" = all ] || mw=(--max-windows "$windows")
mkdir -p "$out"
for pattern in $patterns; do
  for method in $methods; do
    tag=$method-${pattern/:/of}
    dir=$out/$tag
    [ -d "$dir" ] && { echo "skip $tag: $dir exists" >&2; continue; }
    cmd="llm-prune prune --model $gguf --method $method --sparsity $pattern --calibration-file $SHARED/text/wikitext-2/wiki.valid.tokens --calibration-format text --nsamples $ns --seqlen $sl --dtype f32 $* --output $dir --json"
    start=$(date +%s.%N)
    prune=$($bin ${cmd#llm-prune } --quiet)
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    ecmd="llm-prune eval --model $dir --dataset wikitext2 --data-file $SHARED/text/wikitext-2-raw/wiki.test.raw --seqlen 2048 ${mw[*]} --json"
    eval_=$($bin ${ecmd#llm-prune } --quiet)
    echo "$prune" > "$dir.prune.json"; echo "$eval_" > "$dir.eval.json"; cp "$dir/pruning.json" "$dir.pruning.json"
    python3 - "$method" "$pattern" "$prune" "$eval_" "$wall" "$cmd" "$ecmd" <<'PYEOF'
import json, sys
method, pattern, p, e, wall, cmd, ecmd = sys.argv[1:]
p, e = json.loads(p), json.loads(e)
print(f"| {method} | {pattern} | {e['perplexity']:.4f} | {p['achieved_sparsity']:.4f} | {p['prune_seconds']:.0f} | "
      f"{float(wall):.0f} | {p['peak_memory_bytes']/2**20:.0f} MiB | `{cmd}` then `{ecmd}` |", flush=True)
PYEOF
    [ "${KEEP:-1}" = 1 ] || rm -rf "$dir"
  done
done
