#!/usr/bin/env python3
"""Reference perplexities of Gemma 3 270M as transformers computes them, loading the GGUF itself in float32.

The model is models/gemma-3-270m/gemma-3-270m-q4_k_m.gguf (`make setup` fetches it); transformers dequantizes
it and undoes llama.cpp's conversion (norm weights stored as 1 + w). The text is the WikiText-2 raw test file
(../shared/text/wikitext-2-raw/wiki.test.raw) joined as the Wanda protocol does and tokenized as
`tokenizer(text)` (BOS added). For each --seqlen the first --windows non-overlapping windows are scored one
at a time: the mean next-token NLL of each window (float64 sum of float32 log-softmax values) and the
perplexity over them.

Run from the repository root:  $PYTHON scripts/gemma3_reference.py --seqlen 512 --windows 2 --seqlen 2048 --windows 8
($PYTHON: a virtualenv with torch, transformers, gguf, sentencepiece, protobuf; see scripts/README.md.)
Prints one JSON object; with --output also writes it (Fixtures/gemma3/reference.json is this script's).
"""
import argparse
import json
import math
import os
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.normpath(os.path.join(REPO, "..", "shared"))
GGUF_DIR = os.path.join(REPO, "models", "gemma-3-270m")
GGUF_FILE = "gemma-3-270m-q4_k_m.gguf"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seqlen", type=int, action="append", required=True)
    ap.add_argument("--windows", type=int, action="append", required=True)
    ap.add_argument("--output")
    args = ap.parse_args()
    assert len(args.seqlen) == len(args.windows), "one --windows per --seqlen"
    torch.set_grad_enabled(False)
    tokenizer = AutoTokenizer.from_pretrained(GGUF_DIR, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(GGUF_DIR, gguf_file=GGUF_FILE, dtype=torch.float32)
    model.eval()
    with open(os.path.join(SHARED, "text/wikitext-2-raw/wiki.test.raw"), encoding="utf-8") as f:
        rows = [row if row.strip() else "" for row in f]
    ids = tokenizer("\n\n".join(rows))["input_ids"]
    out = {"model": f"models/gemma-3-270m/{GGUF_FILE}", "transformers": __import__("transformers").__version__,
           "tokens": len(ids), "runs": []}
    for seqlen, windows in zip(args.seqlen, args.windows):
        nll = []
        start = time.time()
        for w in range(windows):
            x = torch.tensor([ids[w * seqlen:(w + 1) * seqlen]])
            logits = model(x).logits[0, :-1].float()
            lp = torch.log_softmax(logits, dim=-1)
            target = x[0, 1:]
            nll.append(-lp.gather(1, target[:, None]).double().sum().item() / (seqlen - 1))
        total = sum(n * (seqlen - 1) for n in nll) / (windows * (seqlen - 1))
        out["runs"].append({"seqlen": seqlen, "windows": windows, "window_mean_nll": nll,
                            "perplexity": math.exp(total), "seconds": time.time() - start})
    text = json.dumps(out, indent=1)
    print(text)
    if args.output:
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
