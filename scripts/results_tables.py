#!/usr/bin/env python3
"""Builds the per-model perplexity tables of docs/RESULTS.md from its "Commands" table (the rows that
scripts/results.sh prints), so the summary tables never disagree with the measured rows.

Usage: python3 scripts/results_tables.py [docs/RESULTS.md] [more-rows.md ...]
Rows in later files replace rows of the same (model, method, sparsity). Prints markdown to stdout.
"""
import sys

MODELS = [("stories260K", 512, 122.3344), ("llama2xs", 256, 226.0163), ("aidreams260K", 128, 246.6669)]
METHODS = ["magnitude", "wanda", "sparsegpt", "wanda++-rgs", "wanda++-ro", "wanda++"]
PATTERNS = ["0.5", "2:4", "4:8"]
HEAD = {"0.5": "50%", "2:4": "2:4", "4:8": "4:8"}


def rows(paths):
    table = {}
    for path in paths:
        for line in open(path, encoding="utf-8"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 4 and cells[0] in dict((m, 0) for m, _, _ in MODELS) and cells[1] in METHODS:
                try:
                    table[(cells[0], cells[1], cells[2])] = float(cells[3])
                except ValueError:
                    pass
    return table


def main():
    paths = sys.argv[1:] or ["docs/RESULTS.md"]
    t = rows(paths)
    for model, seqlen, dense in MODELS:
        print(f"## {model} (seqlen {seqlen}, dense {dense:.4f})\n")
        print("| method | " + " | ".join(HEAD[p] for p in PATTERNS) + " |")
        print("|---|" + "---|" * len(PATTERNS))
        for m in METHODS:
            cells = []
            for p in PATTERNS:
                v = t.get((model, m, p))
                if v is None:
                    cells.append("not run")
                elif m.startswith("wanda++") and (model, "wanda", p) in t:
                    w = t[(model, "wanda", p)]
                    cells.append(f"{v:.2f} ({(v - w) / w * 100:+.1f}% vs Wanda)".replace("+-", "-"))
                else:
                    cells.append(f"{v:.2f}")
            print(f"| {m} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main()
