#!/usr/bin/env python3
"""Benchmark baseline: time reference_prune.py's pruning of a checkpoint, method by method.

Each method runs in its own process (so that ru_maxrss is that method's peak) with reduced settings
(--layers, --nsamples, --seqlen) and no evaluation, and one JSON line per method is printed:
{method, seconds, peak_rss_bytes, ...}. `seconds` is the pruning time (calibration embedding, statistics,
pruning, block outputs), excluding model loading and calibration tokenization; peak_rss_bytes covers the
whole child process, loading included. Calibration: nsamples seeded windows of the LLaMA-2-tokenized
WikiText-2 validation text (reference_prune.py's plain-text sampler).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ALL = ["magnitude", "wanda", "sparsegpt", "wanda++-rgs", "wanda++-ro", "wanda++"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(REPO, "bench-data", "tinyllama-random"))
    ap.add_argument("--methods", default=",".join(ALL), help="comma-separated subset of " + ",".join(ALL))
    ap.add_argument("--sparsity", default="2:4")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--nsamples", type=int, default=8)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--ro-samples", type=int, default=None, help="default min(32, nsamples)")
    ap.add_argument("--ro-rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--calibration-tokens", default=None,
                    help="safetensors with int input_ids (n, seqlen): the same calibration ids as the other side")
    args = ap.parse_args()
    ro_samples = args.ro_samples or min(32, args.nsamples)
    for method in args.methods.split(","):
        cmd = [sys.executable, os.path.join(HERE, "reference_prune.py"), "--method", method,
               "--sparsity", args.sparsity, "--model", args.model, "--layers", str(args.layers),
               "--nsamples", str(args.nsamples), "--seqlen", str(args.seqlen), "--eval-file", "",
               "--ro-samples", str(ro_samples), "--ro-rounds", str(args.ro_rounds)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.calibration_tokens:
            cmd += ["--calibration-tokens", args.calibration_tokens]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            raise SystemExit(f"{method}: reference_prune.py exited with {proc.returncode}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps({
            "method": method, "seconds": r["prune_seconds"], "peak_rss_bytes": r["peak_rss_bytes"],
            "block_seconds": r["block_seconds"], "load_seconds": r["load_seconds"],
            "sparsity": args.sparsity, "layers": args.layers, "nsamples": args.nsamples,
            "seqlen": args.seqlen, "ro_samples": ro_samples, "ro_rounds": args.ro_rounds,
            "sparsity_achieved": r["sparsity_achieved"],
        }), flush=True)


if __name__ == "__main__":
    main()
