#!/usr/bin/env python3
"""Makes the Datasets test fixtures and prints the expected values the Swift tests check.

Run from the repository root:  $PYTHON scripts/make_datasets_fixtures.py
(plain python3 is enough unless the calibration-file hash is wanted; that part needs numpy + safetensors).

Writes
  Fixtures/datasets/c4-mini.json.gz    two gzip members of C4-style JSON lines (escapes, CRLF, blank line)
  Fixtures/datasets/wikitext-edge.raw  WikiText-style lines exercising the row rule (CR, CRLF, Python-only
                                       whitespace, no final newline)
and prints
  - the WikiText-2 evaluation string's length (code points, UTF-8 bytes), row counts and sha256, built the
    way the Hugging Face `wikitext` loader builds its rows;
  - the rows of wikitext-edge.raw by the same rule;
  - FNV-1a 64 over little-endian int32 ids for small vectors and for the shared calibration-tokens file.
"""
import gzip
import hashlib
import io
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "Fixtures", "datasets")
SHARED = os.path.join(ROOT, "..", "shared")

# The documents of c4-mini.json.gz, in file order. The Swift test holds the same literals.
DOCS_MEMBER1 = [
    "The first document.",
    "Caf\u00e9 \u2014 na\u00efve r\u00e9sum\u00e9 \U0001F600",
]
DOCS_MEMBER2 = [
    "Line one\nLine two\twith tab \"quoted\" \\ backslash",
    "",
    "last one",
]


def member(lines, level, filename):
    buf = io.BytesIO()
    # mtime fixed so the fixture is reproducible byte for byte.
    with gzip.GzipFile(filename=filename, mode="wb", compresslevel=level, fileobj=buf, mtime=0) as g:
        g.write(lines.encode("utf-8"))
    return buf.getvalue()


def make_c4():
    m1 = "".join(
        json.dumps({"text": t, "timestamp": "2019-04-25T12:57:54Z", "url": f"https://example.com/{i}"}) + "\n"
        for i, t in enumerate(DOCS_MEMBER1)
    ) + "\n"  # a blank line, skipped
    m2 = (json.dumps({"url": "https://example.com/2", "text": DOCS_MEMBER2[0]}) + "\r\n"
          + json.dumps({"text": DOCS_MEMBER2[1]}, ensure_ascii=False) + "\n"
          + json.dumps({"text": DOCS_MEMBER2[2], "n": [1, {"a": None}]}))  # no final newline
    data = member(m1, 9, "part1.json") + member(m2, 1, "")
    path = os.path.join(FIX, "c4-mini.json.gz")
    with open(path, "wb") as f:
        f.write(data)
    # Sanity: Python's own reader sees the same documents.
    docs = [json.loads(l)["text"] for l in gzip.decompress(data).decode("utf-8").split("\n") if l.strip()]
    assert docs == DOCS_MEMBER1 + DOCS_MEMBER2, docs
    print(f"wrote {path} ({len(data)} bytes)")


def hf_wikitext_rows(path):
    # What the Hugging Face `wikitext` loader does (_generate_examples): universal newlines, str.strip().
    rows = []
    with open(path, encoding="utf-8") as f:
        for row in f:
            rows.append(row if row.strip() else "")
    return rows


def make_wikitext_edge():
    raw = ("\n"
           " = Title = \n"
           "   \n"
           "\t\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u3000\u2028\n"  # only Python whitespace: empty row
           "a line with CRLF\r\n"
           "a line with CR\rand one after it\n"
           "\r\n"
           " \u00e9t\u00e9 \u2014 \U0001F600 \n"
           "\ufeff\n"  # U+FEFF is not whitespace for Python: kept
           "no final newline")
    path = os.path.join(FIX, "wikitext-edge.raw")
    with open(path, "wb") as f:
        f.write(raw.encode("utf-8"))
    print(f"wrote {path}")
    for r in hf_wikitext_rows(path):
        print("   ", json.dumps(r))


def fnv1a64_int32(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        for b in (i & 0xFFFFFFFF).to_bytes(4, "little"):
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def main():
    os.makedirs(FIX, exist_ok=True)
    make_c4()
    make_wikitext_edge()

    raw = os.path.join(SHARED, "text", "wikitext-2-raw", "wiki.test.raw")
    rows = hf_wikitext_rows(raw)
    s = "\n\n".join(rows)
    b = s.encode("utf-8")
    print("wikitext-2 test evaluation string:")
    print("  rows", len(rows), "non-empty rows", sum(1 for r in rows if r))
    print("  code points", len(s), "utf-8 bytes", len(b))
    print("  sha256", hashlib.sha256(b).hexdigest())

    print("fnv1a64 int32 LE of [] :", fnv1a64_int32([]))
    print("fnv1a64 int32 LE of [1, 2, 3] :", fnv1a64_int32([1, 2, 3]))
    print("fnv1a64 int32 LE of [0, 511, 65536, 2147483647] :", fnv1a64_int32([0, 511, 65536, 2147483647]))

    calib = os.path.join(SHARED, "calibration", "stories260K-wikitext2valid-128x512-seed0.safetensors")
    try:
        from safetensors.numpy import load_file
    except ImportError:
        print("(safetensors not installed: calibration hash skipped)", file=sys.stderr)
        return
    ids = load_file(calib)["input_ids"]
    print("calibration file input_ids", ids.dtype, ids.shape)
    print("  fnv1a64 all rows:", fnv1a64_int32(ids.reshape(-1).tolist()))
    print("  fnv1a64 rows 0..<4, cols 0..<100:", fnv1a64_int32(ids[:4, :100].reshape(-1).tolist()))
    print("  first ids of row 0:", ids[0, :8].tolist())


if __name__ == "__main__":
    main()
