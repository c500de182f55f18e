#!/usr/bin/env python3
"""Write a random LLaMA checkpoint of TinyLlama-1.1B's shape, for benchmarks (not tests).

Shape: hidden 2048, 22 layers, 32 heads, 4 KV heads, FFN 5632, vocab 32000, max_position_embeddings 2048,
untied lm_head; BF16. Linear and embedding weights ~ N(0, 0.02^2), norm weights 1. Each tensor has its
own torch.Generator seeded with (seed, tensor index), so the values depend only on --seed and the tensor's
position in the sorted name list. Written in 2 shards with a model.safetensors.index.json (to exercise the
sharded loader), plus config.json and the LLaMA-2 tokenizer files.

    $PYTHON scripts/make_bench_checkpoint.py            # -> bench-data/tinyllama-random/
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import torch
from safetensors.torch import save_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.normpath(os.path.join(REPO, "..", "shared"))


def config(layers: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": layers,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "vocab_size": 32000,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "attention_bias": False,
        "mlp_bias": False,
        "torch_dtype": "bfloat16",
    }


def tensor_shapes(cfg: dict) -> dict:
    h, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = h // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * hd
    shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,), "lm_head.weight": (v, h)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}"
        shapes.update({
            f"{p}.input_layernorm.weight": (h,),
            f"{p}.post_attention_layernorm.weight": (h,),
            f"{p}.self_attn.q_proj.weight": (h, h),
            f"{p}.self_attn.k_proj.weight": (kv, h),
            f"{p}.self_attn.v_proj.weight": (kv, h),
            f"{p}.self_attn.o_proj.weight": (h, h),
            f"{p}.mlp.gate_proj.weight": (f, h),
            f"{p}.mlp.up_proj.weight": (f, h),
            f"{p}.mlp.down_proj.weight": (h, f),
        })
    return shapes


def make_tensor(name: str, shape: tuple, index: int, seed: int, std: float) -> torch.Tensor:
    if name.endswith("norm.weight"):
        return torch.ones(shape, dtype=torch.bfloat16)
    g = torch.Generator().manual_seed(seed * 1_000_003 + index)
    return (torch.randn(shape, generator=g, dtype=torch.float32) * std).to(torch.bfloat16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "bench-data", "tinyllama-random"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--layers", type=int, default=22)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--tokenizer-dir", default=os.path.join(SHARED, "tokenizers", "llama2"))
    args = ap.parse_args()
    t0 = time.time()
    cfg = config(args.layers)
    shapes = tensor_shapes(cfg)
    names = sorted(shapes)
    # Shards follow the block order (embeddings with the first layers, norm and lm_head with the last), as
    # HF's own sharding does; each holds about the same number of blocks.
    def shard_of(name: str) -> int:
        if name.startswith("model.layers."):
            l = int(name.split(".")[2])
            return min(args.shards - 1, l * args.shards // args.layers)
        return 0 if name == "model.embed_tokens.weight" else args.shards - 1
    os.makedirs(args.out, exist_ok=True)
    weight_map, total = {}, 0
    for s in range(args.shards):
        fname = f"model-{s + 1:05d}-of-{args.shards:05d}.safetensors"
        tensors = {}
        for i, n in enumerate(names):
            if shard_of(n) == s:
                tensors[n] = make_tensor(n, shapes[n], i, args.seed, args.std)
                weight_map[n] = fname
                total += tensors[n].numel() * 2
        save_file(tensors, os.path.join(args.out, fname), metadata={"format": "pt"})
        os.chmod(os.path.join(args.out, fname), 0o644)
        print(f"wrote {fname}: {len(tensors)} tensors", file=sys.stderr, flush=True)
        del tensors
    with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f,
                  indent=2)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for tf in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(args.tokenizer_dir, tf), os.path.join(args.out, tf))
    print(json.dumps({"out": args.out, "parameters": total // 2, "bytes": total,
                      "seconds": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
