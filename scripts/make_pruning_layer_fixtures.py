#!/usr/bin/env python3
"""Fixtures for the Pruning module's tests: per-layer masks and weights, and whole-model runs.

Writes Fixtures/pruning/layer-<case>.safetensors for two layer shapes: "wide" W (64, 172), whose width 172
leaves a partial group of 4 columns for M = 8 and a partial SparseGPT block, and "tall" W (172, 64). The
selection, Wanda score and SparseGPT code are imported from scripts/reference_prune.py (the project's
PyTorch reference), so the fixtures test the Swift code against that one implementation.

Tensors in each file (float32 unless noted):
  W                        (out, in)   the dense weight
  X                        (tokens, in) the calibration inputs (a few columns are exactly zero: dead features)
  xnorm                    (in,)       Wanda's ||X_j||_2 (float64 sum of squares, sqrt, then float32)
  magnitude.<tag>          U8          packbits(kept.reshape(-1), bitorder=little), 1 = kept
  wanda.<tag>              U8          the same for Wanda
  sparsegpt.<tag>          (out, in)   SparseGPT's pruned and updated weight
<tag> is the pattern with ':' replaced by 'of' (0.5, 2of4, ...). Metadata: the patterns, the SparseGPT
block size and damping, and the reference's tie counts per mask.

Whole-model fixtures Fixtures/pruning/stories260K-<method>-<tag>.safetensors: reference_prune.py's own
--out files (packbits keep-masks of all 35 linears, block-0 weights for SparseGPT) for the first 16 rows of
shared/calibration/stories260K-wikitext2valid-128x512-seed0.safetensors at seqlen 512, without evaluation.

Usage: $PYTHON scripts/make_pruning_layer_fixtures.py [--out Fixtures/pruning]
reference_prune.py is looked up next to this script, then in $REFERENCE_SCRIPTS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
if os.environ.get("REFERENCE_SCRIPTS"):
    sys.path.insert(0, os.environ["REFERENCE_SCRIPTS"])
import reference_prune  # noqa: E402
from reference_prune import packbits_kept, parse_pattern, select_pruned, sparsegpt_layer  # noqa: E402

MASK_PATTERNS = ["0.5", "0.7", "2:4", "4:8", "2:8"]
SPARSEGPT_PATTERNS = ["0.5", "0.7", "2:4", "4:8"]
PERCDAMP = 0.01
MODEL_RUNS = [("magnitude", "0.5"), ("wanda", "0.5"), ("wanda", "4:8"), ("sparsegpt", "0.5"), ("sparsegpt", "2:4")]
MODEL_SAMPLES = 16


def tag(p: str) -> str:
    return p.replace(":", "of")


def make_inputs(gen: torch.Generator, tokens: int, cols: int, dead: list[int]) -> torch.Tensor:
    """Correlated activations with uneven feature scales and a few large-magnitude outlier features, the
    structure that makes Wanda's and SparseGPT's choices differ from magnitude's."""
    z = torch.randn(tokens, cols, generator=gen)
    mix = torch.eye(cols) + 0.3 * torch.randn(cols, cols, generator=gen) / cols ** 0.5
    scale = torch.exp(0.8 * torch.randn(cols, generator=gen))
    outliers = torch.randperm(cols, generator=gen)[:3]
    scale[outliers] *= 8
    x = (z @ mix) * scale
    x[:, dead] = 0
    return x.float().contiguous()


def make_case(name: str, rows: int, cols: int, tokens: int, blocksize: int, seed: int) -> tuple[dict, dict]:
    gen = torch.Generator().manual_seed(seed)
    W = (torch.randn(rows, cols, generator=gen) / cols ** 0.5).float()
    X = make_inputs(gen, tokens, cols, dead=[3, cols - 5])
    Xd = X.double()
    xtx = Xd.T @ Xd
    xnorm = (Xd * Xd).sum(0).sqrt().float()
    tensors = {"W": W.numpy(), "X": X.numpy(), "xnorm": xnorm.numpy()}
    ties = {}
    for p in MASK_PATTERNS:
        pat = parse_pattern(p)
        pruned, t = select_pruned(W.abs(), pat, per_matrix=True)
        tensors[f"magnitude.{tag(p)}"] = packbits_kept(~pruned)
        ties[f"magnitude.{tag(p)}"] = t.as_dict()
        pruned, t = select_pruned(W.abs() * xnorm[None, :], pat)
        tensors[f"wanda.{tag(p)}"] = packbits_kept(~pruned)
        ties[f"wanda.{tag(p)}"] = t.as_dict()
    for p in SPARSEGPT_PATTERNS:
        Wn, t = sparsegpt_layer(W, xtx, tokens, parse_pattern(p), blocksize, PERCDAMP)
        tensors[f"sparsegpt.{tag(p)}"] = Wn.numpy()
        ties[f"sparsegpt.{tag(p)}"] = t.as_dict()
    meta = {
        "case": name,
        "mask_patterns": json.dumps(MASK_PATTERNS),
        "sparsegpt_patterns": json.dumps(SPARSEGPT_PATTERNS),
        "blocksize": str(blocksize),
        "percdamp": str(PERCDAMP),
        "ties": json.dumps(ties),
        "versions": json.dumps({"torch": torch.__version__}),
    }
    return {k: np.ascontiguousarray(v) for k, v in tensors.items()}, meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "..", "Fixtures", "pruning"))
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared"))
    ap.add_argument("--skip-model", action="store_true", help="only the per-layer fixtures")
    args = ap.parse_args()
    torch.manual_seed(0)
    os.makedirs(args.out, exist_ok=True)
    for name, rows, cols, tokens, blocksize, seed in [("wide", 64, 172, 320, 128, 1),
                                                      ("tall", 172, 64, 300, 32, 2)]:
        tensors, meta = make_case(name, rows, cols, tokens, blocksize, seed)
        path = os.path.join(args.out, f"layer-{name}.safetensors")
        save_file(tensors, path, metadata=meta)
        print(f"wrote {path} ({os.path.getsize(path)} bytes); ties {meta['ties']}", file=sys.stderr)
    if args.skip_model:
        return
    shared = os.path.abspath(args.shared)
    for method, pattern in MODEL_RUNS:
        path = os.path.join(args.out, f"stories260K-{method}-{tag(pattern)}.safetensors")
        reference_prune.main([
            "--method", method, "--sparsity", pattern, "--model", os.path.join(shared, "models", "stories260K"),
            "--nsamples", str(MODEL_SAMPLES), "--seqlen", "512", "--seed", "0", "--eval-file", "",
            "--calibration-tokens",
            os.path.join(shared, "calibration", "stories260K-wikitext2valid-128x512-seed0.safetensors"),
            "--out", path])


if __name__ == "__main__":
    main()
