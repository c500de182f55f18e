#!/usr/bin/env python3
"""Converts a llama.cpp GGUF checkpoint to a Hugging Face folder with transformers' own GGUF loader.

This is the peer's conversion, used as the reference llm-prune is compared against (and as an input for the
work that predates llm-prune's own GGUF reader): weights dequantized by transformers (`gguf_file=`), saved in
float32; the tokenizer transformers builds from the GGUF metadata, with one correction. transformers' GGUF
loader drops the first step of llama.cpp's `smollm` pre-tokenizer (every number character isolated), so for
`tokenizer.ggml.pre == "smollm"` the saved tokenizer.json gets the pre-tokenizer the original SmolLM2
tokenizer.json has: a Sequence of Digits(individual_digits) and ByteLevel.

    python scripts/convert_gguf_with_transformers.py ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf OUT_DIR
    python scripts/convert_gguf_with_transformers.py --tokenizer-only ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf Fixtures/tokenizers/smollm2-transformers

Writes OUT_DIR/DONE last, so a reader can wait for a complete folder. `--tokenizer-only` writes the
tokenizer files alone (no weights, no torch needed): the committed fixture
Fixtures/tokenizers/smollm2-transformers is that output less DONE and special_tokens_map.json.
"""
import json
import os
import sys

import gguf
from transformers import AutoTokenizer


def smollm_pre_tokenizer():
    return {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        ],
    }


def main():
    args = sys.argv[1:]
    tokenizer_only = "--tokenizer-only" in args
    path, out = [a for a in args if a != "--tokenizer-only"]
    folder, name = os.path.split(os.path.abspath(path))
    reader = gguf.GGUFReader(path)
    pre_field = reader.fields.get("tokenizer.ggml.pre")
    pre = bytes(pre_field.parts[pre_field.data[0]]).decode() if pre_field else None

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    os.makedirs(out, exist_ok=True)
    if not tokenizer_only:
        import torch
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        # The weights are plain float32 tensors once loaded; only the GGUF marker blocks save_pretrained.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)

    if pre == "smollm":
        tj = os.path.join(out, "tokenizer.json")
        with open(tj, encoding="utf-8") as f:
            data = json.load(f)
        data["pre_tokenizer"] = smollm_pre_tokenizer()
        with open(tj, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=2)
    with open(os.path.join(out, "DONE"), "w") as f:
        f.write(f"converted from {path} (tokenizer.ggml.pre={pre})\n")
    print(f"wrote {out} (pre-tokenizer {pre})")


if __name__ == "__main__":
    main()
