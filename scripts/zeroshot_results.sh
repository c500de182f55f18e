#!/usr/bin/env bash
# Zero-shot rows for docs/RESULTS.md: runs `llm-prune eval --tasks all` on each model folder given and prints
# one Markdown row per model (acc per task, acc_norm in parentheses where lm-eval defines it, the mean acc,
# wall seconds) followed by the exact command.
#   scripts/zeroshot_results.sh LIMIT DIR [DIR ...]        (LIMIT: documents per task, or "all")
# Env: BIN (default .build/release/llm-prune), DATA (default ../shared/data/zeroshot), EXTRA (more eval flags).
set -euo pipefail
limit=$1; shift
BIN=${BIN:-.build/release/llm-prune}
DATA=${DATA:-../shared/data/zeroshot}
tasks="boolq rte hellaswag winogrande arc_easy arc_challenge openbookqa piqa"
header="| model | $(echo $tasks | sed 's/ / | /g; s/hellaswag/hellaswag (approx.)/') | mean acc | seconds |"
echo "$header"
echo "|$(echo "model $tasks mean seconds" | sed 's/[^ ]*/---/g; s/ /|/g')|"
cmds=()
for dir in "$@"; do
  lim=(); [ "$limit" != all ] && lim=(--limit "$limit")
  cmd=("$BIN" eval --model "$dir" --tasks all --data-dir "$DATA" "${lim[@]}" ${EXTRA:-} --json --quiet)
  start=$(date +%s.%N)
  out=$("${cmd[@]}")
  end=$(date +%s.%N)
  python3 - "$dir" "$out" "$start" "$end" $tasks <<'PY'
import json, sys
d, o, s, e = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
cells = []
for t in sys.argv[5:]:
    r = o["zeroshot"][t]
    c = f"{100 * r['acc']:.2f}"
    if "acc_norm" in r:
        c += f" ({100 * r['acc_norm']:.2f})"
    cells.append(c)
print(f"| {d} | " + " | ".join(cells) + f" | {100 * o['zeroshot_mean_acc']:.2f} | {e - s:.0f} |")
PY
  cmds+=("$(printf '%q ' "${cmd[@]}")")
done
echo
for c in "${cmds[@]}"; do echo "    $c"; done
