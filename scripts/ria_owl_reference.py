#!/usr/bin/env python3
"""PyTorch reference of RIA and OWL as their authors' code computes them, and the fixtures of their tests.

RIA (`biomedical-cybernetics/Relative-importance-and-activation-pruning`, lib/prune.py `prune_ria`), transcribed:
  score = (|W| / colsum + |W| / rowsum) * sqrt(s) ** a, s_j = mean of x_j^2 over the calibration tokens;
  unstructured: one comparison group over the whole matrix (`--per_outneuron`: per row); N:M: per row, per
  group of M columns; channel reallocation (`--reallocation`, importance "sum"): column sums of the score,
  sorted ascending, cut into M chunks, chunk k fills slot k of every group, every second chunk reversed; the
  mask is chosen on the permuted score and mapped back. The linear-sum-assignment refinement (`--lsa`) is
  not transcribed.
OWL (`luuyin/OWL`, lib/prune_all.py `prune_wanda_outlier` and `check_outlier_mean`), transcribed: per dense
  block, LOD = 100 * count(m > M * mean(m)) / numel(m) over the Wanda scores of its seven linears; the ratios
  with numpy exactly as the code writes them.

Where this differs from the public code, on purpose (the project's rules, as in reference_prune.py):
  1. Counts: unstructured prunes exactly floor(numel * s) (per row: floor(in * s)); RIA's `<= threshold`
     prunes one more. N:M keeps N per group of M (RIA's code prunes N: the same for 2:4 and 4:8); a last
     partial group of w < M columns prunes max(0, w - N).
  2. Ties: stable ascending sort, lower index pruned first (reference_prune.select_pruned).
  3. Sums in float64: colsum, rowsum and the column importance (float64, rounded to float32 for colsum and
     rowsum); the activation term sqrt(s)^a in float64 rounded to float32; a term |W| over a zero sum
     counts as 0 (the code would divide 0 by 0). OWL's mean and comparison in float64 over the float32
     scores. s and the Wanda norm use the token count, not the code's sample count: a constant scale,
     which changes no RIA or OWL decision.
  4. Reallocation with a width that is not a multiple of M (the code's slicing fails there): chunk k holds
     as many columns as slot k has positions; for multiples of M these are the code's int(in * k / M) cuts
     (asserted).
  5. The reallocation is folded into the model on down_proj only (gate/up rows and down columns permuted
     together: the same function, down N:M as stored); the other linears are pruned unpermuted.

Model plumbing (transformers LlamaForCausalLM in float32, block calls, float64 input statistics from one pass
of the dense block) is reference_prune.py's. Calibration: the first --nsamples rows of the shared token-id
file at --seqlen, so the Swift tests feed the same ids.

Usage: $PYTHON scripts/ria_owl_reference.py [--out Fixtures] [--nsamples 16] [--seqlen 512]
Writes Fixtures/ria/stories260K-ria-<tag>.safetensors and Fixtures/owl/stories260K-owl.safetensors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference_prune as rp  # noqa: E402
from reference_prune import (LINEARS, TieStats, block_forward_all, collect_inputs, linear_of,  # noqa: E402
                             make_context, packbits_kept, parse_pattern, select_pruned)

# (tag, pattern, per_row, permute)
RIA_RUNS = [("50", "0.5", False, False), ("50-per-row", "0.5", True, False), ("2of4", "2:4", False, False),
            ("2of4-permute", "2:4", False, True), ("4of8-permute", "4:8", False, True)]
# (target sparsity, lambda, M): the defaults at 70 %, and a second setting.
OWL_SETTINGS = [(0.7, 0.08, 5.0), (0.5, 0.2, 3.0)]
# A near tie of OWL's outlier count: a score within this relative gap of the threshold.
NEAR_RTOL = 1e-6


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def ria_score(W: torch.Tensor, sumsq: torch.Tensor, count: int, a: float) -> torch.Tensor:
    """prune_ria's W_metric for "ria" (see the module docstring, point 3, for the float64 sums)."""
    absW = W.abs()
    colsum = absW.double().sum(0).float()
    rowsum = absW.double().sum(1).float()
    act = ((sumsq / count).sqrt() ** a).float()
    zero = torch.zeros((), dtype=torch.float32)
    col_term = torch.where(colsum[None, :] == 0, zero, absW / colsum[None, :])
    row_term = torch.where(rowsum[:, None] == 0, zero, absW / rowsum[:, None])
    return (col_term + row_term) * act[None, :]


