#!/usr/bin/env python3
"""Regenerates Fixtures/tokenizers/: expected token ids from Hugging Face `tokenizers` for the Swift
Tokenizers module's tests.

Run from the repository root:  $PYTHON scripts/make_tokenizer_fixtures.py

What it writes:
  <name>/tokenizer.json (+ tokenizer_config.json)   three small tokenizers trained here:
      bytelevel-gpt2    GPT-2 style: ByteLevel pre-tokenizer (add_prefix_space, GPT-2 regex), merges in
                        the legacy "a b" string form, special token @-@, normalized added token @,@ (lstrip)
      bytelevel-llama3  LLaMA-3 style: NFC, Split(LLaMA-3 regex, Isolated) + ByteLevel(no regex),
                        ignore_merges, Sequence[ByteLevel, TemplateProcessing] post-processor,
                        single_word/rstrip added token @.@, tokenizer_config.json with bos/eos
      metaspace-unk     SentencePiece style without byte fallback: Metaspace(prepend first, split),
                        unk_token with fuse_unk, no post-processor, add_bos_token in tokenizer_config.json
  manifest.json         for every tokenizer tested (the three above and the four in ../shared): where its
                        tokenizer.json is, the FNV-1a 64 of that file, and which expected-ids file applies
                        (byte-identical tokenizer.json files share one)
  expected/<key>.lines.txt  one line per line of wiki.test.raw (split on "\\n", the empty piece after the
                        final newline dropped): "<count> <fnv>" of encode(line) with special tokens, and a
                        third field, the fnv of the UTF-8 bytes of decode(ids), when that is not the line
  expected/<key>.json   vocab_size: 1 + the largest id of get_vocab(with_added_tokens=True);
                        eval: count and fnv of the ids of the whole evaluation string (with BOS);
                        lines: full ids (and decode() where it is not the line) of the first non-empty
                        lines;
                        probes: hand-picked edge-case strings: ids with and without special tokens, and
                        decode with and without skipping special tokens
  stages.json           each supported stage type in isolation: a config (as tokenizers serializes it),
                        inputs and the outputs of the Python bindings (normalize_str, pre_tokenize_str,
                        decoder.decode, BPE.tokenize)

fnv = 64-bit FNV-1a over the ids, each as 4 little-endian bytes (uint32), printed as 16 hex digits.
Evaluation string (per ../shared/README.md): each line of wiki.test.raw with its "\\n" if it has a
non-whitespace character, else ""; joined with "\\n\\n".
"""
import hashlib
import json
import os
import sys

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared"))
OUT = os.path.join(ROOT, "Fixtures", "tokenizers")
WIKI_TEST = os.path.join(SHARED, "text", "wikitext-2-raw", "wiki.test.raw")
SHAKESPEARE = os.path.join(SHARED, "text", "tinyshakespeare", "input.txt")
WIKI_VALID = os.path.join(SHARED, "text", "wikitext-2", "wiki.valid.tokens")

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

FULL_LINES = 25

# Edge cases for whole tokenizers and for stages.
PROBES = [
    "", " ", "  ", "\n", "\n\n", "a", "Hello world", " Hello  world ", "Hello world's  test\n\n  12345 ¿x",
    "I'M don'T  ſ 'll 'RE 'Ve", "tab\there\r\nnext\r\n\r\n  line", "a\u3000b\x85c\x0bd\u00a0e\u200bf",
    "emoji 😀👍🏽 done", "中文字符 and 日本語テキスト", "1234567 89 ٣٤٥ ½", "x!!!  ?? \n", "...---...",
    "e\u0301 é Å Å ί ί", "ﬁ ① ＡＢＣ", "ΣΑΣ İstanbul ß", "<s>hello</s>", " <s> x", "hello<s>world",
    "<unk>", "hello<|bos|>world<|endoftext|>", " @-@ 5 @,@ 000 @.@ x", "1 @.@ 5 and a@.@b",
    "<|begin_of_text|>Hi<|eot_id|>", "  trailing spaces   ", "\u2581already\u2581metaspace",
    " = Robert Boulter = ", "The game 's \" Pine \" 1 @,@ 000 @-@ run",
]


