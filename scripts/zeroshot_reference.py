#!/usr/bin/env python3
"""Reference per-choice log-likelihoods for the zero-shot tasks, with transformers (float32, CPU).

The request construction is written here from ../shared/data/zeroshot/README.md (the specification),
independently of the Swift code and of lm-eval's sources:

* context / continuation strings per task (README sections 2-8), continuation = " " + choice,
  WinoGrande's partial scoring (two contexts, one continuation);
* lm-eval's `_encode_pair`: trailing spaces of the context move to the continuation;
  ctx = encode(context), cont = encode(context + continuation)[len(ctx):];
* model input = (ctx + cont)[-(max_length + 1):][:-1]; score = sum of log_softmax at the cont positions;
  is_greedy = every cont token is the argmax;
* special tokens: the tokenizer's default (add_special_tokens=True, lm-eval 0.4) or none (--no-special-tokens,
  lm-eval 0.3 / Wanda).

Scoring follows lm-eval's HF backend: requests sorted by length (longest first), right-padded batches of
--batch-size, one full forward pass per request (the context is recomputed for every choice) and a
log_softmax over the whole (batch, tokens, vocab) logits.

Outputs:
  --out FILE.jsonl      one line per document: task, doc, gold, prediction, loglikelihoods, is_greedy
                        (the format of `llm-prune eval --write-scores`);
  --fixture FILE.json   the first --fixture-docs documents per task with the token ids of every request
                        and its log-likelihood (the committed test fixtures);
  --compare SWIFT.jsonl compare with `llm-prune eval --write-scores` output: max |difference| and
                        predictions that differ (exit 1 if above --tolerance or any differ);
                        with --reuse, --out is read instead of recomputed.
Timing (docs/s over the scored requests) goes to stderr and into --out's companion .timing.json.

Example (the agreement run of docs/RESULTS.md):
  $PYTHON scripts/zeroshot_reference.py --model ../shared/models/stories260K --limit 100 \\
      --out out/ref-stories.jsonl
"""
import argparse
import bz2
import json
import math
import os
import re
import sys
import time

