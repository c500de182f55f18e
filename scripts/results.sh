#!/usr/bin/env bash
# Produces the rows of docs/RESULTS.md: WikiText-2 perplexity of each method and pattern on a shared model,
# calibrated with 128 x seqlen tokens of wiki.valid.tokens (seed 0), evaluated on wiki.test.raw.
# Usage: scripts/results.sh MODEL SEQLEN "METHODS" "PATTERNS" [extra prune flags...]
#   e.g. scripts/results.sh stories260K 512 "magnitude wanda sparsegpt" "0.5 2:4 4:8"
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
model=$1; seqlen=$2; methods=$3; patterns=$4; shift 4
bin=${BIN:-.build/release/llm-prune}
for method in $methods; do
  for pattern in $patterns; do
    cmd="llm-prune prune --model $SHARED/models/$model --method $method --sparsity $pattern --calibration-file $SHARED/text/wikitext-2/wiki.valid.tokens --calibration-format text --nsamples 128 --seqlen $seqlen --eval-dataset wikitext2 --eval-file $SHARED/text/wikitext-2-raw/wiki.test.raw --eval-seqlen $seqlen $* --json"
    out=$($bin ${cmd#llm-prune } --quiet)
    python3 - "$model" "$method" "$pattern" "$out" "$cmd" <<'PYEOF'
import json, sys
model, method, pattern, out, cmd = sys.argv[1:]
o = json.loads(out)
print(f"| {model} | {method} | {pattern} | {o['perplexity']:.4f} | {o['achieved_sparsity']:.4f} | {o['prune_seconds']:.1f} | `{cmd}` |", flush=True)
PYEOF
  done
done
