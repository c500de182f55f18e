#!/usr/bin/env bash
# Produces the fine-tuning rows of docs/RESULTS.md: LoRA (the Wanda recipe: q and v, r 8, alpha 16, dropout 0.05,
# lr 1e-4, warmup 5) on each pruned checkpoint, in both modes, STEPS steps of one SEQLEN-token block of
# wiki.valid.tokens, WikiText-2 test perplexity at 2048 on the first WINDOWS windows (all: the whole text)
# before and after. One row per run; the merged checkpoints go to OUT/<name>-lora-<mode>.
# Usage: scripts/results_lora.sh OUT STEPS SEQLEN WINDOWS PRUNED_DIR [PRUNED_DIR ...]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
out=$1; steps=$2; seqlen=$3; windows=$4; shift 4
bin=${BIN:-.build/release/llm-prune}
ew=(); [ "$windows" = all ] || ew=(--eval-windows "$windows")
mkdir -p "$out"
for model in "$@"; do
  for mode in masked plain; do
    dir=$out/$(basename "$model")-lora-$mode
    [ -d "$dir" ] && { echo "skip $dir: exists" >&2; continue; }
    cmd="llm-prune finetune --model $model --train-file $SHARED/text/wikitext-2/wiki.valid.tokens --steps $steps --seqlen $seqlen --lora-mode $mode --eval-dataset wikitext2 --eval-file $SHARED/text/wikitext-2-raw/wiki.test.raw --eval-seqlen 2048 ${ew[*]} --output $dir --json"
    r=$($bin ${cmd#llm-prune } --quiet)
    echo "$r" > "$dir.json"
    python3 - "$model" "$mode" "$r" "$cmd" <<'PYEOF'
import json, sys
model, mode, r, cmd = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
p = lambda k: f"{r[k]:.4f}" if k in r else "–"
after = p("perplexity_merged") if mode == "masked" else f"{p('perplexity_remasked')} (unmerged, dense: {p('perplexity_unmerged')})"
print(f"| {model.rstrip('/').split('/')[-1]} | {mode} | {p('perplexity_before')} | {after} | {r['output_zeros']} / {r['input_zeros']} | "
      f"{r['train_tokens_per_second']:.0f} | {r['seconds']:.0f} | {r['peak_memory_bytes']/2**20:.0f} MiB | `{cmd}` |", flush=True)
PYEOF
  done
done