def fnv1a64(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        for b in int(i).to_bytes(4, "little"):
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def fnv1a64_bytes(data):
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def wiki_lines():
    raw = open(WIKI_TEST, encoding="utf-8", newline="").read()
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def eval_string(lines):
    return "\n\n".join((l + "\n") if l.strip() else "" for l in lines)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def dump(obj):
    """JSON with one line per member of the top-level object / items of its arrays (diffable, compact)."""
    def enc(v):
        return json.dumps(v, ensure_ascii=True, separators=(",", ":"))
    if isinstance(obj, list):
        return "[\n" + ",\n".join(enc(v) for v in obj) + "\n]\n"
    parts = []
    for k, v in obj.items():
        if isinstance(v, list):
            parts.append(enc(k) + ":[\n" + ",\n".join(enc(x) for x in v) + "\n]")
        else:
            parts.append(enc(k) + ":" + enc(v))
    return "{\n" + ",\n".join(parts) + "\n}\n"


# ---------------------------------------------------------------- trained fixture tokenizers

def train_gpt2():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2048, special_tokens=["<|endoftext|>", "<|bos|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train([SHAKESPEARE], trainer)
    bos = tok.token_to_id("<|bos|>")
    tok.post_processor = processors.TemplateProcessing(single="<|bos|> $A", special_tokens=[("<|bos|>", bos)])
    tok.add_special_tokens([AddedToken("@-@", special=True, normalized=False)])
    tok.add_tokens([AddedToken("@,@", special=False, normalized=True, lstrip=True)])
    data = json.loads(tok.to_str())
    # Older files store merges as "a b" strings; byte-level tokens never contain spaces, so this is exact.
    data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in data["model"]["merges"]]
    return data, None


def train_llama3():
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train([WIKI_VALID], trainer)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    tok.add_tokens([AddedToken("@.@", special=False, normalized=False, single_word=True, rstrip=True)])
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>",
        "eos_token": {"__type": "AddedToken", "content": "<|end_of_text|>", "lstrip": False, "normalized": False,
                      "rstrip": False, "single_word": False, "special": True},
        "clean_up_tokenization_spaces": False,
    }
    return json.loads(tok.to_str()), config


def train_metaspace():
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train([SHAKESPEARE], trainer)
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
              "add_eos_token": False}
    return json.loads(tok.to_str()), config


# ---------------------------------------------------------------- expected ids

class Subject:
    """A tokenizer under test, with encode semantics matching the Swift Tokenizer."""

    def __init__(self, tokenizer_path, config):
        self.tok = Tokenizer.from_file(tokenizer_path)
        self.config = config or {}
        self.has_post = json.load(open(tokenizer_path, encoding="utf-8")).get("post_processor") is not None

    def _config_id(self, key):
        v = self.config.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        return None if v is None else self.tok.token_to_id(v)

    def encode(self, text, special=True):
        ids = self.tok.encode(text, add_special_tokens=special).ids
        # Without a post-processor, tokenizer_config.json's add_bos_token / add_eos_token decide.
        if special and not self.has_post:
            if self.config.get("add_bos_token"):
                ids = [self._config_id("bos_token")] + ids
            if self.config.get("add_eos_token"):
                ids = ids + [self._config_id("eos_token")]
        return ids

    def decode(self, ids, skip=True):
        return self.tok.decode(ids, skip_special_tokens=skip)


def expected_for(subject, lines):
    out_lines = []
    full = []
    for i, line in enumerate(lines):
        ids = subject.encode(line)
        decoded = subject.decode(ids)
        if decoded == line:
            out_lines.append("%d %s" % (len(ids), fnv1a64(ids)))
        else:
            out_lines.append("%d %s %s" % (len(ids), fnv1a64(ids), fnv1a64_bytes(decoded.encode("utf-8"))))
        if line.strip() and len(full) < FULL_LINES:
            entry = {"line": i, "ids": ids}
            if decoded != line:
                entry["decoded"] = decoded
            full.append(entry)
    ev = subject.encode(eval_string(lines))
    probes = []
    for text in PROBES:
        ids = subject.encode(text)
        plain = subject.encode(text, special=False)
        probes.append({"text": text, "ids": ids, "ids_no_special": plain,
                       "decoded": subject.decode(ids), "decoded_with_special": subject.decode(ids, skip=False)})
    return "\n".join(out_lines) + "\n", {
        "vocab_size": max(subject.tok.get_vocab(with_added_tokens=True).values()) + 1,
        "eval": {"count": len(ev), "fnv": fnv1a64(ev), "first_ids": ev[:64]},
        "lines": full,
        "probes": probes,
    }


