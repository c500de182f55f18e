#!/usr/bin/env python3
"""Regenerates Fixtures/backward/*.safetensors: PyTorch autograd gradients of one Hugging Face decoder
layer (LlamaDecoderLayer / Qwen2DecoderLayer, float32, eager attention, rotary tables as transformers
computes them) for the losses Wanda++ differentiates. The Swift tests in
Tests/LlamaTests/BackwardFixtureTests.swift compare the hand-written block backward against them.

Each file holds, for one small random layer and one input sample x (T, C):
  meta: the geometry in the safetensors metadata (hidden, intermediate, heads, kv_heads, head_dim,
        rms_norm_eps, rope_theta, tokens, kind)
  <module>.weight / <module>.bias        the layer's parameters, module in q_proj ... down_proj,
                                         input_layernorm.weight, post_attention_layernorm.weight
  x, y                                   input and dense output (T, C)
  rope.cos, rope.sin                     the first half of transformers' (T, head_dim) tables
  rgs.grad.<module>.weight|bias, rgs.grad.x    gradients of ||y||_2 (the RGS regional loss)
  proj.r, proj.grad.<...>, proj.grad.x         gradients of <R, y> for a random R
  ro.<module>.weight                     a 2:4-pruned copy of each of the seven weights (magnitude)
  ro.y                                   the pruned layer's output
  ro.grad.<...>, ro.grad.x               gradients, at the pruned weights, of sum((y_dense - y_pruned)^2)

It also writes Fixtures/wandapp/:
  rmsprop.safetensors        torch.optim.RMSprop (alpha 0.99, eps 1e-8) steps on a vector: p0, g1..g4, p1..p4
  tiny-block.safetensors     a small random LlamaDecoderLayer (hidden 16, FFN 26: a partial 2:4 group in
                             down_proj), 8 input samples of 12 tokens, and for each variant in wanda++,
                             wanda++-rgs, wanda++-ro the block after Wanda++ at 2:4 (alpha 100, 2 rounds of 4
                             samples, lr 1e-4 so that RO visibly moves the weights, draws from
                             SeededGenerator(5)): <variant>.<module>.weight, <variant>.G.<module>.weight (the G
                             of the final prune), <variant>.ro_loss (rounds, samples), <variant>.ro_samples.
                             The Wanda++ steps here are this script's own transcription of
                             docs/algorithms.md, independent of the Swift code and of reference_prune.py.

Usage: $PYTHON scripts/make_backward_fixtures.py [--out Fixtures/backward] [--wandapp-out Fixtures/wandapp]
"""
import argparse
import copy
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, MistralConfig, Qwen2Config
from transformers.masking_utils import causal_mask_function, sliding_window_causal_mask_function
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding
from transformers.models.mistral.modeling_mistral import MistralDecoderLayer, MistralRotaryEmbedding
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RotaryEmbedding

MODULES = [
    ("q_proj", "self_attn"), ("k_proj", "self_attn"), ("v_proj", "self_attn"), ("o_proj", "self_attn"),
    ("gate_proj", "mlp"), ("up_proj", "mlp"), ("down_proj", "mlp"),
]

# (file name, kind, config overrides, tokens). Sizes stay tiny so each file is ~100-200 KB; llama-gqa and
# mistral-window are longer than the kernels' 64-row attention blocks.
CASES = [
    ("llama-gqa", "llama", dict(hidden_size=32, intermediate_size=40, num_attention_heads=4,
                                num_key_value_heads=2, rope_theta=10000.0, rms_norm_eps=1e-5), 80),
    ("llama-mha", "llama", dict(hidden_size=24, intermediate_size=36, num_attention_heads=3,
                                num_key_value_heads=3, rope_theta=500000.0, rms_norm_eps=1e-6), 12),
    # attention_bias gives q, k, v AND o biases in LLaMA; mlp_bias the three MLP biases.
    ("llama-bias", "llama", dict(hidden_size=16, intermediate_size=24, num_attention_heads=2,
                                 num_key_value_heads=1, head_dim=12, attention_bias=True, mlp_bias=True,
                                 rope_theta=10000.0, rms_norm_eps=1e-5), 10),
    # Qwen2: q, k, v biases, no o bias.
    ("qwen2-bias", "qwen2", dict(hidden_size=32, intermediate_size=44, num_attention_heads=4,
                                 num_key_value_heads=2, rope_theta=1000000.0, rms_norm_eps=1e-6), 14),
    # Sliding-window attention: query i sees keys i - 20 < j <= i.
    ("mistral-window", "mistral", dict(hidden_size=16, intermediate_size=24, num_attention_heads=4,
                                       num_key_value_heads=1, head_dim=8, sliding_window=20,
                                       rope_theta=10000.0, rms_norm_eps=1e-5), 72),
]