def ria_reallocation(score: torch.Tensor, m: int) -> torch.Tensor:
    """RIA's heuristic channel reallocation (importance "sum"): index[p] = the original column at position p."""
    cols = score.shape[1]
    sorted_idx = torch.sort(score.double().sum(0), stable=True)[1]
    index = torch.zeros(cols, dtype=torch.long)
    start = 0
    for ii in range(1, m + 1):   # the code's loop variable: chunk ii - 1 fills slot ii - 1
        slot = index[ii - 1::m]
        if cols % m == 0:
            assert start == int(cols * (ii - 1) / m)
        chunk = sorted_idx[start:start + slot.numel()]
        start += slot.numel()
        index[ii - 1::m] = chunk if ii % 2 == 1 else chunk.flip(0)
    assert sorted(index.tolist()) == list(range(cols))
    return index


@torch.no_grad()
def prune_ria_block(ctx, block, xs, prefix, pattern, per_row, permute, a, record):
    """All seven statistics from one pass of the dense block, then q, k, v, o, gate, up, down in order;
    with permute and N:M, down's mask in reallocated order and the order folded into gate/up/down."""
    stats = collect_inputs(ctx, block, xs, LINEARS, want_hessian=False)
    ties = {}
    order = None
    for name in LINEARS:
        W = linear_of(block, name).weight.data
        score = ria_score(W, stats[name]["sumsq"], stats[name]["count"], a)
        if record is not None:
            record[f"score.{prefix}.{name}"] = score.numpy().copy()
        if permute and pattern.is_nm and name == "mlp.down_proj":
            order = ria_reallocation(score, pattern.m)
            pruned_perm, t = select_pruned(score[:, order], pattern)
            pruned = torch.zeros_like(pruned_perm)
            pruned[:, order] = pruned_perm
        else:
            pruned, t = select_pruned(score, pattern, per_matrix=not (per_row or pattern.is_nm))
        W[pruned] = 0
        ties[f"{prefix}.{name}.weight"] = t.as_dict()
    if order is not None:
        check = xs[:2].clone()
        before = block_forward_all(ctx, block, check)
        mlp = block.mlp
        mlp.down_proj.weight.data = mlp.down_proj.weight.data[:, order].contiguous()
        mlp.gate_proj.weight.data = mlp.gate_proj.weight.data[order].contiguous()
        mlp.up_proj.weight.data = mlp.up_proj.weight.data[order].contiguous()
        after = block_forward_all(ctx, block, check)
        diff = float((after - before).abs().max() / before.abs().max())
        log(f"{prefix}: fold changes the block output by {diff:.3g} relative")
        assert diff < 1e-5
    return ties, order


def load_calibration(path: str, nsamples: int, seqlen: int) -> torch.Tensor:
    with safe_open(path, "pt") as f:
        ids = f.get_tensor("input_ids")
    return ids[:nsamples, :seqlen].long()


def ria_run(model_dir, calib, pattern_text, per_row, permute, a):
    model = rp.load_model(model_dir, None)
    pattern = parse_pattern(pattern_text)
    ctx = make_context(model, calib.shape[1])
    with torch.no_grad():
        xs = model.model.embed_tokens(calib)
    tensors, ties, orders = {}, {}, {}
    for l, block in enumerate(model.model.layers):
        prefix = f"model.layers.{l}"
        record = {} if l == 0 else None
        t, order = prune_ria_block(ctx, block, xs, prefix, pattern, per_row, permute, a, record)
        ties.update(t)
        if order is not None:
            tensors[f"order.{prefix}"] = order.numpy().astype(np.int64)
            orders[l] = order
        if record:
            for k in ("self_attn.q_proj", "mlp.down_proj"):
                tensors[f"score.{prefix}.{k}"] = record[f"score.{prefix}.{k}"]
        for name in LINEARS:
            tensors[f"{prefix}.{name}.weight"] = packbits_kept(linear_of(block, name).weight.data != 0)
        xs = block_forward_all(ctx, block, xs)
    return tensors, ties


@torch.no_grad()
def owl_lods(model_dir, calib, ms):
    """LOD per dense block for each M in ms, and the smallest relative gap of any score to a threshold."""
    model = rp.load_model(model_dir, None)
    ctx = make_context(model, calib.shape[1])
    xs = model.model.embed_tokens(calib)
    lods = {m: [] for m in ms}
    gap = float("inf")
    for block in model.model.layers:
        stats = collect_inputs(ctx, block, xs, LINEARS, want_hessian=False)
        metric = []
        for name in LINEARS:
            W = linear_of(block, name).weight.data
            xnorm = stats[name]["sumsq"].sqrt().float()
            metric.append((W.abs() * xnorm[None, :]).flatten())
        w = torch.cat(metric).double()
        for m in ms:
            threshold = w.mean() * m      # check_outlier_mean: torch.mean(W) * threshold
            lods[m].append(float((w > threshold).sum().item()) / w.numel() * 100)
            gap = min(gap, float(((w - threshold).abs() / threshold).min()))
        xs = block_forward_all(ctx, block, xs)   # OWL's pass: the dense block's outputs
    return lods, gap