# ---------------------------------------------------------------- stage cases

def component_json(kind, component):
    """The JSON `tokenizers` writes for a component, taken from a throwaway tokenizer's to_str()."""
    tok = Tokenizer(models.BPE())
    setattr(tok, kind, component)
    return json.loads(tok.to_str())[kind]


STAGE_INPUTS = PROBES + ["Hey  you there", "hey", "\u2581\u2581x", "a-b--c-", "abc123def4567"]


def stage_cases():
    cases = {"normalizer": [], "pre_tokenizer": [], "decoder": [], "model": []}

    norms = [
        normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]),
        normalizers.Prepend("\u2581"),
        normalizers.Replace(" ", "\u2581"),
        normalizers.Replace("ab", "X"),
        normalizers.Replace(Regex(r"\s+"), "_"),
        normalizers.NFC(), normalizers.NFD(), normalizers.NFKC(), normalizers.NFKD(),
        normalizers.Lowercase(),
        normalizers.Strip(left=True, right=True), normalizers.Strip(left=False, right=True),
        normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()]),
    ]
    for n in norms:
        cases["normalizer"].append({"config": component_json("normalizer", n),
                                    "cases": [[s, n.normalize_str(s)] for s in STAGE_INPUTS]})

    pres = [
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False),
        pre_tokenizers.Split(Regex(GPT2_PATTERN), behavior="isolated"),
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
        pre_tokenizers.Split(Regex(r"\d+"), behavior="removed"),
        pre_tokenizers.Split(Regex(r"\s"), behavior="merged_with_previous"),
        pre_tokenizers.Split("-", behavior="merged_with_next"),
        pre_tokenizers.Split("-", behavior="contiguous"),
        pre_tokenizers.Split(Regex(r"[a-z]+"), behavior="isolated", invert=True),
        pre_tokenizers.Split(Regex(r"(?i:the)\S*"), behavior="removed", invert=True),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=False),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=True),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
        pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                 pre_tokenizers.Metaspace(prepend_scheme="first")]),
    ]
    for p in pres:
        cases["pre_tokenizer"].append({"config": component_json("pre_tokenizer", p),
                                       "cases": [[s, [w for w, _ in p.pre_tokenize_str(s)]] for s in STAGE_INPUTS]})

    token_lists = [
        ["\u2581Hello", "\u2581world", "<0x0A>", "<0xE2>", "<0x82>", "<0xAC>", "\u2581!"],
        ["<0xE2>", "<0x82>", "a", "<0xAC>", "<0x41>"],
        ["\u2581\u2581a", "\u2581b\u2581", "c"],
        ["a\u2581\u2581b", "\u2581b"],
        ["  a  ", " b", "   "],
        ["\u0120Hello", "\u0120w\u00c3\u00b6rld", "\u010a", "\u00e2\u0124\u00ac", "\u00e2", "plain\u2603"],
        ["<0x41>", "<0xZZ>", "<0x4>", "<0x+1>"],
        [],
    ]
    decs = [
        decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                           decoders.Strip(content=" ", left=1, right=0)]),
        decoders.ByteFallback(),
        decoders.Fuse(),
        decoders.Strip(content=" ", left=2, right=1),
        decoders.Replace("\u2581", " "),
        decoders.Metaspace(replacement="\u2581", prepend_scheme="always"),
        decoders.Metaspace(replacement="\u2581", prepend_scheme="never"),
        decoders.Metaspace(replacement="\u2581", prepend_scheme="first"),
        decoders.ByteLevel(),
    ]
    for d in decs:
        cases["decoder"].append({"config": component_json("decoder", d),
                                 "cases": [[t, d.decode(t)] for t in token_lists]})

    # BPE models in isolation.
    vocab = {"<unk>": 0, "u": 1, "n": 2, "r": 3, "e": 4, "l": 5, "a": 6, "t": 7, "d": 8, "re": 9, "at": 10,
             "ed": 11, "un": 12, "ated": 13, "rel": 14, "related": 15, "unrelated": 16, "aa": 17, "aaaa": 18,
             "<0x61>": 19, "<0xC3>": 20, "<0xA9>": 21}
    merges = [("r", "e"), ("a", "t"), ("e", "d"), ("u", "n"), ("at", "ed"), ("re", "l"), ("rel", "ated"),
              ("un", "related"), ("a", "a"), ("aa", "aa")]
    words = ["unrelated", "related", "aaaaa", "aaa", "xyz", "uxxn", "éa", "aéé", "x", "unrelatedx", "tea"]
    bpes = [
        models.BPE(vocab, merges, unk_token="<unk>", fuse_unk=False),
        models.BPE(vocab, merges, unk_token="<unk>", fuse_unk=True),
        models.BPE(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True),
        models.BPE(vocab, merges, fuse_unk=False),
        models.BPE(vocab, merges, unk_token="<unk>", ignore_merges=True),
        models.BPE({"a": 0, "##b": 1, "##c": 2, "ab": 3, "abc": 4, "[UNK]": 5, "c": 6},
                   [("a", "##b"), ("ab", "##c")], unk_token="[UNK]", continuing_subword_prefix="##"),
        models.BPE({"a": 0, "b": 1, "c</w>": 2, "ab": 3, "abc</w>": 4, "[UNK]": 5, "b</w>": 6},
                   [("a", "b"), ("ab", "c</w>")], unk_token="[UNK]", end_of_word_suffix="</w>"),
    ]
    extra_words = ["ab", "abc", "abcab", "acb", "b", "c"]
    for m in bpes:
        cfg = component_json("model", m)
        cfg["merges"] = [list(x) if isinstance(x, (list, tuple)) else x for x in cfg["merges"]]
        cases["model"].append({"config": cfg,
                               "cases": [[w, [t.id for t in m.tokenize(w)]] for w in words + extra_words]})
    return cases


