#!/usr/bin/env python3
"""PyTorch reference of the project's pruning methods, for fixtures and benchmark baselines.

Methods: dense (no pruning), magnitude, wanda, sparsegpt, wanda++-rgs, wanda++-ro, wanda++.
The semantics are those of shared/docs/algorithms.md; where it is silent, those of the public Wanda code
(prune_magnitude / prune_wanda / prune_sparsegpt) and, for Wanda++, of the public reproduction. Every place
where this script deliberately differs from the public code is listed in scripts/README.md.

Model: transformers LlamaForCausalLM in float32 with eager attention, pruned one decoder block at a time
(the spec's shared pipeline). Statistics are accumulated in float64; scores and weights stay float32.
With --dtype float64 every step runs in float64 through this script's own transcription of the block
(transformers keeps RMSNorm, softmax and RoPE in float32 even for a float64 model).

Run `reference_prune.py --help` for the flags. The script prints one JSON line (results and timings) on
stdout at the end; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import resource
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seeded_rng import SeededGenerator  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.normpath(os.path.join(REPO, "..", "shared"))
METHODS = ["dense", "magnitude", "wanda", "sparsegpt", "wanda++-rgs", "wanda++-ro", "wanda++"]
# The seven pruned linears of a LLaMA block, in HF naming, in the order the block consumes them.
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
# Wanda++ stages: the layers of one stage share one input, and each stage's input depends on the
# previous stages' outputs.
STAGES = [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.o_proj"],
          ["mlp.gate_proj", "mlp.up_proj"], ["mlp.down_proj"]]
# A near tie: two scores whose relative gap is at most this; float32 rounding differences between two
# implementations can flip such decisions.
NEAR_TIE_RTOL = 1e-6
# The dtype of weights, activations, scores and the SparseGPT solve: float32, or float64 with --dtype float64.
DT = torch.float32


def tune_malloc() -> None:
    """Keep freed buffers in the heap: without this, glibc returns the large activation buffers to the OS
    after every op and page-faults them back in, which doubled the run time here."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)    # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 << 20)   # M_MMAP_THRESHOLD (its maximum on 64-bit glibc)
    except (OSError, AttributeError):
        pass


tune_malloc()


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------
# Sparsity patterns and selection

@dataclass(frozen=True)
class Pattern:
    """Either an unstructured ratio (`ratio`) or N:M (keep `n` of every `m` consecutive inputs)."""
    ratio: float | None = None
    n: int = 0
    m: int = 0

    @property
    def is_nm(self) -> bool:
        return self.m > 0

    def tag(self) -> str:
        if self.is_nm:
            return f"{self.n}of{self.m}"
        return f"{round(self.ratio * 100):d}"

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" if self.is_nm else f"{self.ratio:g}"


def parse_pattern(s: str) -> Pattern:
    if ":" in s:
        a, b = s.split(":", 1)
        n, m = int(a), int(b)
        if not (0 < n <= m):
            raise ValueError(f"bad N:M pattern {s!r}")
        return Pattern(n=n, m=m)
    r = float(s)
    if not (0.0 <= r < 1.0):
        raise ValueError(f"bad sparsity ratio {s!r}")
    return Pattern(ratio=r)


@dataclass
class TieStats:
    """Decisions made among scores tied with the keep/prune boundary of their comparison group.

    exact_groups / exact_entries: groups whose largest pruned score equals their smallest kept score, and
    the number of entries in them holding that boundary value (their kept/pruned split is arbitrary: this
    script breaks ties by pruning the lower index first). near_groups: groups whose boundary gap is at
    most NEAR_TIE_RTOL relative (exact ties included).
    """
    exact_groups: int = 0
    exact_entries: int = 0
    near_groups: int = 0

    def add(self, other: "TieStats") -> None:
        self.exact_groups += other.exact_groups
        self.exact_entries += other.exact_entries
        self.near_groups += other.near_groups

    def as_dict(self) -> dict:
        return {"exact_groups": self.exact_groups, "exact_entries": self.exact_entries,
                "near_groups": self.near_groups}


def _prune_lowest(groups: torch.Tensor, k: int) -> tuple[torch.Tensor, TieStats]:
    """groups: (G, w) scores. Returns the pruned mask (G, w) with the k lowest of each group pruned,
    ties broken by lower index first (stable ascending sort), and the tie statistics."""
    g, w = groups.shape
    pruned = torch.zeros((g, w), dtype=torch.bool)
    ties = TieStats()
    if k <= 0 or g == 0:
        return pruned, ties
    if k >= w:
        pruned[:] = True
        return pruned, ties
    s, idx = torch.sort(groups, dim=1, stable=True)
    pruned.scatter_(1, idx[:, :k], True)
    lo, hi = s[:, k - 1], s[:, k]
    exact = lo == hi
    near = (hi - lo) <= NEAR_TIE_RTOL * hi.abs()
    ties.exact_groups = int(exact.sum())
    ties.near_groups = int(near.sum())
    if ties.exact_groups:
        ties.exact_entries = int(((s == hi[:, None]) & exact[:, None]).sum())
    return pruned, ties


