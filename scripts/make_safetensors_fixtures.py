#!/usr/bin/env python3
"""Writes the SafeTensors module's reference fixtures into Fixtures/safetensors/.

Everything here is produced by PyTorch and the `safetensors` package, independently of the Swift code,
so the Swift tests can check their reader and their float32 -> F16/BF16 rounding against them:

- conversions.safetensors: float32 `source` values (rounding edge cases plus seeded random values at
  many scales), their PyTorch casts `source_as_f16` / `source_as_bf16` / `source_as_f64`, those casts
  widened back to float32 (`f16_widened`, `bf16_widened`, `f64_narrowed`), float64 values that are not
  float32 with their float32 rounding, integer tensors of every integer dtype with the same values as
  I64 (`<name>_as_i64`), and odd shapes (scalar, empty, rank 3).
- sharded/: a 2-shard checkpoint with model.safetensors.index.json, and sharded_expected.json with
  every tensor's dtype, shape, shard and values (as float32 values printed exactly).
- stories260K_reference.json: names, shapes and a few values and float64 sums of the real
  ../shared/models/stories260K/model.safetensors, and the same for the calibration token file.

Run from the repository root:  $PYTHON scripts/make_safetensors_fixtures.py
"""
import json
import os
import shutil
import struct

import numpy as np
import torch
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Fixtures", "safetensors")
SHARED = os.path.join(os.path.dirname(ROOT), "shared")


def f32(x):
    return float(np.float32(x))


def edge_values():
    two = 2.0
    vals = [
        0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 0.1, -0.1, 1.0 / 3.0, np.pi, np.e, 1e-3, 123.456,
        # F16 range and rounding
        65504.0, 65519.0, 65520.0, 65535.9, 1e6, -1e6,
        two ** -24, two ** -25, 3 * two ** -25, 1.5 * two ** -24, two ** -14, two ** -14 - two ** -24,
        two ** -26, 1e-8,
        1 + two ** -11, 1 + 3 * two ** -11, 1 + two ** -11 + two ** -20, -(1 + two ** -11),
        2048 + 1, 2048 + 3, 4096 + 2,
        # BF16 rounding: ties to even, just above a tie, carry into the exponent
        1 + two ** -8, 1 + 3 * two ** -8, 1 + two ** -8 + two ** -20, -(1 + 3 * two ** -8),
        2 - two ** -9, 2 - two ** -8,
        256 + 1, 256 + 3,
        # float32 extremes
        3.4028234663852886e38, -3.4028234663852886e38, 3.3895313892515355e38, 3.39e38,
        1.1754943508222875e-38, 1e-40, 1.401298464324817e-45,
        float("inf"), float("-inf"), float("nan"),
    ]
    return [f32(v) for v in vals]


def make_conversions():
    gen = torch.Generator().manual_seed(0)
    randoms = torch.randn(512, generator=gen, dtype=torch.float32)
    scales = torch.logspace(-30, 30, 512, base=2.0, dtype=torch.float64).to(torch.float32)
    source = torch.cat([torch.tensor(edge_values(), dtype=torch.float32), randoms * scales, randoms])

    f64_values = torch.tensor([0.1, 1 / 3, 1e-50, 1e50, -2.5, 1 + 2 ** -30, 16777217.0], dtype=torch.float64)
    ints = {
        "ints_i64": torch.tensor([0, 1, -1, 2 ** 62, -(2 ** 63), 2 ** 63 - 1, 511], dtype=torch.int64),
        "ints_i32": torch.tensor([0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 70000], dtype=torch.int32),
        "ints_i16": torch.tensor([0, 1, -1, 32767, -32768, 300], dtype=torch.int16),
        "ints_i8": torch.tensor([0, 1, -1, 127, -128], dtype=torch.int8),
        "ints_u8": torch.tensor([0, 1, 255, 128, 7], dtype=torch.uint8),
        "ints_bool": torch.tensor([True, False, True, True, False], dtype=torch.bool),
    }
    tensors = {
        "source": source,
        "source_as_f16": source.to(torch.float16),
        "source_as_bf16": source.to(torch.bfloat16),
        "source_as_f64": source.to(torch.float64),
        "f16_widened": source.to(torch.float16).to(torch.float32),
        "bf16_widened": source.to(torch.bfloat16).to(torch.float32),
        "f64_narrowed": source.to(torch.float64).to(torch.float32),
        "f64_values": f64_values,
        "f64_values_as_f32": f64_values.to(torch.float32),
        "rank3_bf16": (torch.arange(24, dtype=torch.float32) * 0.37 - 3).reshape(2, 3, 4).to(torch.bfloat16),
        "rank3_bf16_widened": (torch.arange(24, dtype=torch.float32) * 0.37 - 3).reshape(2, 3, 4)
        .to(torch.bfloat16).to(torch.float32),
        "scalar_f32": torch.tensor(2.5, dtype=torch.float32),
        "empty_f16": torch.zeros(0, 3, dtype=torch.float16),
    }
    for name, t in ints.items():
        tensors[name] = t
        tensors[name + "_as_i64"] = t.to(torch.int64).clone()
    save_file(tensors, os.path.join(OUT, "conversions.safetensors"),
              metadata={"format": "pt", "made_by": "scripts/make_safetensors_fixtures.py"})


