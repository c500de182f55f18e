#!/usr/bin/env python3
"""RoPE tables of SmolLM2-135M's shape (head_dim 64, rope_theta 100,000) from transformers' own
LlamaRotaryEmbedding, and the same tables in float64 from the spec, at positions up to 2047.

transformers computes inv_freq = 1 / theta^(arange(0, d, 2) / d) in float32 and the angles
position * inv_freq in float32, then cos/sin in float32: at p = 2047 those angles are up to about
2047 * 2^-24 rad from the exact ones, so the float32 tables differ from float64 tables by ~1e-4 there.
llm-prune reproduces transformers' tables (to agree with the PyTorch reference); the float64 tables
show how far both are from exact. Run from the repository root:

    $PYTHON scripts/make_rope_fixtures.py

writes Fixtures/llama/rope-theta100000-hd64.safetensors: positions (int64, P), cos, sin (float32, P x 32:
the first half of transformers' (P, 64) tables, whose second half repeats it), cos64, sin64 (float64,
P x 32).
"""
import os

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "Fixtures/llama/rope-theta100000-hd64.safetensors")


def main() -> None:
    hd, theta, n = 64, 100000.0, 2048
    cfg = LlamaConfig(hidden_size=576, num_attention_heads=9, num_key_value_heads=3, head_dim=hd,
                      max_position_embeddings=8192, rope_theta=theta)
    rope = LlamaRotaryEmbedding(cfg)
    pos = sorted(set(range(0, n, 31)) | {1, 255, 256, 511, 512, 1023, 1024, 2046, 2047})
    p = torch.tensor(pos)[None]
    cos, sin = rope(torch.zeros(1, len(pos), 8), p)
    cos, sin = cos[0].numpy(), sin[0].numpy()
    assert np.array_equal(cos[:, :hd // 2], cos[:, hd // 2:]) and cos.dtype == np.float32
    inv = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    ang = np.array(pos, dtype=np.float64)[:, None] * inv[None, :]
    tensors = {"positions": np.array(pos, dtype=np.int64),
               "cos": np.ascontiguousarray(cos[:, :hd // 2]), "sin": np.ascontiguousarray(sin[:, :hd // 2]),
               "cos64": np.cos(ang), "sin64": np.sin(ang)}
    save_file(tensors, OUT, metadata={"head_dim": str(hd), "rope_theta": str(theta),
                                      "transformers": __import__("transformers").__version__})
    d = max(np.abs(cos[:, :hd // 2] - np.cos(ang)).max(), np.abs(sin[:, :hd // 2] - np.sin(ang)).max())
    print(f"wrote {OUT}: {len(pos)} positions; max |float32 table - float64| = {d:.3g}")


if __name__ == "__main__":
    main()
