#!/usr/bin/env python3
"""LoRA fine-tuning with PyTorch (+ PEFT for the plain mode), the same run as `llm-prune finetune`, for the
agreement fixtures of Tests/FineTuningTests/LoRAAgreementTests.swift (written to Fixtures/lora/).

Same run means: the same base (a checkpoint folder, normally stories260K pruned by `llm-prune prune
--method magnitude --sparsity 2:4`), the same training tokens (a tokens file's rows concatenated and cut
into --seqlen blocks), the same data order (epoch e is a Fisher-Yates permutation from
SeededGenerator(seed ^ (0xB10C0000 + e)), scripts/seeded_rng.py), the same initial A (U(-1/sqrt(in), 1/sqrt(in))
drawn from SeededGenerator(seed) in (layer, target, row-major) order, rounded to float32), B = 0, dropout 0,
torch.optim.AdamW, transformers' linear schedule with warmup, gradient accumulation (loss / K) and
clip_grad_norm_. Plain mode is PEFT's LoRA (get_peft_model); masked mode replaces each target linear's
weight by W + s·((B A) ⊙ M), M = (W != 0), in plain torch.

It prints the training loop's tokens/s (for docs/PERFORMANCE.md). The fixture holds: losses (steps,) float64, every final lora_A / lora_B under PEFT's key names, and
eval_perplexity: the adapted model's perplexity on the first --eval-blocks blocks of the stream. With
--our-adapter DIR (the adapter/ folder of an `llm-prune finetune --lora-mode plain` run), PEFT loads it onto
the base (PeftModel.from_pretrained) and the fixture also holds peft_loaded_perplexity.

Usage (out/stories-mag24: stories260K after `llm-prune prune --method magnitude --sparsity 2:4 --output out/stories-mag24`;
$PYTHON: a python with torch, transformers, peft and safetensors, see scripts/README.md):
  $PYTHON scripts/lora_reference.py --model out/stories-mag24 \
      --train-tokens ../shared/calibration/stories260K-wikitext2valid-128x512-seed0.safetensors \
      --mode plain --targets q,v --steps 20 --seqlen 128 --out Fixtures/lora/stories260K-plain.safetensors
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, get_linear_schedule_with_warmup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seeded_rng import SeededGenerator  # noqa: E402

MODULES = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
           "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
ORDER = ["q", "k", "v", "o", "gate", "up", "down"]


def initial_a(seed, layers, targets, rank, shapes):
    rng = SeededGenerator(seed)
    out = {}
    for l in range(layers):
        for t in targets:
            fan_in = shapes[t][1]
            bound = 1 / math.sqrt(fan_in)
            vals = [(rng.next_double() * 2 - 1) * bound for _ in range(rank * fan_in)]
            out[(l, t)] = torch.from_numpy(np.array(vals, dtype=np.float64).astype(np.float32).reshape(rank, fan_in))
    return out


def block_order(seed, n, k):
    e = k // n
    rng = SeededGenerator(seed ^ (0xB10C0000 + e))
    p = list(range(n))
    rng.shuffle(p)
    return p[k % n]


class MaskedLoRALinear(torch.nn.Module):
    """y = x (W + s·((B A) ⊙ M))ᵀ + b with W frozen and M = (W != 0)."""

    def __init__(self, base, a, rank, scaling):
        super().__init__()
        self.weight = base.weight
        self.weight.requires_grad_(False)
        self.bias = base.bias
        self.register_buffer("mask", (base.weight != 0).to(base.weight.dtype))
        self.lora_A = torch.nn.Parameter(a.clone())
        self.lora_B = torch.nn.Parameter(torch.zeros(base.weight.shape[0], rank))
        self.scaling = scaling

    def forward(self, x):
        w = self.weight + self.scaling * ((self.lora_B @ self.lora_A) * self.mask)
        return F.linear(x, w, self.bias)


def perplexity(model, blocks):
    model.eval()
    nll, n = 0.0, 0
    with torch.no_grad():
        for b in blocks:
            ids = torch.tensor([b])
            out = model(ids, labels=ids)
            nll += float(out.loss) * (len(b) - 1)
            n += len(b) - 1
    return math.exp(nll / n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--train-tokens", required=True)
    ap.add_argument("--mode", choices=["plain", "masked"], default="plain")
    ap.add_argument("--targets", default="q,v")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seqlen", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-blocks", type=int, default=4)
    ap.add_argument("--our-adapter", default=None)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.manual_seed(0)
    targets = [t for t in ORDER if t in a.targets.split(",")]

    ids = load_file(a.train_tokens)["input_ids"].reshape(-1).tolist()
    n = len(ids) // a.seqlen
    blocks = [ids[i * a.seqlen:(i + 1) * a.seqlen] for i in range(n)]

    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32, attn_implementation="eager")
    model.requires_grad_(False)
    layers = model.config.num_hidden_layers
    shapes = {t: tuple(model.model.layers[0].get_submodule(MODULES[t]).weight.shape) for t in ORDER}
    init = initial_a(a.seed, layers, targets, a.rank, shapes)
    scaling = a.alpha / a.rank
    if a.mode == "plain":
        from peft import LoraConfig, get_peft_model
        cfg = LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                         target_modules=[MODULES[t].split(".")[-1] for t in targets])
        model = get_peft_model(model, cfg)
        for l in range(layers):
            for t in targets:
                m = model.base_model.model.model.layers[l].get_submodule(MODULES[t])
                m.lora_A["default"].weight.data.copy_(init[(l, t)])
                m.lora_B["default"].weight.data.zero_()

        def lora(l, t):
            m = model.base_model.model.model.layers[l].get_submodule(MODULES[t])
            return m.lora_A["default"].weight, m.lora_B["default"].weight
    else:
        for l in range(layers):
            layer = model.model.layers[l]
            for t in targets:
                parent_name, child = MODULES[t].split(".")
                parent = getattr(layer, parent_name)
                setattr(parent, child, MaskedLoRALinear(getattr(parent, child), init[(l, t)], a.rank, scaling))

        def lora(l, t):
            m = model.model.layers[l].get_submodule(MODULES[t])
            return m.lora_A, m.lora_B

    params = []
    for l in range(layers):
        for t in targets:
            pa, pb = lora(l, t)
            params += [pa, pb]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=a.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, a.warmup, a.steps)
    losses = []
    model.train()
    t0 = time.perf_counter()
    for s in range(a.steps):
        opt.zero_grad()
        total = 0.0
        for micro in range(a.grad_accum):
            b = torch.tensor([blocks[block_order(a.seed, n, s * a.grad_accum + micro)]])
            loss = model(b, labels=b).loss / a.grad_accum
            loss.backward()
            total += float(loss)
        if a.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, a.max_grad_norm)
        opt.step()
        sched.step()
        losses.append(total)
        print(f"step {s + 1} loss {total:.6f}")
    seconds = time.perf_counter() - t0
    print(f"training: {seconds:.2f} s, {a.steps * a.grad_accum * a.seqlen / seconds:.0f} tokens/s "
          f"(torch threads {torch.get_num_threads()})")

    out = {"losses": torch.tensor(losses, dtype=torch.float64)}
    for l in range(layers):
        for t in targets:
            pa, pb = lora(l, t)
            key = f"base_model.model.model.layers.{l}.{MODULES[t]}"
            out[f"{key}.lora_A.weight"] = pa.detach().clone().contiguous()
            out[f"{key}.lora_B.weight"] = pb.detach().clone().contiguous()
    eval_blocks = blocks[:a.eval_blocks]
    out["eval_perplexity"] = torch.tensor([perplexity(model, eval_blocks)], dtype=torch.float64)
    print("eval perplexity", float(out["eval_perplexity"]))
    if a.our_adapter:
        from peft import PeftModel
        base = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32, attn_implementation="eager")
        loaded = PeftModel.from_pretrained(base, a.our_adapter)
        out["peft_loaded_perplexity"] = torch.tensor([perplexity(loaded, eval_blocks)], dtype=torch.float64)
        print("PEFT-loaded llm-prune adapter perplexity", float(out["peft_loaded_perplexity"]))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    save_file(out, a.out, metadata={k: str(v) for k, v in vars(a).items()})
    print("wrote", a.out)


if __name__ == "__main__":
    main()