def owl_ratios(lod: list, sparsity: float, lam: float) -> list:
    """prune_wanda_outlier's adjustment, verbatim, then sparsity = 1 - density."""
    all_layer_ratio = np.array(lod)
    all_layer_ratio = ((all_layer_ratio - all_layer_ratio.min()) * (1 / (all_layer_ratio.max() - all_layer_ratio.min()) * lam * 2))
    all_layer_ratio = all_layer_ratio - np.mean(all_layer_ratio) + (1 - sparsity)
    return [float(1 - d) for d in all_layer_ratio]


@torch.no_grad()
def wanda_with_ratios(model_dir, calib, ratios):
    """reference_prune's Wanda with block l pruned at ratios[l] (OWL then Wanda): packbits masks."""
    model = rp.load_model(model_dir, None)
    ctx = make_context(model, calib.shape[1])
    xs = model.model.embed_tokens(calib)
    tensors, ties = {}, TieStats()
    for l, block in enumerate(model.model.layers):
        prefix = f"model.layers.{l}"
        for r in rp.prune_wanda(ctx, block, xs, prefix, parse_pattern(repr(ratios[l])), record_xnorm=False):
            tensors[r.name] = packbits_kept(r.kept)
            ties.add(r.ties)
        xs = block_forward_all(ctx, block, xs)
    return tensors, ties


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "..", "Fixtures"))
    ap.add_argument("--model", default=os.path.join(rp.SHARED, "models/stories260K"))
    ap.add_argument("--calibration-tokens",
                    default=os.path.join(rp.SHARED, "calibration/stories260K-wikitext2valid-128x512-seed0.safetensors"))
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--ria-a", type=float, default=0.5)
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    calib = load_calibration(args.calibration_tokens, args.nsamples, args.seqlen)
    common = {"nsamples": str(args.nsamples), "seqlen": str(args.seqlen),
              "calibration": os.path.basename(args.calibration_tokens),
              "versions": json.dumps({"torch": torch.__version__,
                                      "transformers": __import__("transformers").__version__})}

    ria_dir = os.path.join(args.out, "ria")
    os.makedirs(ria_dir, exist_ok=True)
    for tag, pattern, per_row, permute in RIA_RUNS:
        tensors, ties = ria_run(args.model, calib, pattern, per_row, permute, args.ria_a)
        total = TieStats()
        for t in ties.values():
            total.add(TieStats(**t))
        meta = dict(common, method="ria", pattern=pattern, per_row=json.dumps(per_row), permute=json.dumps(permute),
                    a=repr(args.ria_a), ties=json.dumps(total.as_dict()),
                    per_layer_ties=json.dumps({k: v for k, v in ties.items() if any(v.values())}),
                    format="<linear>.weight: U8 packbits(kept.reshape(-1), bitorder=little) of the weight as stored "
                           "(after the fold), 1 = kept; order.<block>: I64 down_proj's column order; "
                           "score.model.layers.0.<linear>: F32 block-0 scores")
        path = os.path.join(ria_dir, f"stories260K-ria-{tag}.safetensors")
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path, metadata=meta)
        log(f"wrote {path}: ties {total.as_dict()}")

    owl_dir = os.path.join(args.out, "owl")
    os.makedirs(owl_dir, exist_ok=True)
    lods, gap = owl_lods(args.model, calib, sorted({m for _, _, m in OWL_SETTINGS}))
    settings = []
    for sparsity, lam, m in OWL_SETTINGS:
        settings.append({"sparsity": sparsity, "lambda": lam, "m": m, "lod": lods[m],
                         "ratios": owl_ratios(lods[m], sparsity, lam)})
        log(f"owl s={sparsity} lambda={lam} M={m}: LOD {lods[m]} -> ratios {settings[-1]['ratios']}")
    tensors, ties = wanda_with_ratios(args.model, calib, settings[0]["ratios"])
    meta = dict(common, settings=json.dumps(settings), min_relative_gap_to_threshold=repr(gap),
                wanda_ties=json.dumps(ties.as_dict()),
                format="settings: per (sparsity, lambda, M) the dense LODs (percent) and per-block sparsities; "
                       "<linear>.weight: U8 packbits kept mask of Wanda at the first setting's ratios")
    path = os.path.join(owl_dir, "stories260K-owl.safetensors")
    save_file(tensors, path, metadata=meta)
    log(f"wrote {path}: smallest gap to an outlier threshold {gap:.3g}, Wanda ties {ties.as_dict()}")


if __name__ == "__main__":
    main()
