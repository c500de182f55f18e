#!/usr/bin/env bash
# Fails on an absolute path of one machine in the text a reader reruns: README.md, Makefile, docs/ and
# scripts/ (or the files given). Commands there must use repository-relative paths (../shared/…, out/…,
# Fixtures/…) or a named variable ($PYTHON, $HF_MODEL, $RUNS, …) explained once; see scripts/README.md.
# Prints `file:line: absolute path '…'` per hit and exits 1 if there is any, 0 otherwise.
#
# Allowed, because every Linux machine has them: the device files /dev/null, /dev/zero, /dev/full,
# /dev/random, /dev/urandom, /dev/stdin, /dev/stdout, /dev/stderr, /dev/tty, /dev/fd/…; the kernel's
# /proc/… and /sys/…; system headers /usr/include/…; the interpreters and tools /usr/bin/env, /bin/sh,
# /bin/bash, /usr/bin/time. URLs (https://host/path) are not paths: only a slash at the start of a word
# (after a space, quote, backtick, `(`, `[`, `=`, `,`, `;`, `|`, a redirecting `>`, a `-` as in ${1:-…},
# a shebang's `!`, or the line's start) begins one; a lone one- or two-letter name (sed's s/a/b/g) is not
# one either.
# Scratch files belong in `mktemp` folders, so the system temp folder is not allowed either.
# `--self-test` plants machine paths and allowed ones in a scratch file and checks that exactly the former fire.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --self-test ]; then
  s='/'   # the planted paths are built at run time, so this file itself stays clean
  scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT
  {
    printf 'Run `%swork/venv/bin/python scripts/x.py --out %stmp/x.json`.\n' "$s" "$s"
    printf 'MODEL=${1:-%shome/me/smollm2-hf}\n' "$s"
    printf '#!%sroot/venv/bin/python\n' "$s"
    printf '| SmolLM2 (%sdata/models/smollm2, float32) |\n' "$s"
    printf 'ok: >%sdev/null 2>&1, %sdev/zero, %sproc/cpuinfo, %ssys/devices, %susr/include/zlib.h, #!%susr/bin/env bash\n' "$s" "$s" "$s" "$s" "$s" "$s"
    printf 'ok: https:%s%sexample.com/data/x, <model>%stokenizer.json, s%sa%sb%sg, tokens%ss, ../shared/models, out/runs\n' "$s" "$s" "$s" "$s" "$s" "$s" "$s"
  } > "$scratch/planted.md"
  got=$("$0" "$scratch/planted.md" | sed 's/.*absolute path //' | tr '\n' ' ' || true)
  want="'${s}work/venv/bin/python' '${s}tmp/x.json' '${s}home/me/smollm2-hf' '${s}root/venv/bin/python' '${s}data/models/smollm2' "
  if [ "$got" = "$want" ]; then echo "check_doc_paths self-test: ok"; exit 0; fi
  echo "check_doc_paths self-test: got $got, want $want" >&2; exit 1
fi
if [ $# -gt 0 ]; then
  files=("$@")
else
  files=(README.md Makefile)
  while IFS= read -r -d '' f; do files+=("$f"); done < <(find docs scripts -type f ! -name '*.pyc' -print0 | sort -z)
fi
awk '
  BEGIN {
    allowed = "^/(dev/(null|zero|full|random|urandom|stdin|stdout|stderr|tty|fd(/[0-9]*)?)|proc(/.*)?|sys(/.*)?|usr/include/.*|usr/bin/env|bin/sh|bin/bash|usr/bin/time)$"
    hits = 0
  }
  {
    line = $0; consumed = 0
    # A slash at the start of a word, a name, then more slash-name parts.
    while (match(line, /(^|[ \t`"\047(\[=,;|>!-])\/[A-Za-z_][A-Za-z0-9_.+*-]*(\/[A-Za-z0-9_.+*$@-]*)*/)) {
      start = RSTART; len = RLENGTH
      path = substr(line, start, len)
      if (substr(path, 1, 1) != "/") { path = substr(path, 2); lead = substr(line, start, 1) } else { lead = "" }
      before = substr(line, 1, start - 1)
      # In <model>/tokenizer.json the > closes a placeholder: the path after it is relative.
      placeholder = (lead == ">" && before ~ /<[^<>]*$/)
      # After a dash only as in ${1:-…} or a lone dash in prose; a-/b is no path.
      dashword = (lead == "-" && before ~ /[A-Za-z0-9]$/)
      sub(/[.,;:]+$/, "", path)   # sentence punctuation after the path
      short = (path ~ /^\/[A-Za-z0-9_.+*-]?[A-Za-z0-9_.+*-]?$/)
      if (!placeholder && !dashword && !short && path !~ allowed) {
        printf "%s:%d: absolute path \047%s\047\n", FILENAME, FNR, path
        hits++
      }
      line = substr(line, start + len)
    }
  }
  END { exit hits > 0 ? 1 : 0 }
' "${files[@]}"
