#!/usr/bin/env python3
"""Writes Fixtures/generate/reference.json: what transformers generates and renders, for `llm-prune generate`.

- "greedy": `model.generate(do_sample=False, max_new_tokens=32)` in float32 (eager attention) from prompt ids:
  the shared stories260K (prompts encoded by its tokenizer, BOS included; generation stops at its EOS, which
  is kept as transformers returns it), the tiny Gemma 3 and Gemma 2 checkpoints of Fixtures/llama (random
  prompt ids; EOS disabled, so 32 tokens each) and Gemma 3 270M's GGUF (dequantized by transformers' loader).
  Each case records the smallest gap between the two largest logits over its steps (greedy is fragile only
  where that gap nears float rounding) and, for the real models, the text the new tokens add to the
  prompt's decode (what `generate` streams).
- "chat": `tokenizer.apply_chat_template(messages, add_generation_prompt=True)` as text and as ids for the
  chat templates of the families `generate --chat` renders: SmolLM2-135M-Instruct's (the shared GGUF's
  tokenizer.chat_template, ids from transformers' tokenizer of that GGUF), Gemma 3 instruct's and Gemma 2
  instruct's (the templates of google/gemma-3-*-it and google/gemma-2-*-it, text-only parts, written out
  below; ids from transformers' tokenizer of the Gemma 3 270M GGUF). The messages hold no digits: transformers'
  GGUF tokenizer of SmolLM2 lacks the `smollm` pre-tokenizer's digit split. A template that raises records the
  error instead.

Run from the repository root (after `make setup`, which fetches the Gemma 3 GGUF):
    $PYTHON scripts/generate_reference.py
"""
import json
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
OUT = os.path.join(ROOT, "Fixtures", "generate", "reference.json")
SMOLLM2_DIR = os.path.join(SHARED, "models", "smollm2-135m-instruct")
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_DIR = os.path.join(ROOT, "models", "gemma-3-270m")
GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf"
NEW_TOKENS = 32

torch.set_num_threads(1)

# Gemma 3 instruct's template (google/gemma-3-*-it tokenizer_config.json), its text-only branches.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n")

# Gemma 2 instruct's template (google/gemma-2-*-it tokenizer_config.json).
GEMMA2_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}")

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one short sentence."},
     {"role": "user", "content": "  Why is the sky blue?\n"}],
    [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "An apple."},
     {"role": "user", "content": "Another one, please."}],
]


def top2_gap(scores):
    """The smallest difference between the two largest logits over the generation steps."""
    gaps = []
    for s in scores:
        top = torch.topk(s[0].double(), 2).values
        gaps.append(float(top[0] - top[1]))
    return min(gaps)


def greedy(model, prompt, eos):
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=NEW_TOKENS,
                         eos_token_id=eos, pad_token_id=eos if eos is not None else 0, output_scores=True,
                         return_dict_in_generate=True)
    return out.sequences[0, len(prompt):].tolist(), top2_gap(out.scores)


def greedy_cases():
    cases = []
    folder = os.path.join(SHARED, "models", "stories260K")
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, attn_implementation="eager").eval()
    for text in ["Once upon a time", "Tom and Lily went to the park. They saw", "The little dog was sad because"]:
        prompt = tok(text)["input_ids"]
        new, gap = greedy(model, prompt, model.config.eos_token_id)
        head = tok.decode(prompt, skip_special_tokens=True)
        full = tok.decode(prompt + new, skip_special_tokens=True)
        assert full.startswith(head)
        cases.append(dict(model="../shared/models/stories260K", prompt_text=text, prompt=prompt, new_tokens=new,
                          stop_tokens=[model.config.eos_token_id], min_top2_gap=gap, text=full[len(head):]))
    for name, seed in [("gemma3-sandwich", 5), ("gemma2-softcap", 6)]:
        folder = os.path.join(ROOT, "Fixtures", "llama", name)
        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, attn_implementation="eager").eval()
        g = torch.Generator().manual_seed(seed)
        prompt = torch.randint(0, model.config.vocab_size, (6,), generator=g).tolist()
        new, gap = greedy(model, prompt, None)
        assert len(new) == NEW_TOKENS
        cases.append(dict(model="Fixtures/llama/" + name, prompt=prompt, new_tokens=new, stop_tokens=[],
                          min_top2_gap=gap))
    # Gemma 3 270M (base) as transformers loads its GGUF: 18 layers, sliding windows of 512, tied 262K head.
    tok = AutoTokenizer.from_pretrained(GEMMA3_DIR, gguf_file=GEMMA3_FILE)
    model = AutoModelForCausalLM.from_pretrained(GEMMA3_DIR, gguf_file=GEMMA3_FILE, dtype=torch.float32).eval()
    text = "The capital of France is"
    prompt = tok(text)["input_ids"]
    eos = model.generation_config.eos_token_id
    stops = eos if isinstance(eos, list) else [eos]
    new, gap = greedy(model, prompt, eos)
    head = tok.decode(prompt, skip_special_tokens=True)
    full = tok.decode(prompt + new, skip_special_tokens=True)
    assert full.startswith(head)
    cases.append(dict(model="models/gemma-3-270m/" + GEMMA3_FILE, prompt_text=text, prompt=prompt, new_tokens=new,
                      stop_tokens=stops, min_top2_gap=gap, text=full[len(head):]))
    return cases


def chat_cases():
    import gguf
    reader = gguf.GGUFReader(os.path.join(SMOLLM2_DIR, SMOLLM2_FILE))
    smollm2_template = reader.fields["tokenizer.chat_template"].contents()
    smollm2 = AutoTokenizer.from_pretrained(SMOLLM2_DIR, gguf_file=SMOLLM2_FILE)
    gemma3 = AutoTokenizer.from_pretrained(GEMMA3_DIR, gguf_file=GEMMA3_FILE)
    templates = [("smollm2", smollm2_template, smollm2, "../shared/models/smollm2-135m-instruct/" + SMOLLM2_FILE),
                 ("gemma3", GEMMA3_TEMPLATE, gemma3, "models/gemma-3-270m/" + GEMMA3_FILE),
                 ("gemma2", GEMMA2_TEMPLATE, gemma3, "models/gemma-3-270m/" + GEMMA3_FILE)]
    cases = []
    for name, template, tok, model in templates:
        for messages in CONVERSATIONS:
            case = dict(template_name=name, template=template, tokenizer_model=model, messages=messages)
            try:
                case["text"] = tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                       add_generation_prompt=True)
                ids = tok.apply_chat_template(messages, chat_template=template, tokenize=True,
                                              add_generation_prompt=True, return_dict=False)
                case["ids"] = list(ids)
            except Exception as e:  # the template's raise_exception
                case["error"] = str(e)
            cases.append(case)
    return cases


def main():
    result = dict(greedy=greedy_cases(), chat=chat_cases(), new_tokens=NEW_TOKENS)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for c in result["greedy"]:
        print(c["model"], len(c["new_tokens"]), "tokens, min top-2 gap %.3g" % c["min_top2_gap"])
    for c in result["chat"]:
        print(c["template_name"], repr(c.get("text", c.get("error")))[:100])


if __name__ == "__main__":
    main()
