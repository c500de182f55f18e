#!/usr/bin/env python3
"""Writes the GGUF module's reference fixtures into Fixtures/gguf/ with the `gguf` package and transformers,
independently of the Swift code:

- quants.gguf + quants_expected.safetensors: one small tensor per ggml type the Swift dequantizer supports
  (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 quantized from seeded random values by
  `gguf.quants.quantize`; Q2_K, Q3_K, Q4_K, Q5_K, Q6_K as seeded random block bytes with finite half
  scales, since the package cannot quantize them), and for each its float32 dequantization by
  `gguf.quants.dequantize` (the Swift tests compare bit patterns). The same file carries metadata of every
  value type (arrays of strings, nested arrays, 64-bit values) and `general.alignment` = 64.
- tiny-llama.gguf: a stories260K-shaped random LLaMA (hidden 64, 2 layers, 8 heads, 4 KV heads, FFN 128,
  vocab 262, untied head) written as llama.cpp's converter writes one: q/k rows permuted to llama.cpp's
  interleaved RoPE layout, tensors in mixed types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, F16, BF16, F32), and a
  tiny byte-level `gpt2` tokenizer in the metadata.
- tiny-llama_expected.safetensors: what transformers' own GGUF loader makes of it (float32): the q/k
  projections of both layers (un-permuted), `input_ids` and the model's logits for them.
- tiny-qwen2.gguf + tiny-qwen2_expected.safetensors: the same for architecture qwen2 (q/k/v biases,
  no row permutation), with transformers' q/k weights and biases and logits.
- smollm2_logits.safetensors: transformers loading ../shared/models/smollm2-135m-instruct/*.gguf
  (float32): logits of 8 fixed token ids at 256 fixed vocabulary columns (`columns`), plus each
  position's maximum logit and its argmax.

Checks (no files written):
  --check-hf DIR --gguf FILE   transformers' from_pretrained(DIR) against transformers loading FILE: the
                               logits of the fixture ids must agree (relative error printed; used to check
                               `llm-prune convert` and pruned exports).
  --check-gguf FILE            the gguf package and transformers read FILE back (a GGUF written by llm-prune).

Run from the repository root:  $PYTHON scripts/make_gguf_fixtures.py
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Fixtures", "gguf")
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
SMOLLM2 = os.path.join(SHARED, "models", "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
SMOLLM2_IDS = [1116, 446, 6356, 389, 253, 1345, 28, 30]

import gguf  # noqa: E402
from gguf import GGMLQuantizationType as Q  # noqa: E402


def random_k_blocks(rng, qtype, n_blocks):
    """Random bytes for n_blocks of a K type, with every half-precision scale field a finite value."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    half_offsets = {Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208]}[qtype]
    for off in half_offsets:
        d = (rng.standard_normal(n_blocks) * 0.01).astype(np.float16)
        raw[:, off:off + 2] = d.view(np.uint8).reshape(n_blocks, 2)
    return raw


