#!/usr/bin/env python3
"""Regenerates Fixtures/lmbackward/*.safetensors: PyTorch autograd gradients of the causal-LM loss of a whole
tiny Hugging Face model (float32, eager attention). The Swift tests in Tests/LlamaTests/CausalLMBackwardTests.swift
compare the full-model backward (chunked cross-entropy, head, final norm, every block) against them.

The models are the committed tiny checkpoints of Fixtures/llama (made by make_llama_fixtures.py):
llama-gqa (GQA, tied head), llama-mha-untied (MHA, untied head), llama-attnbias (q/k/v/o biases, tied),
qwen2-bias (Qwen2 q/k/v biases, tied), mistral-window (sliding window 5, untied).

Each file holds, for 2 sequences of 20 random token ids (torch.Generator seed 0):
  input_ids                              (2, 20) int64
  loss                                   (1) mean next-token cross-entropy (labels = input_ids)
  grad.embeds                            (2, 20, C) dL/d(embedding output)
  grad.<layer>.<module>.weight           dL/dW of every block matrix, module in q_proj ... down_proj

Usage: $PYTHON scripts/make_lm_backward_fixtures.py [--out Fixtures/lmbackward] [--only name,name]
(qwen3-qknorm, gemma3-sandwich, gemma2-softcap: Qwen3 QK-norm, the whole Gemma 3 block, Gemma 2's soft-caps;
made with transformers 5.24.)
"""
import argparse
import os

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

NAMES = ["llama-gqa", "llama-mha-untied", "llama-attnbias", "qwen2-bias", "mistral-window", "qwen3-qknorm", "gemma3-sandwich", "gemma2-softcap"]
MODULES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def main():
    ap = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "Fixtures", "lmbackward"))
    ap.add_argument("--only", help="comma-separated names to remake (default: all)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name in NAMES:
        if args.only and name not in args.only.split(","):
            continue
        model = AutoModelForCausalLM.from_pretrained(os.path.join(root, "Fixtures", "llama", name),
                                                     torch_dtype=torch.float32, attn_implementation="eager")
        model.eval()
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, model.config.vocab_size, (2, 20), generator=g)
        emb = model.model.embed_tokens(ids).detach().requires_grad_(True)
        out = model(inputs_embeds=emb, labels=ids)
        out.loss.backward()
        t = {"input_ids": ids.contiguous(), "loss": out.loss.detach().reshape(1), "grad.embeds": emb.grad.contiguous()}
        for l, layer in enumerate(model.model.layers):
            for m in MODULES:
                mod = layer.get_submodule(m)
                t[f"grad.{l}.{m.split('.')[-1]}.weight"] = mod.weight.grad.contiguous()
        path = os.path.join(args.out, f"{name}.safetensors")
        save_file(t, path)
        print(path, float(out.loss))


if __name__ == "__main__":
    main()
