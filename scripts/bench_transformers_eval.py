#!/usr/bin/env python3
"""Benchmark baseline: Hugging Face transformers float32 (or bfloat16) WikiText-2 evaluation of a checkpoint.

Loads the checkpoint (default bench-data/tinyllama-random, made by make_bench_checkpoint.py) in --dtype,
evaluates the first --windows non-overlapping windows of --seqlen tokens of the WikiText-2 test string
(the protocol of shared/README.md) one window at a time, and prints one JSON line:
{tokens_per_second, peak_rss_bytes, seconds, ...}. `seconds` covers the forward passes only (not loading or
tokenizing); peak_rss_bytes is the process's ru_maxrss (the whole run, loading included).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_prune import REPO, SHARED, wikitext_eval_ids  # noqa: E402  (also tunes malloc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(REPO, "bench-data", "tinyllama-random"))
    ap.add_argument("--eval-file", default=os.path.join(SHARED, "text/wikitext-2-raw/wiki.test.raw"))
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"],
                    help="transformers attention implementation (sdpa is its default)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="weights and activations (bfloat16: PyTorch's bf16 CPU kernels; log-softmax in float32)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import LlamaForCausalLM
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    t0 = time.time()
    model = LlamaForCausalLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype), attn_implementation=args.attn)
    model.eval()
    load_s = time.time() - t0
    t0 = time.time()
    ids = wikitext_eval_ids(os.path.join(args.model, "tokenizer.json"), args.eval_file)
    if ids[0] is None:  # no "<s>" in the vocabulary (e.g. SmolLM2): the config's BOS, as llm-prune uses
        ids[0] = model.config.bos_token_id
    tok_s = time.time() - t0
    nwin = min(args.windows, len(ids) // args.seqlen)
    data = torch.tensor(ids[:nwin * args.seqlen], dtype=torch.long).reshape(nwin, args.seqlen)
    total, count = 0.0, 0
    t0 = time.time()
    with torch.no_grad():
        for i in range(nwin):
            x = data[i:i + 1]
            logits = model(input_ids=x, use_cache=False).logits
            lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            total += float(-lp.gather(-1, x[:, 1:, None]).double().sum())
            count += args.seqlen - 1
    secs = time.time() - t0
    print(json.dumps({
        "tokens_per_second": nwin * args.seqlen / secs,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "seconds": secs,
        "windows": nwin, "seqlen": args.seqlen, "perplexity": math.exp(total / count),
        "load_seconds": load_s, "tokenize_seconds": tok_s, "attn": args.attn, "dtype": args.dtype,
        "threads": torch.get_num_threads(), "model": args.model,
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
    }))


if __name__ == "__main__":
    main()
