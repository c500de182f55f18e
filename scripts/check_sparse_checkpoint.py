#!/usr/bin/env python3
"""Interoperability of llm-prune's sparse checkpoints with compressed-tensors, the library that defined the
formats (`sparse-24-bitmask`, `sparse-bitmask`; ../shared/docs/field.md). compressed-tensors 0.14.0.1 is the
last release with their compressors and needs transformers < 5: transformers 4.57.6 (with huggingface-hub
0.36.0 and tokenizers 0.22.1) loads such a folder; transformers 5.x asks for compressed-tensors >= 0.15,
which no longer reads them. scripts/README.md shows how to install them beside the usual $PYTHON.

Two commands:

  compare --sparse DIR --dense DIR
      Loads a folder written by `llm-prune prune --output-format sparse` with transformers (which
      decompresses it through compressed-tensors) and the dense folder of the same weights, and checks
      that every weight and the logits of a fixed token batch are equal (float32). Prints the largest
      differences and exits 1 when they are not zero.

  fixture --dense DIR --format FORMAT --output DIR [--layers 0,4] [--dtype bfloat16]
      Compresses the linears of the chosen blocks of a dense pruned folder with compressed-tensors' own
      compressor (ModelCompressor.compress on the state dict, targets Linear, ignore lm_head) and writes
      them as a small sparse folder (config.json with compressed-tensors' quantization_config and
      model.safetensors holding only those blocks' compressed tensors): the fixture the Swift tests read
      with our reader and compare with the dense weights.

Usage (from the repository root; CT: a folder holding compressed-tensors 0.14.0.1 and transformers 4.57.6,
see scripts/README.md):
  PYTHONPATH=$CT $PYTHON scripts/check_sparse_checkpoint.py compare --sparse out/stories-sparse24 --dense out/stories-dense24
  PYTHONPATH=$CT $PYTHON scripts/check_sparse_checkpoint.py fixture --dense out/stories-mag24 \\
      --format sparse-24-bitmask --output Fixtures/sparse/stories260K-mag24-ct
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file


def load(folder):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    return model


def load_sparse(folder):
    """The model of a sparse folder as transformers loads it (compressed-tensors decompressing on load), and
    how it was loaded. For sparse-bitmask, transformers 4.57.6's loader stops inside compressed-tensors
    0.14.0.1 before reading the file (ModelCompressor.compress_model calls BitmaskCompressor.compress_weight
    on the meta-device model: "Cannot copy out of meta tensor"), whoever wrote the folder; the folder is then
    decompressed by compressed-tensors' own ModelCompressor.decompress onto a model built from config.json."""
    try:
        return load(folder), "transformers.from_pretrained"
    except NotImplementedError as error:
        if "meta tensor" not in str(error):
            raise
    from compressed_tensors.compressors import ModelCompressor
    from transformers import AutoConfig, AutoModelForCausalLM
    config = AutoConfig.from_pretrained(folder)
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    ModelCompressor.from_pretrained(folder).decompress(folder, model)
    # bf16 values are decompressed as bf16 parameters; float32 holds them exactly.
    model = model.float()
    model.tie_weights()
    model.eval()
    return model, "compressed_tensors ModelCompressor.decompress"


def compare(args):
    import compressed_tensors
    import transformers
    print(f"transformers {transformers.__version__}, compressed-tensors {compressed_tensors.__version__}, torch {torch.__version__}")
    with open(os.path.join(args.sparse, "config.json")) as f:
        sparsity = json.load(f)["quantization_config"]["sparsity_config"]
    print(f"{args.sparse}: format {sparsity['format']}, structure {sparsity['sparsity_structure']}")
    (sparse, how), dense = load_sparse(args.sparse), load(args.dense)
    print(f"{args.sparse} loaded by {how}")
    sd, dd = sparse.state_dict(), dense.state_dict()
    if set(sd) != set(dd):
        print(f"different tensors: {sorted(set(sd) ^ set(dd))[:5]}")
        return 1
    weight_diff = max((sd[k].float() - dd[k].float()).abs().max().item() for k in dd)
    vocab = dense.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (4, min(128, dense.config.max_position_embeddings)), generator=generator)
    with torch.no_grad():
        logit_diff = (sparse(ids).logits - dense(ids).logits).abs().max().item()
    print(f"largest weight difference {weight_diff}, largest logit difference {logit_diff} over {tuple(ids.shape)} tokens")
    return 0 if weight_diff == 0 and logit_diff == 0 else 1


def fixture(args):
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.config import SparsityCompressionConfig
    model = load(args.dense).to(getattr(torch, args.dtype))
    layers = [int(x) for x in args.layers.split(",")]
    structure = "2:4" if args.format == "sparse-24-bitmask" else "unstructured"
    config = SparsityCompressionConfig.load_from_registry(args.format, targets=["Linear"], ignore=["lm_head"],
                                                          sparsity_structure=structure)
    compressor = ModelCompressor(sparsity_config=config)
    compressed = compressor.compress(model, state_dict=model.state_dict())
    prefixes = tuple(f"model.layers.{layer}." for layer in layers)
    kept = {k: v.contiguous() for k, v in compressed.items()
            if k.startswith(prefixes) and not k.endswith("layernorm.weight")}
    os.makedirs(args.output, exist_ok=True)
    save_file(kept, os.path.join(args.output, "model.safetensors"), metadata={"format": "pt"})
    # config.json as compressed-tensors writes it (update_config), on the dense model's configuration.
    model.config.save_pretrained(args.output)
    compressor.update_config(args.output)
    size = os.path.getsize(os.path.join(args.output, "model.safetensors"))
    print(f"wrote {args.output}: {len(kept)} tensors of layers {layers}, {size} bytes")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--sparse", required=True)
    c.add_argument("--dense", required=True)
    f = sub.add_parser("fixture")
    f.add_argument("--dense", required=True)
    f.add_argument("--format", required=True, choices=["sparse-24-bitmask", "sparse-bitmask"])
    f.add_argument("--output", required=True)
    f.add_argument("--layers", default="0,4")
    f.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    args = parser.parse_args()
    sys.exit(compare(args) if args.command == "compare" else fixture(args))


if __name__ == "__main__":
    main()
