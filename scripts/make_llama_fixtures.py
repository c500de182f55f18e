#!/usr/bin/env python3
"""Regenerates Fixtures/llama/: tiny random LLaMA-family checkpoints and reference logits.

Each tiny configuration is saved by Hugging Face `save_pretrained` (config.json + model.safetensors) into
Fixtures/llama/<name>/, and Fixtures/llama/<name>-reference.safetensors holds `input_ids` (I64, B x T) and
`logits` (F32, B x T x V) computed by transformers in float32 with eager attention. (The reference sits
beside the folder, not in it: a checkpoint folder's *.safetensors files are all read as model shards.)

For the three real models in ../shared/models, Fixtures/llama/shared-<model>-reference.safetensors holds
`input_ids` (I64, 2 x 48), `logits` (F32, 2 x 48 x V) and `nll` (F32, 2 x 47: the next-token negative
log-likelihood, -log softmax(logits[:, t])[ids[:, t + 1]]).

Run from anywhere: $PYTHON scripts/make_llama_fixtures.py [--only name,name]
(--only remakes just those tiny checkpoints; qwen3-qknorm, gemma3-sandwich and gemma2-softcap were made with
transformers 5.24.)
"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import (Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Fixtures", "llama")
SHARED = os.path.join(ROOT, "..", "shared", "models")

torch.set_num_threads(1)

COMMON = dict(hidden_act="silu", max_position_embeddings=64, attn_implementation="eager")

# name -> (config class, model class, config kwargs). Sizes are tiny on purpose (fixtures stay small);
# each entry covers one feature the Swift forward pass must reproduce.
TINY = {
    # grouped-query attention (4 query heads share 2 KV heads), tied embeddings
    "llama-gqa": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, rms_norm_eps=1e-5, tie_word_embeddings=True)),
    # plain multi-head attention with a separate lm_head
    "llama-mha-untied": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=80, hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=3,
        num_key_value_heads=3, rms_norm_eps=1e-6, tie_word_embeddings=False)),
    # head_dim (12) different from hidden / heads (8)
    "llama-headdim": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=72, hidden_size=32, intermediate_size=44, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=12, tie_word_embeddings=False)),
    # llama's attention_bias: biases on q, k, v AND o
    "llama-attnbias": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, attention_bias=True, tie_word_embeddings=True)),
    # LLaMA-3.1 frequency-dependent RoPE scaling; original context 16 puts head_dim 16's frequencies
    # in all three bands (kept, interpolated, divided by factor)
    "llama3-rope": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=88, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, rope_theta=500000.0, tie_word_embeddings=True,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=16))),
    # linear position interpolation, legacy "type" key
    "linear-rope": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=70, hidden_size=24, intermediate_size=36, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, rope_theta=1000.0, tie_word_embeddings=False,
        rope_scaling=dict(type="linear", factor=2.5))),
    # Mistral with a sliding window shorter than the sequence
    "mistral-window": (MistralConfig, MistralForCausalLM, dict(
        vocab_size=90, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=5, tie_word_embeddings=False)),
    # Qwen2: q/k/v biases always, no o bias; sliding window on layers >= max_window_layers
    "qwen2-bias": (Qwen2Config, Qwen2ForCausalLM, dict(
        vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=True,
        sliding_window=6, max_window_layers=1)),
    # Qwen3: QK-norm (w·x̂ on each head of q and k), no biases
    "qwen3-qknorm": (Qwen3Config, Qwen3ForCausalLM, dict(
        vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=12, rope_theta=1000000.0, tie_word_embeddings=True)),
    # Gemma 3: sandwich norms (1 + w), QK-norm, GELU-tanh, √hidden embeddings, query_pre_attn_scalar ≠ head_dim,
    # sliding layers (window 5, base 1,000) around a full one (base 100,000), MQA, head_dim ≠ hidden / heads
    "gemma3-sandwich": (Gemma3TextConfig, Gemma3ForCausalLM, dict(
        vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=24, sliding_window=5,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 100000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 1000.0}},
        hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True)),
    # Gemma 2: sandwich (1 + w) norms, GELU-tanh, √hidden embeddings, every second layer sliding (window 5),
    # attention scores soft-capped (cap 3, active at these sizes) and the logits too (cap 20)
    "gemma2-softcap": (Gemma2Config, Gemma2ForCausalLM, dict(
        vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=16, sliding_window=5, rope_theta=10000.0,
        attn_logit_softcapping=3.0, final_logit_softcapping=20.0, hidden_activation="gelu_pytorch_tanh",
        tie_word_embeddings=True)),
}


def randomize(model, seed):
    """Replaces HF's small-std init with larger random weights so attention is far from uniform and every
    parameter visibly changes the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                # Gemma's norms multiply by 1 + w: its stored weights sit near 0.
                shift = 0 if model.config.model_type.startswith("gemma") else 1
                p.copy_(shift + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:  # (out, in) linear weights
                p.copy_(torch.randn(p.shape, generator=g) * (1.5 / p.shape[1] ** 0.5))


def make_tiny(name, config_cls, model_cls, kwargs, seed):
    common = dict(COMMON)
    if "hidden_activation" in kwargs:
        del common["hidden_act"]
    config = config_cls(**common, **kwargs)
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    randomize(model, seed)
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, safe_serialization=True)
    for extra in os.listdir(folder):  # keep only what the tests read
        if extra not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(folder, extra))
    # Reload from disk so the reference is what the saved checkpoint computes.
    model = model_cls.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(1000 + seed)
    ids = torch.randint(0, config.vocab_size, (2, 16), generator=g)
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float().contiguous()
    save_file({"input_ids": ids.contiguous(), "logits": logits}, os.path.join(OUT, f"{name}-reference.safetensors"))
    print(f"{name}: logits {tuple(logits.shape)}, max |logit| {logits.abs().max():.3f}")


def make_shared(model_name, seed):
    folder = os.path.join(SHARED, model_name)
    model = LlamaForCausalLM.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (2, 48), generator=g)
    ids[:, 0] = 1  # BOS, as evaluation windows start
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float().contiguous()
    logp = torch.log_softmax(logits.double(), dim=-1)
    nll = -logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    save_file({"input_ids": ids.contiguous(), "logits": logits, "nll": nll.float().contiguous()},
              os.path.join(OUT, f"shared-{model_name}-reference.safetensors"))
    print(f"shared {model_name}: logits {tuple(logits.shape)}, mean nll {nll.mean():.4f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="comma-separated tiny fixture names to remake (default: all, and the shared ones)")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    os.makedirs(OUT, exist_ok=True)
    for i, (name, (config_cls, model_cls, kwargs)) in enumerate(TINY.items()):
        if only is None or name in only:
            make_tiny(name, config_cls, model_cls, kwargs, seed=i + 1)
    if only is None:
        for i, model_name in enumerate(["stories260K", "llama2xs", "aidreams260K"]):
            make_shared(model_name, seed=100 + i)


if __name__ == "__main__":
    main()
