#!/usr/bin/env python3
"""Reference values for Gemma 3 270M (the GGUF that scripts/fetch_gemma3.sh puts at
models/gemma-3-270m/gemma-3-270m-q4_k_m.gguf): what the `gguf` package reads and dequantizes, and the ids
transformers' tokenizer gives when loaded from the same GGUF.

Run from the repository root (after `make setup`):  $PYTHON scripts/make_gemma3_fixtures.py
($PYTHON: a virtualenv with gguf, numpy, transformers, tokenizers, torch, sentencepiece, protobuf; see
scripts/README.md.)

What it writes (small derived data only, never weights or the vocabulary):
  Fixtures/gguf/gemma3-270m.json
      file: size, sha256, GGUF version, tensor count, per-type tensor counts, every tensor's name/type/shape
      metadata: the gemma3.* architecture values and the tokenizer scalars, as the `gguf` package reads them
      tensors: for one tensor of each type (Q4_K, Q5_0, Q6_K, Q8_0, F32): name, type, shape, element count,
          the sha256 of all its values as float32 little-endian bytes after `gguf.quants.dequantize`, the
          first 128 values and 128 values at an even stride through the tensor (index and value)
  Fixtures/tokenizers/expected/gemma3-gguf.json
      gguf: vocabulary size and token-type counts, special ids and flags (the spec the Swift side reads)
      eval: the WikiText-2 test evaluation string (Wanda protocol, as scripts/make_tokenizer_fixtures.py
          builds it) encoded as `tokenizer(text)` (BOS added): count (asserted 292,283), fnv, first/last ids,
          fnv of the UTF-8 of its decode
      probes: varied strings (spaces, newlines, tabs, digits, unicode, emoji, control and user-defined token
          text, byte-token text, WikiText lines) with the ids of `tokenizer(text)` and their
          `decode(ids, skip_special_tokens=True)`; some also without special tokens (`add_special_tokens=False`)
"""
import hashlib
import json
import os
import random
import sys

import gguf
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tokenizer_fixtures import PROBES, eval_string, fnv1a64, fnv1a64_bytes, wiki_lines  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = os.path.join(ROOT, "models", "gemma-3-270m")
NAME = "gemma-3-270m-q4_k_m.gguf"
GGUF_FILE = os.path.join(FOLDER, NAME)
GGUF_OUT = os.path.join(ROOT, "Fixtures", "gguf", "gemma3-270m.json")
TOKENIZER_OUT = os.path.join(ROOT, "Fixtures", "tokenizers", "expected", "gemma3-gguf.json")

EXPECTED_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
EXPECTED_EVAL_COUNT = 292_283  # issue 28: transformers 5.24 on this GGUF, WikiText-2 raw test, BOS added
# One tensor per type in the file: the smallest of each type in block 0 (F32: the final norm).
SAMPLED = ["blk.0.attn_output.weight", "blk.0.attn_k.weight", "blk.0.ffn_down.weight", "blk.0.attn_v.weight",
           "output_norm.weight"]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def gguf_fixture(reader):
    types = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    keys = ["general.architecture", "general.name", "general.file_type", "general.quantization_version"]
    keys += [k for k in reader.fields if k.startswith("gemma3.")]
    keys += ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.bos_token_id",
             "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
             "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token", "tokenizer.ggml.add_space_prefix"]
    metadata = {k: field(reader, k) for k in keys}
    metadata["tokenizer.ggml.tokens.count"] = len(reader.fields["tokenizer.ggml.tokens"].data)
    sampled = []
    for name in SAMPLED:
        t = next(t for t in reader.tensors if t.name == name)
        values = np.ascontiguousarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(-1)
        assert values.size == int(t.n_elements), name
        flat = values.tolist()  # float32 → Python float exactly
        stride = values.size // 128
        sampled.append({
            "name": name, "type": t.tensor_type.name,
            "shape": [int(d) for d in reversed(t.shape)],  # outermost first, as GGUFTensorInfo.shape
            "elements": int(t.n_elements),
            "sha256_f32le": hashlib.sha256(values.astype("<f4").tobytes()).hexdigest(),
            "first": flat[:128],
            "strided": [[i * stride, flat[i * stride]] for i in range(128)],
        })
    return {
        "file": {"name": NAME, "size": os.path.getsize(GGUF_FILE), "sha256": EXPECTED_SHA256,
                 "tensor_count": len(reader.tensors), "types": types,
                 "tensors": [[t.name, t.tensor_type.name, [int(d) for d in reversed(t.shape)]] for t in reader.tensors]},
        "metadata": metadata,
        "tensors": sampled,
        "versions": {"gguf": getattr(gguf, "__version__", None) or version("gguf"), "numpy": np.__version__},
    }


def version(package):
    from importlib.metadata import version as v
    return v(package)


