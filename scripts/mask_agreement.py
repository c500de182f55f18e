#!/usr/bin/env python3
"""Mask agreement of two pruned checkpoints of the same model (Hugging Face folders, any dtype).

For every 2-D weight present in both: the fraction of entries that are zero in both or non-zero in both.
Prints per layer type and overall, as JSON. Used for the bf16-vs-float32 fidelity rows of docs/PERFORMANCE.md:
    scripts/mask_agreement.py RUN_A RUN_B
Needs safetensors and torch (the throwaway virtualenv, never a runtime dependency).
"""
import json
import sys
from collections import defaultdict
from pathlib import Path

from safetensors import safe_open


def tensors(folder):
    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as h:
            for k in h.keys():
                if k.endswith(".weight") and ".layers." in k and h.get_slice(k).get_shape().__len__() == 2:
                    out[k] = f
    return out


def main(a, b):
    ta, tb = tensors(a), tensors(b)
    names = sorted(set(ta) & set(tb))
    if not names:
        sys.exit(f"error: no common 2-D layer weights in {a} and {b}")
    same, total = defaultdict(int), defaultdict(int)
    for k in names:
        with safe_open(str(ta[k]), framework="pt") as h:
            x = h.get_tensor(k) == 0
        with safe_open(str(tb[k]), framework="pt") as h:
            y = h.get_tensor(k) == 0
        kind = k.split(".")[-2]
        same[kind] += int((x == y).sum())
        total[kind] += x.numel()
    result = {kind: same[kind] / total[kind] for kind in sorted(total)}
    result["all"] = sum(same.values()) / sum(total.values())
    result["matrices"] = len(names)
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