def make_quants():
    from safetensors.numpy import save_file
    rng = np.random.default_rng(20260601)
    w = gguf.GGUFWriter(os.path.join(OUT, "quants.gguf"), arch="test")
    w.add_custom_alignment(64)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 65000)
    w.add_int16("test.i16", -32000)
    w.add_uint32("test.u32", 4_000_000_000)
    w.add_int32("test.i32", -2_000_000_000)
    w.add_float32("test.f32", 0.1)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "naïve ✓ \"quoted\"\nline")
    w.add_uint64("test.u64", 18_000_000_000_000_000_000)
    w.add_int64("test.i64", -9_000_000_000_000_000_000)
    w.add_float64("test.f64", 0.1)
    w.add_array("test.strings", ["a", "", "Ġthe", "<|im_start|>"])
    w.add_array("test.floats", [0.5, -1.25, 3.0])
    w.add_array("test.nested", [[1, 2, 3], [4], [5, 6]])
    w.add_key_value("test.u64s", [1, 2 ** 63], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.UINT64)

    expected = {}
    # Plain and quantizable types: seeded normal values, with a few edge cases for the float types.
    base = rng.standard_normal((4, 64)).astype(np.float32)
    edges = np.array([0.0, -0.0, np.inf, -np.inf, 1e-8, -6e-8, 65504.0, 3.0e38], dtype=np.float32)
    base[0, :8] = edges
    for qt in [Q.F32, Q.F16, Q.BF16]:
        if qt == Q.F32:
            raw = base.view(np.uint8)
            w.add_tensor(qt.name, base)
        elif qt == Q.F16:
            q = gguf.quants.quantize(base, qt)      # numpy float16
            raw = q.view(np.uint8)
            w.add_tensor(qt.name, q)
        else:
            raw = gguf.quants.quantize(base, qt)    # uint8 bytes of bfloat16
            w.add_tensor(qt.name, raw, raw_dtype=qt)
        expected[qt.name] = gguf.quants.dequantize(raw, qt).reshape(base.shape)
    finite = rng.standard_normal((4, 64)).astype(np.float32)
    finite[1] *= 0.001
    finite[2, :32] = 0.0              # an all-zero block
    finite[3, 5] = 7.0                # an outlier
    for qt in [Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1]:
        q = gguf.quants.quantize(finite, qt)
        w.add_tensor(qt.name, q, raw_dtype=qt)
        expected[qt.name] = gguf.quants.dequantize(q, qt)
    for qt in [Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K]:
        raw = random_k_blocks(rng, qt, 4).reshape(2, -1)    # 2 rows of 512 elements
        w.add_tensor(qt.name, raw, raw_dtype=qt)
        expected[qt.name] = gguf.quants.dequantize(raw, qt)
    # A rank-3 tensor: GGUF lists [64, 2, 3] innermost first for a (3, 2, 64) array.
    r3 = rng.standard_normal((3, 2, 64)).astype(np.float32)
    q = gguf.quants.quantize(r3, Q.Q8_0)
    w.add_tensor("rank3", q, raw_dtype=Q.Q8_0)
    expected["rank3"] = gguf.quants.dequantize(q, Q.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    for k, v in expected.items():
        assert v.dtype == np.float32, k
    save_file({k: np.ascontiguousarray(v) for k, v in expected.items()}, os.path.join(OUT, "quants_expected.safetensors"))


# ---- tiny LLaMA -----------------------------------------------------------------------------------

TINY = dict(hidden=64, layers=2, heads=8, kv_heads=4, ffn=128, context=128)
TINY_IDS = [1, 40, 77, 100, 150, 200, 255, 261, 3, 120]


def byte_level_tokens():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def llama_cpp_permute(weights, n_head, n_head_kv):
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def make_tiny(arch="llama"):
    """arch llama: q/k permuted as llama.cpp's LlamaModel converter does; arch qwen2: q/k/v biases, no permutation."""
    import torch
    from safetensors.numpy import save_file
    from transformers import AutoModelForCausalLM
    rng = np.random.default_rng(260 if arch == "llama" else 2602)
    c = TINY
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"] + byte_level_tokens() + ["Ġt", "he"]
    vocab = len(tokens)
    head_dim = c["hidden"] // c["heads"]
    path = os.path.join(OUT, f"tiny-{arch}.gguf")
    w = gguf.GGUFWriter(path, arch=arch)
    w.add_name(f"tiny-{arch}")
    w.add_context_length(c["context"])
    w.add_embedding_length(c["hidden"])
    w.add_block_count(c["layers"])
    w.add_feed_forward_length(c["ffn"])
    w.add_head_count(c["heads"])
    w.add_head_count_kv(c["kv_heads"])
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head_dim)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3, 3, 3, 2] + [1] * (vocab - 4))
    w.add_token_merges(["Ġ t", "h e"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(3)
    w.add_add_bos_token(False)

    def normal(*shape, scale=0.1):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def put(name, x, qtype):
        if qtype == Q.F32:
            w.add_tensor(name, x)
        elif qtype == Q.F16:
            w.add_tensor(name, x.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)

    put("token_embd.weight", normal(vocab, c["hidden"], scale=0.5), Q.Q8_0)
    types = [
        dict(q=Q.Q4_0, k=Q.Q4_1, v=Q.Q5_0, o=Q.Q5_1, gate=Q.F16, up=Q.BF16, down=Q.Q8_0),
        dict(q=Q.Q8_0, k=Q.F16, v=Q.F32, o=Q.Q4_0, gate=Q.Q4_1, up=Q.Q5_1, down=Q.Q5_0),
    ]
    kv = c["kv_heads"] * head_dim
    for i in range(c["layers"]):
        t = types[i]
        put(f"blk.{i}.attn_norm.weight", 1 + normal(c["hidden"]), Q.F32)
        if arch == "llama":
            put(f"blk.{i}.attn_q.weight", llama_cpp_permute(normal(c["hidden"], c["hidden"]), c["heads"], c["heads"]), t["q"])
            put(f"blk.{i}.attn_k.weight", llama_cpp_permute(normal(kv, c["hidden"]), c["heads"], c["kv_heads"]), t["k"])
        else:
            put(f"blk.{i}.attn_q.weight", normal(c["hidden"], c["hidden"]), t["q"])
            put(f"blk.{i}.attn_k.weight", normal(kv, c["hidden"]), t["k"])
            put(f"blk.{i}.attn_q.bias", normal(c["hidden"]), Q.F32)
            put(f"blk.{i}.attn_k.bias", normal(kv), Q.F32)
            put(f"blk.{i}.attn_v.bias", normal(kv), Q.F32)
        put(f"blk.{i}.attn_v.weight", normal(kv, c["hidden"]), t["v"])
        put(f"blk.{i}.attn_output.weight", normal(c["hidden"], c["hidden"]), t["o"])
        put(f"blk.{i}.ffn_norm.weight", 1 + normal(c["hidden"]), Q.F32)
        put(f"blk.{i}.ffn_gate.weight", normal(c["ffn"], c["hidden"]), t["gate"])
        put(f"blk.{i}.ffn_up.weight", normal(c["ffn"], c["hidden"]), t["up"])
        put(f"blk.{i}.ffn_down.weight", normal(c["hidden"], c["ffn"]), t["down"])
    put("output_norm.weight", 1 + normal(c["hidden"]), Q.F32)
    put("output.weight", normal(vocab, c["hidden"]), Q.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    model = AutoModelForCausalLM.from_pretrained(OUT, gguf_file=f"tiny-{arch}.gguf", dtype=torch.float32)
    model.eval()
    sd = model.state_dict()
    expected = {}
    for i in range(c["layers"]):
        for p in ["q_proj", "k_proj"]:
            expected[f"model.layers.{i}.self_attn.{p}.weight"] = sd[f"model.layers.{i}.self_attn.{p}.weight"].numpy()
            if arch == "qwen2":
                expected[f"model.layers.{i}.self_attn.{p}.bias"] = sd[f"model.layers.{i}.self_attn.{p}.bias"].numpy()
    ids = np.array([TINY_IDS], dtype=np.int64)
    with torch.no_grad():
        logits = model(torch.tensor(ids)).logits[0].float().numpy()
    expected["input_ids"] = ids[0]
    expected["logits"] = logits
    save_file({k: np.ascontiguousarray(v) for k, v in expected.items()}, os.path.join(OUT, f"tiny-{arch}_expected.safetensors"))


def smollm2_columns():
    rng = np.random.default_rng(49152)
    return np.concatenate([np.arange(128), np.sort(rng.choice(np.arange(128, 49152), 128, replace=False))]).astype(np.int64)


def gguf_logits(path, ids):
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(os.path.abspath(path)), gguf_file=os.path.basename(path),
                                                 dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def make_smollm2():
    from safetensors.numpy import save_file
    if not os.path.exists(SMOLLM2):
        print(f"skipping smollm2_logits.safetensors: {SMOLLM2} is missing", file=sys.stderr)
        return
    logits = gguf_logits(SMOLLM2, SMOLLM2_IDS)
    cols = smollm2_columns()
    save_file({
        "input_ids": np.array(SMOLLM2_IDS, dtype=np.int64),
        "columns": cols,
        "logits": np.ascontiguousarray(logits[:, cols]),
        "max_logit": logits.max(axis=1).astype(np.float32),
        "argmax": logits.argmax(axis=1).astype(np.int64),
    }, os.path.join(OUT, "smollm2_logits.safetensors"))


def check_hf(folder, gguf_path):
    import torch
    from transformers import AutoModelForCausalLM
    ids = SMOLLM2_IDS if "smollm" in os.path.basename(gguf_path).lower() else TINY_IDS
    reference = gguf_logits(gguf_path, ids)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        got = model(torch.tensor([ids])).logits[0].float().numpy()
    rel = float(np.abs(got - reference).max() / np.abs(reference).max())
    print(f"{folder} vs transformers on {gguf_path}: max relative error {rel:.3g}")
    return rel


def check_gguf(path):
    r = gguf.GGUFReader(path)
    print(f"{path}: gguf package reads {len(r.tensors)} tensors, {len(r.fields)} fields")
    for t in r.tensors:
        x = gguf.quants.dequantize(t.data, t.tensor_type)
        assert np.isfinite(x).all(), t.name
    logits = gguf_logits(path, SMOLLM2_IDS if len(r.tensors) > 100 else TINY_IDS)
    print(f"transformers loads it: logits {logits.shape}, finite {bool(np.isfinite(logits).all())}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check-hf")
    ap.add_argument("--gguf")
    ap.add_argument("--check-gguf")
    ap.add_argument("--only", choices=["quants", "tiny", "smollm2"])
    a = ap.parse_args()
    if a.check_hf:
        rel = check_hf(a.check_hf, a.gguf)
        sys.exit(0 if rel <= 1e-4 else 1)
    if a.check_gguf:
        check_gguf(a.check_gguf)
        return
    os.makedirs(OUT, exist_ok=True)
    if a.only in (None, "quants"):
        make_quants()
    if a.only in (None, "tiny"):
        make_tiny("llama")
        make_tiny("qwen2")
    if a.only in (None, "smollm2"):
        make_smollm2()


if __name__ == "__main__":
    main()