TASKS = ["boolq", "rte", "sglue_rte", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa", "piqa"]
PAPER_TASKS = ["boolq", "rte", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa", "piqa"]
NORM_TASKS = {"hellaswag", "arc_easy", "arc_challenge", "openbookqa", "piqa"}


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def hellaswag_preprocess(text):
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def docs_for(task, data_dir):
    """[(requests [(context, continuation)], choices [str], gold)] in file order."""
    p = lambda *parts: os.path.join(data_dir, *parts)
    out = []
    if task == "boolq":
        for d in jsonl(p("boolq", "val.jsonl")):
            ctx = f"{d['passage']}\nQuestion: {d['question']}?\nAnswer:"
            out.append((ctx, ["no", "yes"], 1 if d["label"] else 0))
    elif task == "rte":
        for d in jsonl(p("rte", "glue_rte_validation.jsonl")):
            out.append((f"{d['sentence1']}\nQuestion: {d['sentence2']} True or False?\nAnswer:", ["True", "False"], d["label"]))
    elif task == "sglue_rte":
        for d in jsonl(p("rte", "superglue_rte_val.jsonl")):
            out.append((f"{d['premise']}\nQuestion: {d['hypothesis']} True or False?\nAnswer:", ["True", "False"],
                        ["entailment", "not_entailment"].index(d["label"])))
    elif task == "hellaswag":
        exact = p("hellaswag", "hellaswag_val.jsonl")
        if os.path.exists(exact):
            for d in jsonl(exact):
                ctx = d["ctx_a"] + " " + d["ctx_b"].capitalize()
                out.append((hellaswag_preprocess(d["activity_label"] + ": " + ctx),
                            [hellaswag_preprocess(e) for e in d["endings"]], int(d["label"])))
        else:
            with bz2.open(p("hellaswag", "klosax_hellaswag_val_full.txt.bz2"), "rt", encoding="utf-8") as f:
                lines = f.read().split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            for i in range(0, len(lines), 6):
                out.append((hellaswag_preprocess(lines[i]), [hellaswag_preprocess(e) for e in lines[i + 2:i + 6]],
                            int(lines[i + 1])))
    elif task == "winogrande":
        for d in jsonl(p("winogrande", "winogrande_xl_validation.jsonl")):
            s = d["sentence"]
            i = s.index("_")
            cont = " " + s[i + 1:].strip()
            opts = [d["option1"], d["option2"]]
            out.append(([(s[:i] + o, cont) for o in opts], opts, int(d["answer"]) - 1))
        return out
    elif task in ("arc_easy", "arc_challenge", "openbookqa"):
        f = {"arc_easy": ("arc_easy", "ARC-Easy-Test.jsonl"), "arc_challenge": ("arc_challenge", "ARC-Challenge-Test.jsonl"),
             "openbookqa": ("openbookqa", "test.jsonl")}[task]
        for d in jsonl(p(*f)):
            q = d["question"]
            texts = [c["text"] for c in q["choices"]]
            labels = [c["label"] for c in q["choices"]]
            ctx = q["stem"] if task == "openbookqa" else "Question: " + q["stem"] + "\nAnswer:"
            out.append((ctx, texts, labels.index(d["answerKey"].strip())))
    elif task == "piqa":
        rows = jsonl(p("piqa", "valid.jsonl"))
        with open(p("piqa", "valid-labels.lst")) as f:
            labels = [int(x) for x in f.read().split()]
        for d, y in zip(rows, labels):
            out.append(("Question: " + d["goal"] + "\nAnswer:", [d["sol1"], d["sol2"]], y))
    else:
        raise SystemExit(f"unknown task {task}")
    return [([(ctx, " " + c) for c in choices], choices, gold) for ctx, choices, gold in out]


def encode_pair(tok, context, continuation, special):
    n = len(context) - len(context.rstrip())
    if n > 0:
        continuation = context[-n:] + continuation
        context = context[:-n]
    whole = tok.encode(context + continuation, add_special_tokens=special)
    ctx = tok.encode(context, add_special_tokens=special)
    return ctx, whole[len(ctx):]


def score(model, requests, max_length, batch_size, torch):
    """requests: [(ctx ids, cont ids)] → [(ll, greedy)], lm-eval's way (full passes, sorted, padded)."""
    F = torch.nn.functional
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i][0] + requests[i][1]))
    results = [None] * len(requests)
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        inps, conts = [], []
        for i in idx:
            ctx, cont = requests[i]
            inp = (ctx + cont)[-(max_length + 1):][:-1]
            inps.append(inp)
            conts.append(cont)
        width = max(len(x) for x in inps)
        batch = torch.zeros((len(inps), width), dtype=torch.long)
        for r, x in enumerate(inps):
            batch[r, :len(x)] = torch.tensor(x)
        with torch.no_grad():
            logp = F.log_softmax(model(batch).logits.float(), dim=-1)
        for r, (i, x, cont) in enumerate(zip(idx, inps, conts)):
            n = len(cont)
            if n == 0:
                results[i] = (0.0, True)
                continue
            rows = logp[r, len(x) - n:len(x)]
            target = torch.tensor(cont)
            ll = rows.gather(1, target[:, None]).squeeze(1)
            results[i] = (float(ll.double().sum()), bool((rows.argmax(-1) == target).all()))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "zeroshot"))
    ap.add_argument("--tasks", default="all")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--max-length", type=int, default=None)
    ap.add_argument("--no-special-tokens", action="store_true")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--fixture")
    ap.add_argument("--fixture-docs", type=int, default=3)
    ap.add_argument("--compare")
    ap.add_argument("--tolerance", type=float, default=1e-3)
    ap.add_argument("--reuse", action="store_true", help="read --out (made earlier) instead of running the model")
    a = ap.parse_args()

    if a.compare and not a.out:
        raise SystemExit("--compare needs --out (the reference scores to compare against, computed or existing)")
    tasks = PAPER_TASKS if a.tasks == "all" else a.tasks.split(",")
    ref = None
    if a.reuse:
        ref = jsonl(a.out)
    if ref is None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        torch.set_num_threads(a.threads)
        tok = AutoTokenizer.from_pretrained(a.model)
        model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32).eval()
        max_length = a.max_length or model.config.max_position_embeddings
        special = not a.no_special_tokens
        ref, fixture, timing = [], {}, {}
        for task in tasks:
            docs = docs_for(task, a.data_dir)[:a.limit]
            reqs, owner = [], []
            for d, (requests, _, _) in enumerate(docs):
                for c, (ctx, cont) in enumerate(requests):
                    reqs.append(encode_pair(tok, ctx, cont, special))
                    owner.append((d, c))
            t0 = time.time()
            scores = score(model, reqs, max_length, a.batch_size, torch)
            dt = time.time() - t0
            timing[task] = {"docs": len(docs), "seconds": dt, "docs_per_second": len(docs) / max(dt, 1e-9)}
            print(f"{task}: {len(docs)} docs in {dt:.1f} s ({len(docs) / max(dt, 1e-9):.2f} docs/s)", file=sys.stderr)
            per_doc = [[None] * len(r) for r, _, _ in docs]
            for (d, c), s in zip(owner, scores):
                per_doc[d][c] = s
            fx = []
            k = 0
            for d, (requests, choices, gold) in enumerate(docs):
                lls = [s[0] for s in per_doc[d]]
                pred = max(range(len(lls)), key=lambda i: (lls[i], -i))
                ref.append({"task": task, "doc": d, "gold": gold, "prediction": pred, "loglikelihoods": lls,
                            "is_greedy": [s[1] for s in per_doc[d]]})
                if d < a.fixture_docs:
                    fx.append({"gold": gold, "choices": choices, "requests": [
                        {"context": ctx, "continuation": cont, "context_tokens": reqs[k + c][0],
                         "continuation_tokens": reqs[k + c][1], "loglikelihood": per_doc[d][c][0],
                         "is_greedy": per_doc[d][c][1]} for c, (ctx, cont) in enumerate(requests)]})
                k += len(requests)
            fixture[task] = fx
        if a.out:
            os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
            with open(a.out, "w") as f:
                for r in ref:
                    f.write(json.dumps(r) + "\n")
            with open(a.out + ".timing.json", "w") as f:
                json.dump(timing, f, indent=1)
        if a.fixture:
            with open(a.fixture, "w") as f:
                json.dump({"model": os.path.basename(os.path.normpath(a.model)), "special_tokens": special,
                           "max_length": max_length, "made_by": "scripts/zeroshot_reference.py", "tasks": fixture},
                          f, indent=None, separators=(",", ":"))
                f.write("\n")

    if a.compare:
        swift = {(r["task"], r["doc"]): r for r in jsonl(a.compare)}
        worst, mismatches, n = 0.0, [], 0
        for r in ref:
            s = swift.get((r["task"], r["doc"]))
            if s is None:
                continue
            n += 1
            for x, y in zip(r["loglikelihoods"], s["loglikelihoods"]):
                diff = abs(x - y)
                worst = max(worst, diff) if not math.isnan(diff) else math.inf
            if r["prediction"] != s["prediction"] or r["is_greedy"] != s["is_greedy"]:
                mismatches.append((r["task"], r["doc"]))
        print(f"compared {n} docs: max |ll difference| {worst:.3g}, prediction/greedy mismatches {len(mismatches)}"
              + (f" {mismatches[:10]}" if mismatches else ""))
        if n == 0 or worst > a.tolerance or mismatches:
            sys.exit(1)


if __name__ == "__main__":
    main()