def select_pruned(score: torch.Tensor, pattern: Pattern, per_matrix: bool = False) -> tuple[torch.Tensor, TieStats]:
    """The pruned mask (True = pruned) of an (out, in) score matrix.

    Unstructured: per row the floor(in * ratio) lowest, or with per_matrix the floor(numel * ratio) lowest
    of the whole matrix. N:M: in every row and every group of m consecutive columns (from column 0), the
    m - n lowest; a last partial group of w < m columns prunes max(0, w - n).
    """
    rows, cols = score.shape
    if not pattern.is_nm:
        if per_matrix:
            k = int(score.numel() * pattern.ratio)
            p, t = _prune_lowest(score.reshape(1, -1), k)
            return p.reshape(rows, cols), t
        return _prune_lowest(score, int(cols * pattern.ratio))
    m, n = pattern.m, pattern.n
    full = (cols // m) * m
    pruned = torch.zeros((rows, cols), dtype=torch.bool)
    ties = TieStats()
    if full:
        p, t = _prune_lowest(score[:, :full].reshape(-1, m), m - n)
        pruned[:, :full] = p.reshape(rows, full)
        ties.add(t)
    w = cols - full
    if w:
        p, t = _prune_lowest(score[:, full:].contiguous(), max(0, w - n))
        pruned[:, full:] = p
        ties.add(t)
    return pruned, ties


# ----------------------------------------------------------------------------------------------------
# Model plumbing

class _StopForward(Exception):
    pass


@dataclass
class BlockContext:
    """What every block call needs besides its input: the causal mask and RoPE tables for positions 0..T-1."""
    mask: torch.Tensor           # (1, 1, T, T), 0 on and below the diagonal, finfo(DT).min above
    position_ids: torch.Tensor   # (1, T)
    cos_sin: tuple               # each (1, T, head_dim)
    chunk: int                   # samples per forward call
    config: object = None        # set in float64 mode: blocks go through block_forward_float64

    def call(self, block, x: torch.Tensor) -> torch.Tensor:
        if self.config is not None:
            return block_forward_float64(block, x, self)
        return block(x, attention_mask=self.mask, position_ids=self.position_ids,
                     position_embeddings=self.cos_sin)


def rope_tables_float64(cfg, seqlen: int) -> tuple:
    """cos, sin (1, T, head_dim) in float64 from the spec: inv_freq_i = theta^(-2i/HD), angle = p * inv_freq_i,
    all in float64 (transformers computes both in float32, so its angles at p = 512 are off by up to
    512 * 2^-24 rad)."""
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    rope = getattr(cfg, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"--dtype float64 supports only the default RoPE, not {rope.get('rope_type')!r}")
    theta = float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    freqs = torch.arange(seqlen, dtype=torch.float64)[:, None] * inv[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)[None]
    return emb.cos(), emb.sin()


def _rms_norm64(x: torch.Tensor, norm, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * norm.weight


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def block_forward_float64(block, x: torch.Tensor, ctx: "BlockContext") -> torch.Tensor:
    """One LLaMA decoder block, transcribed from LlamaDecoderLayer with every step in x's dtype (float64):
    RMSNorm, q/k/v (through the block's own linears, so the statistics hooks see their inputs), RoPE with
    ctx's tables, causal GQA attention (query head h reads KV head h // (NH / NKV)), softmax, o, SwiGLU MLP,
    both residuals."""
    cfg = ctx.config
    b, t, _ = x.shape
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // nh
    eps = cfg.rms_norm_eps
    att = block.self_attn
    h = _rms_norm64(x, block.input_layernorm, eps)
    q = att.q_proj(h).view(b, t, nh, hd).transpose(1, 2)
    k = att.k_proj(h).view(b, t, nkv, hd).transpose(1, 2)
    v = att.v_proj(h).view(b, t, nkv, hd).transpose(1, 2)
    cos, sin = ctx.cos_sin[0][:, None, :t], ctx.cos_sin[1][:, None, :t]
    q = q * cos + _rotate_half(q) * sin
    k = k * cos + _rotate_half(k) * sin
    k = k.repeat_interleave(nh // nkv, dim=1)
    v = v.repeat_interleave(nh // nkv, dim=1)
    s = torch.matmul(q, k.transpose(2, 3)) * (hd ** -0.5) + ctx.mask[:, :, :t, :t]
    o = torch.matmul(torch.softmax(s, dim=-1), v).transpose(1, 2).reshape(b, t, nh * hd)
    x = x + att.o_proj(o)
    h = _rms_norm64(x, block.post_attention_layernorm, eps)
    mlp = block.mlp
    return x + mlp.down_proj(torch.nn.functional.silu(mlp.gate_proj(h)) * mlp.up_proj(h))


def make_context(model, seqlen: int, rope: str = "transformers") -> BlockContext:
    """rope: "transformers" (the model's rotary embedding, float32 tables cast to DT) or "float64"
    (rope_tables_float64). In float64 mode (DT float64) blocks run through block_forward_float64."""
    cfg = model.config
    mask = torch.full((seqlen, seqlen), torch.finfo(DT).min, dtype=DT).triu(1)[None, None]
    pos = torch.arange(seqlen)[None]
    dummy = torch.zeros(1, seqlen, cfg.hidden_size, dtype=DT)
    if rope == "float64":
        cos, sin = rope_tables_float64(cfg, seqlen)
    else:
        cos, sin = model.model.rotary_emb(dummy, pos)
    # Keep one forward's attention probabilities (chunk, heads, T, T) at 16 MiB or less where possible,
    # below glibc's mmap threshold (see tune_malloc).
    chunk = max(1, (1 << 22) // (cfg.num_attention_heads * seqlen * seqlen))
    return BlockContext(mask, pos, (cos.to(DT), sin.to(DT)), chunk,
                        config=cfg if DT == torch.float64 else None)


def linear_of(block, name: str) -> torch.nn.Linear:
    mod = block
    for part in name.split("."):
        mod = getattr(mod, part)
    return mod


@torch.no_grad()
def block_forward_all(ctx: BlockContext, block, xs: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(xs)
    for i in range(0, xs.shape[0], ctx.chunk):
        out[i:i + ctx.chunk] = ctx.call(block, xs[i:i + ctx.chunk])
    return out


@torch.no_grad()
def collect_inputs(ctx: BlockContext, block, xs: torch.Tensor, names: list[str], want_hessian: bool,
                   stop_after: str | None = None) -> dict:
    """One pass of `block` over xs (N, T, C) with pre-hooks on the named linears.

    Returns per name: 'sumsq' (in,) float64 = sum over all N*T tokens of x_j^2, 'count' = token count, and
    with want_hessian 'xtx' (in, in) float64 = sum of x x^T. With stop_after, the forward is cut short
    after that linear's input has been seen (its later outputs are not needed).
    """
    stats = {n: {"sumsq": None, "count": 0, "xtx": None} for n in names}
    hooks = []

    def make_hook(name):
        def hook(_mod, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            st = stats[name]
            ss = (x * x).sum(0)
            st["sumsq"] = ss if st["sumsq"] is None else st["sumsq"] + ss
            st["count"] += x.shape[0]
            if want_hessian:
                xtx = x.T @ x
                st["xtx"] = xtx if st["xtx"] is None else st["xtx"] + xtx
            if name == stop_after:
                raise _StopForward()
        return hook

    for n in names:
        hooks.append(linear_of(block, n).register_forward_pre_hook(make_hook(n)))
    try:
        for i in range(0, xs.shape[0], ctx.chunk):
            try:
                ctx.call(block, xs[i:i + ctx.chunk])
            except _StopForward:
                pass
    finally:
        for h in hooks:
            h.remove()
    return stats


# ----------------------------------------------------------------------------------------------------
# Methods

@dataclass
class LayerRecord:
    name: str
    kept: torch.Tensor            # bool (out, in), True = kept (nonzero)
    ties: TieStats
    extras: dict = field(default_factory=dict)   # name -> float32 numpy array for the fixture


def prune_magnitude(block, prefix: str, pattern: Pattern) -> list[LayerRecord]:
    recs = []
    for name in LINEARS:
        lin = linear_of(block, name)
        W = lin.weight.data
        pruned, ties = select_pruned(W.abs(), pattern, per_matrix=True)
        W[pruned] = 0
        recs.append(LayerRecord(f"{prefix}.{name}.weight", W != 0, ties))
    return recs


def dump_sumsq(dump: dict | None, stats: dict, prefix: str) -> None:
    """--dump: sum of x_j^2 of the four distinct linear inputs (q = k = v, o, gate = up, down)."""
    if dump is not None:
        for name in ("self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"):
            dump[f"sumsq.{prefix}.{name}"] = stats[name]["sumsq"].numpy().copy()


def prune_wanda(ctx, block, xs, prefix, pattern, record_xnorm: bool, dump: dict | None = None) -> list[LayerRecord]:
    # All seven layers' statistics from one pass over the not-yet-pruned block, as the reference code.
    stats = collect_inputs(ctx, block, xs, LINEARS, want_hessian=False)
    dump_sumsq(dump, stats, prefix)
    recs = []
    for name in LINEARS:
        lin = linear_of(block, name)
        W = lin.weight.data
        xnorm = stats[name]["sumsq"].sqrt().to(DT)
        score = W.abs() * xnorm[None, :]
        pruned, ties = select_pruned(score, pattern)
        W[pruned] = 0
        rec = LayerRecord(f"{prefix}.{name}.weight", W != 0, ties)
        if record_xnorm:
            rec.extras[f"xnorm.{prefix}.{name}"] = xnorm.numpy()
        recs.append(rec)
    return recs


def sparsegpt_layer(W: torch.Tensor, xtx: torch.Tensor, count: int, pattern: Pattern, blocksize: int,
                    percdamp: float) -> tuple[torch.Tensor, TieStats]:
    """SparseGPT on one (out, in) weight; returns the new weight and the tie statistics."""
    rows, cols = W.shape
    W = W.clone().to(DT)
    H = (xtx * (2.0 / count)).to(DT)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(cols)
    H[diag, diag] += damp
    L = torch.linalg.cholesky(H)
    Hinv = torch.cholesky_inverse(L)
    Hinv = torch.linalg.cholesky(Hinv, upper=True)
    ties = TieStats()
    if pattern.is_nm and blocksize % pattern.m:
        raise ValueError(f"--blocksize {blocksize} is not a multiple of M={pattern.m}")
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count_b = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d1 = torch.diag(Hinv1)
        if not pattern.is_nm:
            score = W1 ** 2 / (d1.reshape(1, -1)) ** 2
            mask1, t = select_pruned(score, pattern, per_matrix=True)
            ties.add(t)
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(count_b):
            w = W1[:, i]
            d = Hinv1[i, i]
            if pattern.is_nm and i % pattern.m == 0:
                j2 = min(i + pattern.m, count_b)
                score = W1[:, i:j2] ** 2 / (d1[i:j2].reshape(1, -1)) ** 2
                # A group of full width m prunes m - n; a partial last group of w prunes max(0, w - n).
                sub = Pattern(n=pattern.n, m=pattern.m)
                p, t = select_pruned(score, sub)
                mask1[:, i:j2] = p
                ties.add(t)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W, ties


def prune_sparsegpt(ctx, block, xs, prefix, pattern, args, record_weights: bool,
                    dump: dict | None = None) -> list[LayerRecord]:
    stats = collect_inputs(ctx, block, xs, LINEARS, want_hessian=True)
    dump_sumsq(dump, stats, prefix)
    recs = []
    for name in LINEARS:
        lin = linear_of(block, name)
        st = stats[name]
        Wn, ties = sparsegpt_layer(lin.weight.data, st["xtx"], st["count"], pattern, args.blocksize,
                                   args.percdamp)
        lin.weight.data.copy_(Wn)
        del st["xtx"]
        rec = LayerRecord(f"{prefix}.{name}.weight", lin.weight.data != 0, ties)
        if record_weights:
            rec.extras[f"W.{prefix}.{name}.weight"] = lin.weight.data.float().numpy().copy()
        recs.append(rec)
    return recs


# ---- Wanda++

def regional_gradients(ctx, block, xs: torch.Tensor, indices: list[int]) -> dict:
    """G per linear name: sqrt(mean over samples n of (d ||block(x_n)||_2 / dW)^2), float32 (out, in)."""
    weights = {n: linear_of(block, n).weight for n in LINEARS}
    acc = {n: torch.zeros(w.shape, dtype=torch.float64) for n, w in weights.items()}
    for w in weights.values():
        w.requires_grad_(True)
    try:
        for n_idx in indices:
            for w in weights.values():
                w.grad = None
            with torch.enable_grad():
                out = ctx.call(block, xs[n_idx:n_idx + 1])
                loss = torch.linalg.vector_norm(out)
                loss.backward()
            for n, w in weights.items():
                acc[n] += w.grad.double() ** 2
    finally:
        for w in weights.values():
            w.grad = None
            w.requires_grad_(False)
    return {n: (a / len(indices)).sqrt().to(DT) for n, a in acc.items()}


def staged_prune(ctx, block, xs_sel: torch.Tensor, pattern: Pattern, G: dict | None, alpha: float,
                 prefix: str, record: bool) -> tuple[dict, dict]:
    """Prune the seven linears stage by stage (q,k,v -> o -> gate,up -> down). Each stage's ||X_j||_2
    (plain L2 norm over all tokens of xs_sel) is collected through the block as already pruned in the
    earlier stages. Score = (alpha * G + ||X||) * |W| with G, or ||X|| * |W| (Wanda) without.
    Returns ties per layer name and, with record, the ||X|| vectors."""
    ties, xnorms = {}, {}
    for stage in STAGES:
        stats = collect_inputs(ctx, block, xs_sel, [stage[0]], want_hessian=False, stop_after=stage[0])
        xnorm = stats[stage[0]]["sumsq"].sqrt().to(DT)
        for name in stage:
            W = linear_of(block, name).weight.data
            if G is not None:
                score = (alpha * G[name] + xnorm[None, :]) * W.abs()
            else:
                score = W.abs() * xnorm[None, :]
            pruned, t = select_pruned(score, pattern)
            W[pruned] = 0
            ties[name] = t
            if record:
                xnorms[name] = xnorm.clone()
    return ties, xnorms


def regional_optimization_round(ctx, block, dense, xs, idx: list[int], opt) -> float:
    """One RMSprop step per sample in idx (draw order) on sum((dense(x) - block(x))^2); returns the
    last loss."""
    weights = [linear_of(block, n).weight for n in LINEARS]
    for w in weights:
        w.requires_grad_(True)
    loss_v = float("nan")
    try:
        for n_idx in idx:
            x = xs[n_idx:n_idx + 1]
            with torch.no_grad():
                target = ctx.call(dense, x)
            opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                out = ctx.call(block, x)
                loss = ((target - out) ** 2).sum()
                loss.backward()
            opt.step()
            loss_v = loss.item()
    finally:
        for w in weights:
            w.grad = None
            w.requires_grad_(False)
    return loss_v


def prune_wandapp(ctx, block, xs, prefix, pattern, args, variant: str, rng: SeededGenerator,
                  record: bool, draws: list) -> list[LayerRecord]:
    use_rgs = variant in ("wanda++-rgs", "wanda++")
    use_ro = variant in ("wanda++-ro", "wanda++")
    nsamples = xs.shape[0]
    grad_idx = list(range(min(args.gradient_samples or nsamples, nsamples)))
    extras = {}
    G = None
    if use_ro:
        dense = copy.deepcopy(block)
        for p in dense.parameters():
            p.requires_grad_(False)
        if use_rgs:
            G = regional_gradients(ctx, block, xs, grad_idx)
        # One optimizer per block; its state persists across the rounds (see scripts/README.md).
        opt = torch.optim.RMSprop([linear_of(block, n).weight for n in LINEARS], lr=args.ro_lr,
                                  alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0, centered=False)
        for r in range(args.ro_rounds):
            idx = rng.sample(args.ro_samples, nsamples)
            draws.append(idx)
            staged_prune(ctx, block, xs[idx], pattern, G, args.alpha, prefix, record=False)
            loss = regional_optimization_round(ctx, block, dense, xs, idx, opt)
            log(f"  round {r}: samples {idx[:4]}..., last RO loss {loss:.6g}")
        del dense, opt
    if use_rgs:
        # Recomputed on the block as RO left it (identical to the first one for the RGS-only variant).
        G = regional_gradients(ctx, block, xs, grad_idx)
    ties, xnorms = staged_prune(ctx, block, xs, pattern, G, args.alpha, prefix, record=record)
    recs = []
    for name in LINEARS:
        W = linear_of(block, name).weight.data
        rec = LayerRecord(f"{prefix}.{name}.weight", W != 0, ties[name])
        if record:
            if G is not None:
                rec.extras[f"G.{prefix}.{name}.weight"] = G[name].numpy().copy()
            rec.extras[f"xnorm.{prefix}.{name}"] = xnorms[name].numpy().copy()
            if use_ro:   # RO changed the kept weights: the mask alone no longer determines them
                rec.extras[f"W.{prefix}.{name}.weight"] = W.numpy().copy()
        recs.append(rec)
    return recs


# ----------------------------------------------------------------------------------------------------
# Data and evaluation

def encode_with_special_tokens(tokenizer_path: str, text: str) -> list[int]:
    """text tokenized once by the model's tokenizer.json with the special tokens its post-processor adds
    (transformers' add_special_tokens=True): one leading BOS for the LLaMA-1/2-style tokenizers, none for
    SmolLM2's."""
    from tokenizers import Tokenizer
    return Tokenizer.from_file(tokenizer_path).encode(text, add_special_tokens=True).ids


def wikitext_eval_ids(tokenizer_path: str, eval_file: str) -> list[int]:
    """The WikiText-2 evaluation string (rows as the HF wikitext-2-raw-v1 test split holds them, joined
    with "\\n\\n"), tokenized once by encode_with_special_tokens."""
    with open(eval_file, encoding="utf-8") as f:
        rows = [row if row.strip() else "" for row in f]
    return encode_with_special_tokens(tokenizer_path, "\n\n".join(rows))


@torch.no_grad()
def logits_float64(model, x: torch.Tensor, ctx: BlockContext) -> torch.Tensor:
    """The model's logits through block_forward_float64 (embedding, blocks, final RMSNorm, lm_head)."""
    h = model.model.embed_tokens(x)
    for block in model.model.layers:
        h = ctx.call(block, h)
    return model.lm_head(_rms_norm64(h, model.model.norm, model.config.rms_norm_eps))


@torch.no_grad()
def perplexity(model, ids: list[int], seqlen: int, batch: int, max_windows: int | None = None,
               ctx: BlockContext | None = None) -> dict:
    """With a float64 ctx (BlockContext.config set) the logits come from logits_float64, in float64."""
    nwin = len(ids) // seqlen
    if max_windows is not None:
        nwin = min(nwin, max_windows)
    data = torch.tensor(ids[:nwin * seqlen], dtype=torch.long).reshape(nwin, seqlen)
    total = 0.0
    count = 0
    for i in range(0, nwin, batch):
        x = data[i:i + batch]
        if ctx is not None and ctx.config is not None:
            lp = torch.log_softmax(logits_float64(model, x, ctx)[:, :-1], dim=-1)
        else:
            logits = model(input_ids=x, use_cache=False).logits
            lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        nll = -lp.gather(-1, x[:, 1:, None]).squeeze(-1)
        total += float(nll.double().sum())
        count += nll.numel()
    return {"perplexity": math.exp(total / count), "tokens": len(ids), "windows": nwin,
            "predictions": count, "seqlen": seqlen}


def load_calibration(args, model_dir: str) -> torch.Tensor:
    if args.calibration_tokens:
        with safe_open(args.calibration_tokens, "pt") as f:
            ids = f.get_tensor("input_ids")
        if ids.dim() != 2 or ids.shape[0] < args.nsamples or ids.shape[1] < args.seqlen:
            raise ValueError(f"{args.calibration_tokens}: input_ids {tuple(ids.shape)} is smaller than "
                             f"({args.nsamples}, {args.seqlen})")
        return ids[:args.nsamples, :args.seqlen].long()
    # Plain-text protocol (benchmarks only; not the Swift sampler's draws): tokenize the whole text once
    # (with the post-processor's special tokens: one BOS for LLaMA-2-style tokenizers), then nsamples windows at offsets nextInt(below: len - seqlen) of SeededGenerator(seed).
    ids = wikitext_ids_plain(os.path.join(model_dir, "tokenizer.json"), args.calibration_text)
    rng = SeededGenerator(args.seed)
    out = torch.empty(args.nsamples, args.seqlen, dtype=torch.long)
    t = torch.tensor(ids, dtype=torch.long)
    for i in range(args.nsamples):
        s = rng.next_int(len(ids) - args.seqlen)
        out[i] = t[s:s + args.seqlen]
    return out


def wikitext_ids_plain(tokenizer_path: str, path: str) -> list[int]:
    with open(path, encoding="utf-8") as f:
        return encode_with_special_tokens(tokenizer_path, f.read())


def load_model(model_dir: str, layers: int | None):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig.from_pretrained(model_dir)
    if layers is not None:
        if not (0 < layers <= cfg.num_hidden_layers):
            raise ValueError(f"--layers {layers} is outside 1...{cfg.num_hidden_layers}")
        cfg.num_hidden_layers = layers
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()   # unused-weight warnings when --layers truncates the model
    model = LlamaForCausalLM.from_pretrained(model_dir, config=cfg, dtype=torch.float32,
                                             attn_implementation="eager")
    model.eval()
    if DT != torch.float32:
        model.to(DT)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# ----------------------------------------------------------------------------------------------------
# Driver

def prune_model(model, calib: torch.Tensor, args, pattern: Pattern,
                dump: dict | None = None) -> tuple[list[LayerRecord], dict, list]:
    """Prunes every block; with `dump` (--dump) also stores there each block's input on the first
    --dump-samples samples (`input.<l>`) and the statistics the method collected (`sumsq.*`). Method
    dense: no pruning, the statistics of a Wanda pass only (for --dump)."""
    seqlen = calib.shape[1]
    ctx = make_context(model, seqlen, args.rope)
    method = args.method
    layers = model.model.layers
    records: list[LayerRecord] = []
    timings = {}
    rng = SeededGenerator(args.seed)   # the Wanda++ RO draws (one generator for the whole run)
    xs = None
    draws: list[list[list[int]]] = []   # per block, per RO round: the sample indices in draw order
    if method != "magnitude":
        with torch.no_grad():
            xs = model.model.embed_tokens(calib)       # (N, T, C)
    for l, block in enumerate(layers):
        t0 = time.time()
        prefix = f"model.layers.{l}"
        rec0 = (l == 0 and args.block0 != "none")
        if dump is not None and xs is not None:
            dump[f"input.{l}"] = xs[:args.dump_samples].numpy().copy()
        if method == "dense":
            recs = []
            dump_sumsq(dump, collect_inputs(ctx, block, xs, LINEARS, want_hessian=False), prefix)
        elif method == "magnitude":
            recs = prune_magnitude(block, prefix, pattern)
        elif method == "wanda":
            recs = prune_wanda(ctx, block, xs, prefix, pattern, record_xnorm=rec0, dump=dump)
        elif method == "sparsegpt":
            recs = prune_sparsegpt(ctx, block, xs, prefix, pattern, args, record_weights=rec0, dump=dump)
        else:
            block_draws: list[list[int]] = []
            recs = prune_wandapp(ctx, block, xs, prefix, pattern, args, method, rng, record=rec0,
                                 draws=block_draws)
            draws.append(block_draws)
        records.extend(recs)
        if xs is not None and (l + 1 < len(layers) or dump is not None):
            xs = block_forward_all(ctx, block, xs)   # the next block sees the pruned block's outputs
        timings[l] = time.time() - t0
        log(f"block {l}: {timings[l]:.2f} s")
    if dump is not None and xs is not None:
        dump[f"input.{len(layers)}"] = xs[:args.dump_samples].numpy().copy()   # the last block's output
    return records, timings, draws


def validate(records: list[LayerRecord], model, pattern: Pattern) -> None:
    """Raise if a pruned weight breaks its pattern: N:M, every group of M (and the partial last group)
    has at most N non-zeros (-0.0 counts as zero); the kept mask is exactly the non-zero pattern."""
    params = dict(model.named_parameters())
    for r in records:
        W = params[r.name].data
        if not torch.equal(r.kept, W != 0):
            raise AssertionError(f"{r.name}: kept mask differs from the non-zero pattern")
        if pattern.is_nm:
            rows, cols = W.shape
            nz = (W != 0)
            for c in range(0, cols, pattern.m):
                worst = int(nz[:, c:c + pattern.m].sum(1).max())
                if worst > pattern.n:
                    raise AssertionError(f"{r.name}: a group at column {c} keeps {worst} > {pattern.n}")


def load_kept_masks(path: str) -> dict:
    """Kept masks (bool, flat) by weight name from a fixture of this script (U8 packbits) or from a
    checkpoint (a .safetensors file or a folder of them; kept = weight != 0)."""
    files = [path]
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".safetensors"))
    masks = {}
    for fp in files:
        with safe_open(fp, "pt") as f:
            for name in f.keys():
                if not name.endswith(".weight") or ".layers." not in name:
                    continue
                t = f.get_tensor(name)
                if t.dtype == torch.uint8:
                    masks[name] = torch.from_numpy(np.unpackbits(t.numpy(), bitorder="little").astype(bool))
                elif t.dim() == 2:
                    masks[name] = (t != 0).reshape(-1)
    return masks


def compare_masks(records: list, path: str) -> dict:
    """Fraction of weights whose kept/pruned decision equals `path`'s (load_kept_masks), per layer name;
    logs one line per block (the seven linears in LINEARS order)."""
    other = load_kept_masks(path)
    agree = {}
    for r in records:
        if r.name not in other:
            raise ValueError(f"{path}: no {r.name}")
        o = other[r.name][:r.kept.numel()]
        if o.numel() != r.kept.numel():
            raise ValueError(f"{path}: {r.name} has {o.numel()} entries, expected {r.kept.numel()}")
        agree[r.name] = float((o == r.kept.reshape(-1)).double().mean())
    blocks = sorted({int(n.split(".")[2]) for n in agree})
    log(f"mask agreement with {path} ({', '.join(n.split('.')[1] for n in LINEARS)}):")
    for b in blocks:
        row = [agree.get(f"model.layers.{b}.{n}.weight") for n in LINEARS]
        log(f"  block {b:2d}: " + " ".join("   -    " if v is None else f"{v:.6f}" for v in row))
    return agree


def packbits_kept(kept: torch.Tensor) -> np.ndarray:
    return np.packbits(kept.reshape(-1).numpy().astype(np.uint8), bitorder="little")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", required=True, choices=METHODS)
    ap.add_argument("--sparsity", default="0.5", help="0.5 (unstructured ratio) or N:M such as 2:4, 4:8")
    ap.add_argument("--model", default=os.path.join(SHARED, "models/stories260K"))
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=None,
                    help="calibration and evaluation window (default min(2048, max_position_embeddings))")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=100.0)
    ap.add_argument("--ro-rounds", type=int, default=5)
    ap.add_argument("--ro-samples", type=int, default=32)
    ap.add_argument("--ro-lr", type=float, default=3e-7)
    ap.add_argument("--gradient-samples", type=int, default=None,
                    help="G uses calibration samples 0..k-1 (default: all nsamples)")
    ap.add_argument("--percdamp", type=float, default=0.01)
    ap.add_argument("--blocksize", type=int, default=128)
    ap.add_argument("--calibration-tokens", default=None,
                    help="safetensors with int64 input_ids (nsamples, seqlen); rows/columns beyond are ignored")
    ap.add_argument("--calibration-text", default=os.path.join(SHARED, "text/wikitext-2/wiki.valid.tokens"),
                    help="used only without --calibration-tokens")
    ap.add_argument("--eval-file", default=os.path.join(SHARED, "text/wikitext-2-raw/wiki.test.raw"),
                    help="wiki.test.raw; empty string: no evaluation")
    ap.add_argument("--eval-windows", type=int, default=None, help="evaluate only the first K windows")
    ap.add_argument("--eval-batch", type=int, default=1)
    ap.add_argument("--layers", type=int, default=None, help="prune and keep only the first K blocks")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="fixture path (.safetensors)")
    ap.add_argument("--out-dir", default=None,
                    help="write the fixture as DIR/<model folder name>-<method>-<50|2of4|4of8>.safetensors")
    ap.add_argument("--block0", choices=["all", "stats", "none"], default="all",
                    help="block-0 extras in the fixture: all (G, xnorm, W), stats (G, xnorm), none (masks only)")
    ap.add_argument("--summary", default=None,
                    help="JSON file to update with this run's results under the key <method>-<pattern>")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                    help="float64: weights, activations, scores, the SparseGPT solve and the evaluation in "
                         "float64 through this script's block transcription (default float32, transformers)")
    ap.add_argument("--rope", choices=["transformers", "float64"], default=None,
                    help="RoPE tables: transformers' (float32 angles) or float64 from the spec "
                         "(default: float64 with --dtype float64, else transformers)")
    ap.add_argument("--eval-seqlen", type=int, default=None, help="evaluation window (default --seqlen)")
    ap.add_argument("--save-calibration", default=None,
                    help="write the calibration ids used as a safetensors int64 input_ids (nsamples, seqlen)")
    ap.add_argument("--dump", default=None,
                    help="safetensors of diagnostics: input.<l> (the input of block l, l = 0..L, on the first "
                         "--dump-samples samples) and sumsq.model.layers.<l>.<linear> (sum of x^2 per input "
                         "feature that the method used; method dense: those of a Wanda pass, no pruning)")
    ap.add_argument("--dump-samples", type=int, default=2)
    ap.add_argument("--compare", action="append", default=[],
                    help="a fixture of this script or a pruned checkpoint (file or folder): log per-layer "
                         "mask agreement with it (repeatable)")
    args = ap.parse_args(argv)
    global DT
    DT = torch.float64 if args.dtype == "float64" else torch.float32
    if args.rope is None:
        args.rope = "float64" if args.dtype == "float64" else "transformers"
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pattern = parse_pattern(args.sparsity)
    t_start = time.time()
    model = load_model(args.model, args.layers)
    if args.seqlen is None:
        args.seqlen = min(2048, model.config.max_position_embeddings)
    t_loaded = time.time()
    result = {"method": args.method, "sparsity": str(pattern), "seqlen": args.seqlen,
              "model": args.model, "layers": len(model.model.layers)}
    records = []
    dump = {} if args.dump else None
    if args.save_calibration:
        calib = load_calibration(args, args.model)
        os.makedirs(os.path.dirname(os.path.abspath(args.save_calibration)), exist_ok=True)
        save_file({"input_ids": calib.numpy().astype(np.int64)}, args.save_calibration,
                  metadata={"source": args.calibration_tokens or args.calibration_text, "seed": str(args.seed),
                            "tokenizer": os.path.join(args.model, "tokenizer.json")})
        log(f"wrote {args.save_calibration} {tuple(calib.shape)}")
    if args.method == "dense" and dump is not None:
        prune_model(model, load_calibration(args, args.model), args, pattern, dump)
    if args.method != "dense":
        calib = load_calibration(args, args.model)
        t_calib = time.time()
        records, block_times, draws = prune_model(model, calib, args, pattern, dump)
        t_pruned = time.time()
        validate(records, model, pattern)
        for path in args.compare:
            agree = compare_masks(records, path)
            result.setdefault("mask_agreement_min", {})[path] = min(agree.values())
        if any(draws):
            result["ro_draws"] = draws
        result["prune_seconds"] = t_pruned - t_calib
        result["calibration_seconds"] = t_calib - t_loaded
        result["block_seconds"] = [round(block_times[k], 3) for k in sorted(block_times)]
        total = sum(r.kept.numel() for r in records)
        kept = sum(int(r.kept.sum()) for r in records)
        result["sparsity_achieved"] = 1 - kept / total
        result["per_layer_sparsity"] = {r.name: 1 - int(r.kept.sum()) / r.kept.numel() for r in records}
        ties = TieStats()
        for r in records:
            ties.add(r.ties)
        result["ties"] = ties.as_dict()
        result["per_layer_ties"] = {r.name: r.ties.as_dict() for r in records}
    result["load_seconds"] = t_loaded - t_start
    if args.eval_file:
        t0 = time.time()
        ids = wikitext_eval_ids(os.path.join(args.model, "tokenizer.json"), args.eval_file)
        eval_seqlen = args.eval_seqlen or args.seqlen
        ev = perplexity(model, ids, eval_seqlen, args.eval_batch, args.eval_windows,
                        make_context(model, eval_seqlen, args.rope) if DT == torch.float64 else None)
        result.update({"perplexity": ev["perplexity"], "eval_seqlen": eval_seqlen, "eval_tokens": ev["tokens"],
                       "eval_windows": ev["windows"], "eval_seconds": time.time() - t0})
        label = args.method if args.method == "dense" else f"{args.method} {pattern}"
        log(f"{label}: WikiText-2 perplexity {ev['perplexity']:.4f} at seqlen {eval_seqlen} "
            f"({ev['tokens']} tokens, {ev['windows']} windows)")
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if args.out_dir and args.method != "dense":
        name = f"{os.path.basename(os.path.normpath(args.model))}-{args.method}-{pattern.tag()}.safetensors"
        args.out = os.path.join(args.out_dir, name)
    if args.out:
        write_fixture(args.out, records, result, args)
    if dump is not None:
        os.makedirs(os.path.dirname(os.path.abspath(args.dump)), exist_ok=True)
        save_file({k: np.ascontiguousarray(v) for k, v in dump.items()}, args.dump,
                  metadata={"dtype": args.dtype, "rope": args.rope, "method": args.method})
        log(f"wrote {args.dump} ({len(dump)} tensors)")
    if args.summary:
        update_summary(args.summary, result, args, pattern)
    print(json.dumps({k: v for k, v in result.items()
                      if k not in ("per_layer_sparsity", "per_layer_ties", "ro_draws")}))
    return result


def update_summary(path: str, result: dict, args, pattern: Pattern) -> None:
    key = "dense" if args.method == "dense" else f"{args.method}-{pattern.tag()}"
    summary = {}
    if os.path.exists(path):
        with open(path) as f:
            summary = json.load(f)
    keep = ["perplexity", "seqlen", "eval_tokens", "eval_windows", "sparsity_achieved", "ties",
            "prune_seconds"]
    summary[key] = {k: result[k] for k in keep if k in result}
    summary[key]["command"] = "scripts/reference_prune.py " + " ".join(sys.argv[1:])
    with open(path, "w") as f:
        json.dump(dict(sorted(summary.items())), f, indent=1)
        f.write("\n")


def write_fixture(path: str, records: list[LayerRecord], result: dict, args) -> None:
    tensors = {}
    for r in records:
        tensors[r.name] = packbits_kept(r.kept)
        for k, v in r.extras.items():
            if args.block0 == "all" or (args.block0 == "stats" and not k.startswith("W.")):
                tensors[k] = np.ascontiguousarray(v, dtype=np.float32)
    def js(v):
        return json.dumps(v, separators=(",", ":"))
    nonzero_ties = {k: v for k, v in (result.get("per_layer_ties") or {}).items() if any(v.values())}
    meta = {
        "format": "per pruned weight: U8 packbits(kept.reshape(-1), bitorder=little), 1 = kept (nonzero); "
                  "G.* / xnorm.* / W.*: F32 block-0 statistics and final weights",
        "method": args.method,
        "pattern": result["sparsity"],
        "perplexity": js(result.get("perplexity")),
        "seqlen": json.dumps(args.seqlen),
        "eval_tokens": js(result.get("eval_tokens")),
        "eval_windows": js(result.get("eval_windows")),
        "sparsity_achieved": js(result.get("sparsity_achieved")),
        "per_layer_sparsity": js(result.get("per_layer_sparsity")),
        # json.dumps's default separators, as before: Tests/PruningTests/DriverTests.swift compares this string.
        "ties": json.dumps(result.get("ties")),
        "per_layer_ties": js(nonzero_ties),
        "ro_draws": js(result.get("ro_draws")),
        "tie_rule": "stable ascending sort of the scores: among equal scores the lower index is pruned first",
        "shapes": js({r.name: list(r.kept.shape) for r in records}),
        "arguments": js(vars(args)),
        "versions": js({"torch": torch.__version__, "transformers": __import__("transformers").__version__}),
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(tensors, path, metadata=meta)
    os.chmod(path, 0o644)
    log(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