# ---------------------------------------------------------------- main

def main():
    for path in (WIKI_TEST, SHAKESPEARE, WIKI_VALID):
        if not os.path.exists(path):
            sys.exit("missing shared data: %s" % path)
    lines = wiki_lines()
    assert len(lines) == 4358, len(lines)

    trained = {"bytelevel-gpt2": train_gpt2, "bytelevel-llama3": train_llama3, "metaspace-unk": train_metaspace}
    subjects = []  # (name, tokenizer.json path relative to repo root, absolute dir, config)
    for name, fn in trained.items():
        data, config = fn()
        d = os.path.join(OUT, name)
        write(os.path.join(d, "tokenizer.json"), json.dumps(data, ensure_ascii=False) + "\n")
        if config is not None:
            write(os.path.join(d, "tokenizer_config.json"), json.dumps(config, indent=1) + "\n")
        elif os.path.exists(os.path.join(d, "tokenizer_config.json")):
            os.remove(os.path.join(d, "tokenizer_config.json"))
        subjects.append((name, "Fixtures/tokenizers/" + name, d, config))
    for rel in ("models/stories260K", "models/llama2xs", "models/aidreams260K", "tokenizers/llama2"):
        d = os.path.join(SHARED, rel)
        config = json.load(open(os.path.join(d, "tokenizer_config.json")))
        subjects.append((rel.split("/")[-1], "../shared/" + rel, d, config))

    manifest = []
    done = {}
    for name, rel, d, config in subjects:
        path = os.path.join(d, "tokenizer.json")
        blob = open(path, "rb").read()
        cfg_path = os.path.join(d, "tokenizer_config.json")
        cfg_blob = open(cfg_path, "rb").read() if os.path.exists(cfg_path) else b""
        key = hashlib.sha256(blob + b"\0" + cfg_blob).hexdigest()
        if key not in done:
            subject = Subject(path, config)
            line_text, info = expected_for(subject, lines)
            write(os.path.join(OUT, "expected", name + ".lines.txt"), line_text)
            write(os.path.join(OUT, "expected", name + ".json"), dump(info))
            done[key] = name
            print("%-18s eval ids %d" % (name, info["eval"]["count"]))
        manifest.append({"name": name, "directory": rel, "tokenizer_fnv": fnv1a64_bytes(blob),
                         "expected": done[key]})
    write(os.path.join(OUT, "manifest.json"), dump(manifest))
    write(os.path.join(OUT, "stages.json"), dump(stage_cases()))


if __name__ == "__main__":
    main()