def make_sharded():
    folder = os.path.join(OUT, "sharded")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    shards = {
        "model-00001-of-00002.safetensors": {
            "layers.0.weight": (torch.arange(12, dtype=torch.float32) * 0.25 - 1).reshape(3, 4),
            "layers.0.bias": torch.tensor([0.1, -0.2, 0.3, 1e-3], dtype=torch.float32).to(torch.bfloat16),
        },
        "model-00002-of-00002.safetensors": {
            "layers.1.weight": torch.tensor([[1.5, -2.0], [0.333, 1000.0]], dtype=torch.float32).to(torch.float16),
            "position_ids": torch.tensor([0, 1, 2, 3, 4], dtype=torch.int64),
        },
    }
    weight_map, total, expected = {}, 0, {}
    for file, tensors in shards.items():
        save_file(tensors, os.path.join(folder, file), metadata={"format": "pt"})
        for name, t in tensors.items():
            weight_map[name] = file
            total += t.numel() * t.element_size()
            values = t.to(torch.float64).flatten().tolist()
            expected[name] = {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
                              "shard": file, "values": values}
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
    with open(os.path.join(OUT, "sharded_expected.json"), "w") as f:
        json.dump({"total_size": total, "tensors": expected}, f, indent=1, sort_keys=True)


def make_stories_reference():
    path = os.path.join(SHARED, "models", "stories260K", "model.safetensors")
    tensors = load_file(path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    # File order = order of the tensors' bytes in the data section.
    order = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    picked = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
              "model.layers.4.mlp.down_proj.weight", "model.norm.weight"]
    ref = {
        "tensor_count": len(tensors),
        "names_in_file_order": order,
        "metadata": header.get("__metadata__", {}),
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
        "dtypes": sorted({str(v.dtype) for v in tensors.values()}),
        "samples": {k: {"first": tensors[k].flatten()[:8].tolist(),
                        "last": tensors[k].flatten()[-4:].tolist(),
                        "sum_f64": tensors[k].to(torch.float64).sum().item(),
                        "abs_sum_f64": tensors[k].to(torch.float64).abs().sum().item()} for k in picked},
    }
    cal = load_file(os.path.join(SHARED, "calibration", "stories260K-wikitext2valid-128x512-seed0.safetensors"))
    ids = cal["input_ids"]
    ref["calibration"] = {"name": "input_ids", "dtype": str(ids.dtype), "shape": list(ids.shape),
                          "first": ids.flatten()[:16].tolist(), "row_1_first": ids[1, :8].tolist(),
                          "sum": int(ids.sum().item()), "min": int(ids.min().item()), "max": int(ids.max().item())}
    with open(os.path.join(OUT, "stories260K_reference.json"), "w") as f:
        json.dump(ref, f, indent=1)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    make_conversions()
    make_sharded()
    make_stories_reference()
    print("wrote", sorted(os.listdir(OUT)))
