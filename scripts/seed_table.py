#!/usr/bin/env python3
"""Mean and spread over calibration seeds of the runs scripts/results_seeds.sh wrote under OUT.

Usage: scripts/seed_table.py OUT [BASELINE_LABEL]
Prints one row per (label, pattern): perplexity mean ± sample standard deviation, min–max, the seeds, and,
with BASELINE_LABEL, the change of the mean against that label's mean at the same pattern.
"""
import json, pathlib, statistics, sys

out = pathlib.Path(sys.argv[1])
baseline = sys.argv[2] if len(sys.argv) > 2 else None
rows = {}
for e in sorted(out.glob("*/seed*/*.eval.json")):
    label, seed = e.parent.parent.name, int(e.parent.name[4:])
    pattern = e.name[:-len(".eval.json")].rsplit("-", 1)[1].replace("of", ":")
    rows.setdefault((label, pattern), {})[seed] = json.loads(e.read_text())["perplexity"]
means = {k: statistics.mean(v.values()) for k, v in rows.items()}
print("| method | pattern | perplexity mean ± sd | min – max | seeds |" + (f" vs {baseline} |" if baseline else ""))
print("|---|---|---|---|---|" + ("---|" if baseline else ""))
for (label, pattern), v in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    xs = [v[s] for s in sorted(v)]
    sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
    line = f"| {label} | {pattern} | {statistics.mean(xs):.2f} ± {sd:.2f} | {min(xs):.2f} – {max(xs):.2f} | {','.join(map(str, sorted(v)))} |"
    if baseline and (baseline, pattern) in means:
        line += f" {100 * (means[(label, pattern)] / means[(baseline, pattern)] - 1):+.1f}% |"
    print(line)
