#!/usr/bin/env python3
"""Reference ids for the tokenizer built from a GGUF file's tokenizer.ggml.* metadata (Swift:
`Tokenizer(gguf:)`, `GGUFTokenizer.write`), for SmolLM2-135M-Instruct.

Run from the repository root:  $PYTHON scripts/make_gguf_tokenizer_fixtures.py
Check a written tokenizer folder against the reference:
    $PYTHON scripts/make_gguf_tokenizer_fixtures.py --check DIR

The reference is built here, independently of the Swift code, from the metadata the `gguf` package reads
out of ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf: a Hugging Face `tokenizers`
BPE over tokenizer.ggml.tokens and tokenizer.ggml.merges, control tokens (token_type 3) as special added
tokens, and the pre-tokenizer llama.cpp uses for tokenizer.ggml.pre = "smollm" (src/llama-vocab.cpp: the
regex `\\p{N}` first, isolating every number character, then the GPT-2 split), which is the original SmolLM2
tokenizer.json's Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False,
use_regex=True)]. transformers' own GGUF loader drops the Digits step, so it is not the reference.
tokenizer.ggml.add_bos_token is false: nothing is added.

What it writes (small derived data only, never the vocabulary):
  Fixtures/tokenizers/expected/smollm2-gguf.lines.txt   per line of wiki.test.raw: "<count> <fnv>" of the
      ids (add_special_tokens=True), plus the fnv of decode(ids) when that is not the line
  Fixtures/tokenizers/expected/smollm2-gguf.json   gguf: the metadata's sizes and ids (to check the spec
      read); vocab_size; eval: count, fnv, first and last 64 ids of the whole evaluation string; lines: full
      ids of the first non-empty lines; probes: edge cases with and without special tokens; stages: the
      reference's normalizer / pre_tokenizer / decoder as `tokenizers` serializes them

fnv and the evaluation string as in scripts/make_tokenizer_fixtures.py (../shared/README.md).
"""
import json
import os
import sys

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tokenizer_fixtures import (PROBES, FULL_LINES, dump, eval_string, fnv1a64, fnv1a64_bytes,  # noqa: E402
                                     wiki_lines, write)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared"))
GGUF_FILE = os.path.join(SHARED, "models", "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "Fixtures", "tokenizers", "expected")

# The figures ../shared/README.md states for this model's evaluation string.
EXPECTED_EVAL_COUNT = 304_978
EXPECTED_FIRST_IDS = [1116, 446, 6356, 389]


def metadata(path):
    r = gguf.GGUFReader(path)

    def get(key):
        f = r.fields.get(key)
        return None if f is None else f.contents()
    return {k: get("tokenizer.ggml." + k) for k in
            ["model", "pre", "tokens", "token_type", "merges", "bos_token_id", "eos_token_id",
             "unknown_token_id", "padding_token_id", "add_bos_token", "add_eos_token", "add_space_prefix"]}


def reference(meta):
    assert meta["model"] == "gpt2" and meta["pre"] == "smollm", (meta["model"], meta["pre"])
    tokens, types = meta["tokens"], meta["token_type"]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens), "duplicate tokens"
    merges = [tuple(m.split(" ", 1)) for m in meta["merges"]]
    tok = Tokenizer(models.BPE(vocab, merges, dropout=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    assert not meta["add_bos_token"] and not meta["add_eos_token"]
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, t in enumerate(types) if t == 3])
    assert all(t in (1, 3) for t in types), "user-defined or other token types: extend the reference"
    return tok


def expected(tok, lines):
    out_lines, full = [], []
    for i, line in enumerate(lines):
        ids = tok.encode(line).ids
        decoded = tok.decode(ids)
        field = "" if decoded == line else " " + fnv1a64_bytes(decoded.encode("utf-8"))
        out_lines.append("%d %s%s" % (len(ids), fnv1a64(ids), field))
        if line.strip() and len(full) < FULL_LINES:
            entry = {"line": i, "ids": ids}
            if decoded != line:
                entry["decoded"] = decoded
            full.append(entry)
    ev = tok.encode(eval_string(lines)).ids
    assert len(ev) == EXPECTED_EVAL_COUNT and ev[:4] == EXPECTED_FIRST_IDS, (len(ev), ev[:4])
    probes = []
    for text in PROBES + ["12345 + 6.7e-8 = x²½٣", "<|im_start|>user\nHi 2024<|im_end|>\n", "<|endoftext|>"]:
        ids = tok.encode(text).ids
        probes.append({"text": text, "ids": ids, "ids_no_special": tok.encode(text, add_special_tokens=False).ids,
                       "decoded": tok.decode(ids), "decoded_with_special": tok.decode(ids, skip_special_tokens=False)})
    return out_lines, ev, full, probes


def check(directory, ev_ref, lines):
    """Loads a written folder with `tokenizers` and transformers and compares them with the reference."""
    from transformers import AutoTokenizer
    text = eval_string(lines)
    fast = Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(directory)
    ok = True
    for name, ids in [("tokenizers", fast.encode(text).ids), ("transformers AutoTokenizer", auto(text)["input_ids"])]:
        same = ids == ev_ref
        ok &= same
        print("%s: %d ids, %s" % (name, len(ids), "identical to the reference" if same else "DIFFERENT"))
    bad = sum(fast.encode(l).ids != auto(l)["input_ids"] for l in lines)
    print("lines where tokenizers and transformers disagree: %d" % bad)
    return ok and bad == 0


def main():
    meta = metadata(GGUF_FILE)
    tok = reference(meta)
    lines = wiki_lines()
    out_lines, ev, full, probes = expected(tok, lines)
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        sys.exit(0 if check(sys.argv[2], ev, lines) else 1)
    ref = json.loads(tok.to_str())
    write(os.path.join(OUT, "smollm2-gguf.lines.txt"), "\n".join(out_lines) + "\n")
    write(os.path.join(OUT, "smollm2-gguf.json"), dump({
        "gguf": {"model": meta["model"], "pre": meta["pre"], "tokens": len(meta["tokens"]),
                 "merges": len(meta["merges"]), "control_tokens": sum(t == 3 for t in meta["token_type"]),
                 "bos_token_id": meta["bos_token_id"], "eos_token_id": meta["eos_token_id"],
                 "unknown_token_id": meta["unknown_token_id"], "padding_token_id": meta["padding_token_id"],
                 "add_bos_token": meta["add_bos_token"]},
        "vocab_size": max(tok.get_vocab(with_added_tokens=True).values()) + 1,
        "eval": {"count": len(ev), "fnv": fnv1a64(ev), "first_ids": ev[:64], "last_ids": ev[-64:]},
        "stages": {k: ref[k] for k in ["normalizer", "pre_tokenizer", "decoder"]},
        "lines": full,
        "probes": probes,
    }))
    print("eval string: %d ids, first %s, fnv %s" % (len(ev), ev[:4], fnv1a64(ev)))


if __name__ == "__main__":
    main()