def probe_texts(lines):
    """A few hundred varied strings: the shared probes, Gemma's own special and whitespace tokens, and
    WikiText lines, plus seeded random mixes of all of these."""
    texts = list(PROBES)
    texts += [
        "<start_of_turn>user\nWrite a poem.<end_of_turn>\n<start_of_turn>model\n",
        "<bos>Hello<eos>", "x<pad>y<mask>z", "<unk> and <unused0> and <unused99>", "[multimodal] text",
        "<start_of_image><end_of_image>", "<table><tr><td>1</td></tr></table>", "<h1>Title</h1>\n<b>bold</b>",
        "<strong>x</strong><em>y</em><code>z</code>", "<0x41><0x0A>< 0x41>", "\u2581 \u2581\u2581 x",
        "tab\tand\t\ttwo\t\t\t", "\t\n \t\n", "a\r\nb\rc", "\x00\x01\x1f\x7f", "\u200d\u2060\ufeff",
        "👨‍👩‍👧‍👦 family, 🇫🇷 flag, 🧑🏿‍🚀", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛", "한국어 텍스트", "Привет, мир!", "مرحبا بالعالم",
        "हिन्दी पाठ", "ελληνικά", "ﾊﾝｶｸ", "3.14159 2,718 1e-9 0x1F 007 -42 +17 1/2 ¾",
        "2026-12-07T23:59:59Z", "$100.00 €5 ¥300 £2", "C++ && x->y || a<=b != c", "def f(x):\n    return x**2\n",
        "    indented four\n        eight", "x" * 200, "ab" * 50, "\n" * 40, " " * 40 + "end", "end" + " " * 40,
    ]
    texts += [" " * n + "w" for n in range(1, 34)]
    texts += ["a" + "\n" * n + "b" for n in (1, 2, 3, 30, 31, 32, 33)]
    texts += ["a" + "\t" * n + "b" for n in (1, 2, 31, 32)]
    texts += [" " * n for n in (1, 2, 3, 30, 31, 32, 33)]
    nonempty = [l for l in lines if l.strip()]
    texts += nonempty[:60]
    texts += [l[:40] for l in nonempty[60:100]]
    rng = random.Random(28)
    pieces = ["the", " ", "  ", "\n", "\n\n", "\t", "<start_of_turn>", "<end_of_turn>", "<b>", "1", "23", "é",
              "😀", "中", "@-@", " = ", "<0x41>", "ſ", "\u2581", "Zebra", ",", "'s", "<eos>", "[multimodal]"]
    for _ in range(80):
        texts.append("".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))))
    seen, unique = set(), []
    for t in texts:
        if t not in seen:
            seen.add(t)
            unique.append(t)
    return unique


def tokenizer_fixture(reader):
    from transformers import AutoTokenizer, __version__ as transformers_version
    import tokenizers

    tok = AutoTokenizer.from_pretrained(FOLDER, gguf_file=NAME)
    lines = wiki_lines()
    ids = tok(eval_string(lines))["input_ids"]
    assert len(ids) == EXPECTED_EVAL_COUNT, f"evaluation string gave {len(ids)} ids, expected {EXPECTED_EVAL_COUNT}"
    types = field(reader, "tokenizer.ggml.token_type")
    counts = {}
    for t in types:
        counts[str(t)] = counts.get(str(t), 0) + 1
    probes = []
    for i, text in enumerate(probe_texts(lines)):
        entry = {"text": text, "ids": tok(text)["input_ids"]}
        entry["decoded"] = tok.decode(entry["ids"], skip_special_tokens=True)
        if i % 4 == 0:
            entry["ids_no_special"] = tok(text, add_special_tokens=False)["input_ids"]
        probes.append(entry)
    return {
        "gguf": {"architecture": field(reader, "general.architecture"), "model": field(reader, "tokenizer.ggml.model"),
                 "pre": field(reader, "tokenizer.ggml.pre"), "vocab_size": len(types), "token_type_counts": counts,
                 "bos": field(reader, "tokenizer.ggml.bos_token_id"), "eos": field(reader, "tokenizer.ggml.eos_token_id"),
                 "unk": field(reader, "tokenizer.ggml.unknown_token_id"), "pad": field(reader, "tokenizer.ggml.padding_token_id"),
                 "add_bos": field(reader, "tokenizer.ggml.add_bos_token"),
                 "add_eos": field(reader, "tokenizer.ggml.add_eos_token"),
                 "add_space_prefix": field(reader, "tokenizer.ggml.add_space_prefix")},
        "vocab_size": len(tok),
        "eval": {"count": len(ids), "fnv": fnv1a64(ids), "first_ids": ids[:64], "last_ids": ids[-64:],
                 "decoded_fnv": fnv1a64_bytes(tok.decode(ids, skip_special_tokens=True).encode("utf-8"))},
        "probes": probes,
        "versions": {"transformers": transformers_version, "tokenizers": tokenizers.__version__,
                     "gguf": version("gguf")},
    }


def dump(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(value, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def main():
    if not os.path.exists(GGUF_FILE):
        sys.exit(f"{os.path.relpath(GGUF_FILE, ROOT)} is missing: run `make setup` (scripts/fetch_gemma3.sh)")
    if sha256_file(GGUF_FILE) != EXPECTED_SHA256:
        sys.exit(f"{os.path.relpath(GGUF_FILE, ROOT)} has the wrong sha256: run `make setup` again")
    reader = gguf.GGUFReader(GGUF_FILE)
    dump(GGUF_OUT, gguf_fixture(reader))
    print(f"wrote {os.path.relpath(GGUF_OUT, ROOT)}")
    dump(TOKENIZER_OUT, tokenizer_fixture(reader))
    print(f"wrote {os.path.relpath(TOKENIZER_OUT, ROOT)}")


if __name__ == "__main__":
    main()