def build(kind, overrides):
    common = dict(max_position_embeddings=64, vocab_size=8, num_hidden_layers=1)
    if kind == "llama":
        cfg = LlamaConfig(**common, **overrides)
        layer_cls, rope_cls = LlamaDecoderLayer, LlamaRotaryEmbedding
    elif kind == "mistral":
        cfg = MistralConfig(**common, **overrides)
        layer_cls, rope_cls = MistralDecoderLayer, MistralRotaryEmbedding
    else:
        cfg = Qwen2Config(**common, use_sliding_window=False, **overrides)
        layer_cls, rope_cls = Qwen2DecoderLayer, Qwen2RotaryEmbedding
    cfg._attn_implementation = "eager"
    return cfg, layer_cls(cfg, layer_idx=0), rope_cls(cfg)


def randomize(layer, gen):
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.endswith("layernorm.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                gain = 2.5 if ("q_proj" in name or "k_proj" in name) else 1.0
                p.copy_(gain / p.shape[1] ** 0.5 * torch.randn(p.shape, generator=gen))


def prune_2_4(w):
    """Keeps the 2 largest |w| of every 4 consecutive inputs in each row (last partial group: keep 2)."""
    out = w.clone()
    rows, cols = w.shape
    for start in range(0, cols, 4):
        block = w[:, start:start + 4].abs()
        width = block.shape[1]
        if width <= 2:
            continue
        drop = torch.topk(block, width - 2, dim=1, largest=False).indices + start
        out.scatter_(1, drop, 0.0)
    return out


def grads(layer, x, loss_fn, prefix, out):
    layer.zero_grad(set_to_none=True)
    xg = x.clone().requires_grad_(True)
    y = layer(xg[None], attention_mask=MASK, position_embeddings=POS_EMB)[0]
    loss_fn(y).backward()
    for name, parent in MODULES:
        mod = getattr(getattr(layer, parent), name)
        out[f"{prefix}.grad.{name}.weight"] = mod.weight.grad.detach().clone()
        if mod.bias is not None:
            out[f"{prefix}.grad.{name}.bias"] = mod.bias.grad.detach().clone()
    out[f"{prefix}.grad.x"] = xg.grad.detach().clone()
    return y.detach()


# ---- Wanda++ on a tiny block (an independent transcription of docs/algorithms.md)

STAGES = [["q_proj", "k_proj", "v_proj"], ["o_proj"], ["gate_proj", "up_proj"], ["down_proj"]]


def module(layer, name):
    parent = "mlp" if name in ("gate_proj", "up_proj", "down_proj") else "self_attn"
    return getattr(getattr(layer, parent), name)


def select_nm(score, n, m):
    """Pruned mask: in each row and group of m columns, the (w - n) lowest (stable sort: ties lower column first)."""
    rows, cols = score.shape
    pruned = torch.zeros_like(score, dtype=torch.bool)
    for c0 in range(0, cols, m):
        block = score[:, c0:c0 + m]
        k = max(0, block.shape[1] - n)
        if k == 0:
            continue
        order = torch.sort(block, dim=1, stable=True).indices[:, :k] + c0
        pruned.scatter_(1, order, True)
    return pruned


def block_call(layer, x):
    return layer(x[None], attention_mask=MASK, position_embeddings=POS_EMB)[0]


def gradient_score(layer, xs, count):
    ws = [module(layer, n).weight for n, _ in MODULES]
    acc = [torch.zeros(w.shape, dtype=torch.float64) for w in ws]
    for w in ws:
        w.requires_grad_(True)
    for i in range(count):
        for w in ws:
            w.grad = None
        block_call(layer, xs[i]).norm().backward()
        for a, w in zip(acc, ws):
            a += w.grad.double() ** 2
    for w in ws:
        w.grad = None
        w.requires_grad_(False)
    return {n: (a / count).sqrt().float() for (n, _), a in zip(MODULES, acc)}


def staged_prune(layer, xs_sel, G, alpha, n, m):
    for stage in STAGES:
        seen = []
        hook = module(layer, stage[0]).register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
        with torch.no_grad():
            for x in xs_sel:
                block_call(layer, x)
        hook.remove()
        x = torch.cat([t.reshape(-1, t.shape[-1]) for t in seen]).double()
        xnorm = (x * x).sum(0).sqrt().float()
        for name in stage:
            W = module(layer, name).weight.data
            score = (alpha * G[name] + xnorm[None, :]) * W.abs() if G is not None else W.abs() * xnorm[None, :]
            W[select_nm(score, n, m)] = 0


def wandapp(layer, xs, variant, alpha, rounds, ro_samples, lr, rng, n=2, m=4):
    use_rgs, use_ro = variant in ("wanda++", "wanda++-rgs"), variant in ("wanda++", "wanda++-ro")
    N = xs.shape[0]
    G, losses, draws = None, [], []
    if use_ro:
        dense = copy.deepcopy(layer)
        if use_rgs:
            G = gradient_score(layer, xs, N)
        ws = [module(layer, name).weight for name, _ in MODULES]
        opt = torch.optim.RMSprop(ws, lr=lr, alpha=0.99, eps=1e-8, momentum=0.0)
        for _ in range(rounds):
            idx = rng.sample(ro_samples, N)
            draws.append(idx)
            staged_prune(layer, xs[idx], G, alpha, n, m)
            round_losses = []
            for w in ws:
                w.requires_grad_(True)
            for i in idx:
                with torch.no_grad():
                    target = block_call(dense, xs[i])
                opt.zero_grad(set_to_none=True)
                loss = ((target - block_call(layer, xs[i])) ** 2).sum()
                loss.backward()
                opt.step()
                round_losses.append(float(loss))
            for w in ws:
                w.grad = None
                w.requires_grad_(False)
            losses.append(round_losses)
    if use_rgs:
        G = gradient_score(layer, xs, N)
    staged_prune(layer, xs, G, alpha, n, m)
    return G, losses, draws


def make_wandapp_fixtures(out_dir):
    global MASK, POS_EMB
    from seeded_rng import SeededGenerator
    os.makedirs(out_dir, exist_ok=True)

    # RMSprop on a vector, gradients of very different scales (including tiny ones near eps).
    gen = torch.Generator().manual_seed(7)
    p = torch.randn(64, generator=gen)
    out = {"p0": p.clone()}
    param = torch.nn.Parameter(p.clone())
    opt = torch.optim.RMSprop([param], lr=3e-3, alpha=0.99, eps=1e-8, momentum=0.0)
    for step in range(1, 5):
        g = torch.randn(64, generator=gen) * torch.logspace(-9, 1, 64)
        out[f"g{step}"] = g
        param.grad = g.clone()
        opt.step()
        out[f"p{step}"] = param.detach().clone()
    out["square_avg"] = opt.state[param]["square_avg"].clone()
    save_file(out, os.path.join(out_dir, "rmsprop.safetensors"), metadata=dict(lr="0.003", alpha="0.99", eps="1e-08"))

    # A tiny block through the three variants.
    overrides = dict(hidden_size=16, intermediate_size=26, num_attention_heads=4, num_key_value_heads=2,
                     rope_theta=10000.0, rms_norm_eps=1e-5)
    T, N = 12, 8
    cfg, layer, rope = build("llama", overrides)
    layer.eval()
    gen = torch.Generator().manual_seed(2024)
    randomize(layer, gen)
    for p_ in layer.parameters():
        p_.requires_grad_(False)
    xs = torch.randn(N, T, 16, generator=gen)
    POS_EMB = rope(xs[:1], torch.arange(T)[None])
    MASK = torch.full((T, T), torch.finfo(torch.float32).min).triu(1)[None, None]
    out = {"x": xs}
    for name, p_ in layer.named_parameters():
        key = name.split(".", 1)[1] if name.startswith(("self_attn.", "mlp.")) else name
        out[key] = p_.detach().clone()
    meta = dict(hidden="16", intermediate="26", heads="4", kv_heads="2", head_dim="4", rms_norm_eps="1e-05",
                rope_theta="10000.0", tokens=str(T), samples=str(N), alpha="100", ro_rounds="2", ro_samples="4",
                ro_lr="0.0001", seed="5", pattern="2:4")
    for variant in ("wanda++", "wanda++-rgs", "wanda++-ro"):
        pruned = copy.deepcopy(layer)
        G, losses, draws = wandapp(pruned, xs, variant, 100.0, 2, 4, 1e-4, SeededGenerator(5))
        for name, _ in MODULES:
            out[f"{variant}.{name}.weight"] = module(pruned, name).weight.detach().clone()
            if G is not None:
                out[f"{variant}.G.{name}.weight"] = G[name]
        if losses:
            out[f"{variant}.ro_loss"] = torch.tensor(losses, dtype=torch.float32)
            out[f"{variant}.ro_samples"] = torch.tensor(draws, dtype=torch.float32)
            print(f"{variant}: RO losses {losses}")
    path = os.path.join(out_dir, "tiny-block.safetensors")
    save_file({k: v.contiguous().float() for k, v in out.items()}, path, metadata=meta)
    print(f"{path}: {len(out)} tensors, {os.path.getsize(path)} bytes")


def main():
    global MASK, POS_EMB
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(here, "..", "Fixtures", "backward"))
    ap.add_argument("--wandapp-out", default=os.path.join(here, "..", "Fixtures", "wandapp"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    for i, (fname, kind, overrides, T) in enumerate(CASES):
        gen = torch.Generator().manual_seed(1000 + i)
        cfg, layer, rope = build(kind, overrides)
        layer.eval()
        randomize(layer, gen)
        hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        C = cfg.hidden_size
        x = torch.randn(T, C, generator=gen)
        pos = torch.arange(T)[None]
        cos, sin = rope(x[None], pos)
        POS_EMB = (cos, sin)
        # The additive mask transformers builds for eager attention: 0 where its mask function allows the
        # key, finfo.min elsewhere.
        window = overrides.get("sliding_window")
        allow = sliding_window_causal_mask_function(window) if window else causal_mask_function
        keep = torch.tensor([[bool(allow(0, 0, torch.tensor(i), torch.tensor(j))) for j in range(T)] for i in range(T)])
        MASK = torch.where(keep, 0.0, torch.finfo(torch.float32).min)[None, None]

        out = {"x": x, "rope.cos": cos[0, :, : hd // 2].contiguous(), "rope.sin": sin[0, :, : hd // 2].contiguous()}
        for name, p in layer.named_parameters():
            key = name.split(".", 1)[1] if name.startswith(("self_attn.", "mlp.")) else name
            out[key] = p.detach().clone()

        y = grads(layer, x, lambda y: y.norm(), "rgs", out)
        out["y"] = y
        r = torch.randn(T, C, generator=gen)
        out["proj.r"] = r
        grads(layer, x, lambda y: (r * y).sum(), "proj", out)

        pruned = copy.deepcopy(layer)
        with torch.no_grad():
            for name, parent in MODULES:
                mod = getattr(getattr(pruned, parent), name)
                mod.weight.copy_(prune_2_4(mod.weight))
                out[f"ro.{name}.weight"] = mod.weight.detach().clone()
        out["ro.y"] = grads(pruned, x, lambda yp: ((y - yp) ** 2).sum(), "ro", out)

        meta = dict(kind=kind, hidden=str(C), intermediate=str(cfg.intermediate_size),
                    heads=str(cfg.num_attention_heads), kv_heads=str(cfg.num_key_value_heads), head_dim=str(hd),
                    rms_norm_eps=repr(cfg.rms_norm_eps), rope_theta=repr(overrides["rope_theta"]), tokens=str(T),
                    sliding_window=str(window or 0),
                    transformers=__import__("transformers").__version__, torch=torch.__version__)
        path = os.path.join(args.out, f"{fname}.safetensors")
        save_file({k: v.contiguous().float() for k, v in out.items()}, path, metadata=meta)
        print(f"{path}: {len(out)} tensors, {os.path.getsize(path)} bytes")
    make_wandapp_fixtures(args.wandapp_out)


if __name__ == "__main__":
    main()
