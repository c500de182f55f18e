#!/usr/bin/env python3
"""The test-suite guard `make test` runs before `swift test` (python3 standard library only).

    python3 scripts/check_tests.py [ROOT]     (ROOT: the repository, default: this script's parent folder)

Prints `file:line: reason` for each finding and exits 1 when there is one, 0 otherwise. Rules:

  path      an absolute path in a string literal of Sources/ or Tests/ outside the repository (relative
            paths such as ../shared/... and folders the test makes under the temporary directory are
            fine). System interfaces every Linux machine has are allowed (the root folders proc, sys,
            dev, bin, usr and etc); so are paths whose root folder starts with "nonexistent", which name
            a file that must be missing, and the "path/to/..." placeholder of a usage example at the root.
  assert    a @Test function whose body has no #expect, #require or Issue.record, and calls no function of
            Tests/ that (directly or through other such functions) has one: a test that cannot fail.
  skip      a .disabled trait (a skipped test), or an .enabled(if:)/.disabled(if:) condition that reads the
            file system (directly or through a property or function of Tests/ it names): data a test needs
            comes from the repository or ../shared, and missing data fails the test.
  nan-fold  in Tests/, a reduction that can skip a NaN: `.max()`/`.min()` (and `max(by:)`/`min(by:)`),
            `reduce` with `max`/`min`, a fold `x = ... max(x, ...)`, or `max(abs(...), ...)`. Reductions of
            floating-point values go through TestSupport's `maxOrNaN`/`minOrNaN`; a reduction over integers
            says so with `// check-tests: integers` on its line.

Swift comments and string contents are blanked before the code rules run, so a rule never fires on text
in a comment or a message.
"""
import os
import re
import sys

INTEGER_MARKER = "check-tests: integers"
# The usage-example placeholder, built so that this file names no absolute path itself.
PLACEHOLDER = "/" + "path/to/"
ALLOWED_ROOTS = {"proc", "sys", "dev", "bin", "usr", "etc"}
ASSERTION = re.compile(r"#expect\b|#require\b|\bIssue\.record\b")
FILE_ACCESS = re.compile(r"\bfileExists\b|\bFileManager\b|fileURLWithPath|contentsOfFile|\bcontentsOf:|\baccess\(|\bstat\(|\bfopen\(|\bopen\(")


def lex(text):
    """Returns (code, strings): `code` is `text` with comments and string-literal contents replaced by
    spaces (newlines kept, interpolated expressions kept as code); `strings` lists (offset, content) of
    each literal's text segments."""
    n = len(text)
    out = list(text)
    strings = []

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    def code(i, interpolation):
        depth = 0
        while i < n:
            if text.startswith("//", i):
                j = text.find("\n", i)
                j = n if j < 0 else j
                blank(i, j)
                i = j
                continue
            if text.startswith("/*", i):
                start, level = i, 0
                while i < n:
                    if text.startswith("/*", i):
                        level += 1
                        i += 2
                    elif text.startswith("*/", i):
                        level -= 1
                        i += 2
                        if level == 0:
                            break
                    else:
                        i += 1
                blank(start, i)
                continue
            m = re.match(r'(#*)"', text[i:i + 64])
            if m and (m.group(1) == "" or text[i] == "#"):
                i = string(i, len(m.group(1)))
                continue
            c = text[i]
            if interpolation:
                if c == "(":
                    depth += 1
                elif c == ")":
                    if depth == 0:
                        return i
                    depth -= 1
            i += 1
        return i

    def string(i, hashes):
        i += hashes
        multiline = text.startswith('"""', i)
        quote = '"""' if multiline else '"'
        close = quote + "#" * hashes
        i += len(quote)
        segment = i
        pieces = []
        while i < n:
            if text.startswith(close, i):
                pieces.append((segment, text[segment:i]))
                blank(segment, i)
                strings.append(pieces)
                return i + len(close)
            if text[i] == "\\" and text.startswith("#" * hashes + "(", i + 1):
                pieces.append((segment, text[segment:i]))
                blank(segment, i)
                j = code(i + 2 + hashes, True)
                i = j + 1
                segment = i
                continue
            if text[i] == "\\" and hashes == 0:
                i += 2
                continue
            if not multiline and text[i] == "\n":
                break  # not a string after all (e.g. a lone quote in a regex); stop at the line's end
            i += 1
        pieces.append((segment, text[segment:i]))
        strings.append(pieces)
        return i

    code(0, False)
    return "".join(out), strings


def line_of(text, offset):
    return text.count("\n", 0, offset) + 1


def matching(code, i, open_char, close_char):
    """Index just past the bracket that closes the one at code[i]."""
    depth = 0
    while i < len(code):
        if code[i] == open_char:
            depth += 1
        elif code[i] == close_char:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(code)


FUNC = re.compile(r"\bfunc\s+([A-Za-z_]\w*)")


def function_body(code, start):
    """(name, body_start, body_end) of the function declared at or after `start`, or None."""
    m = FUNC.search(code, start)
    if not m:
        return None
    i, depth = m.end(), 0
    while i < len(code):
        c = code[i]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == "{" and depth == 0:
            return m.group(1), i, matching(code, i, "{", "}")
        elif c == "}" and depth == 0:
            return None  # a protocol requirement: no body
        i += 1
    return None


PATH = re.compile(r"(?:^|(?<=[\s=:'(,]))/([A-Za-z0-9_][A-Za-z0-9_.-]*)")


def check_paths(rel, text, strings, findings):
    for pieces in strings:
        for k, (offset, content) in enumerate(pieces):
            for m in PATH.finditer(content):
                if m.start() == 0 and k > 0:
                    continue  # the text after an interpolation, e.g. "\(dir.path)/tokenizer.json"
                root = m.group(1)
                if root in ALLOWED_ROOTS or root.startswith("nonexistent") or content[m.start():].startswith(PLACEHOLDER):
                    continue
                findings.append((rel, line_of(text, offset + m.start()),
                                 f"path: absolute path '/{root}...' outside the repository (use ../shared or a folder the test makes)"))


FOLD_RULES = [
    (re.compile(r"\.(max|min)\(\s*\)|\.(max|min)\(\s*by\s*:|\.(max|min)\s*\{"), "`.max()`/`.min()` skips a NaN that is not first"),
    (re.compile(r"\breduce\([^()]*,\s*(Swift\.)?(max|min)\s*\)|\breduce\([^()]*\)\s*\{\s*(Swift\.)?(max|min)\("), "`reduce` with `max`/`min` skips NaNs"),
    (re.compile(r"\b((?:\w+\.)*\w+)\s*=(?!=)[^\n]*?\b(?:Swift\.)?(?:max|min)\(\s*\1\s*,"), "a fold `x = max(x, ...)` returns x when the new value is NaN"),
    (re.compile(r"\b(?:Swift\.)?(?:max|min)\(\s*abs\("), "`max(abs(...), ...)` drops a NaN second operand"),
]


def check_folds(rel, text, code, findings):
    raw_lines = text.split("\n")
    for number, line in enumerate(code.split("\n"), 1):
        if INTEGER_MARKER in raw_lines[number - 1]:
            continue
        for pattern, why in FOLD_RULES:
            if pattern.search(line):
                findings.append((rel, number, f"nan-fold: {why}; use TestSupport's maxOrNaN/minOrNaN (or mark integers with // {INTEGER_MARKER})"))
                break


def definitions(files):
    """name → list of bodies (code) of the functions, computed properties and stored initializers of Tests/."""
    defs = {}
    for rel, (text, code) in files.items():
        for m in FUNC.finditer(code):
            f = function_body(code, m.start())
            if f and f[0] == m.group(1):
                defs.setdefault(f[0], []).append(code[f[1]:f[2]])
        for m in re.finditer(r"\b(?:var|let)\s+([A-Za-z_]\w*)\s*(?::[^={\n]*)?([={])", code):
            if m.group(2) == "{":
                body = code[m.end() - 1:matching(code, m.end() - 1, "{", "}")]
            else:
                end = code.find("\n", m.end())
                body = code[m.end():end if end >= 0 else len(code)]
            defs.setdefault(m.group(1), []).append(body)
    return defs




def calls(body):
    """Names a body calls as a function of its own scope: `f(`, `Self.f(`, `self.f(` or `Type.f(` (not
    `value.f(`, which may be any library's method of that name)."""
    names = set()
    for m in re.finditer(r"(?<![\w.])((?:Self|self|[A-Z]\w*)\.)?([A-Za-z_]\w*)\s*[(<{]", body):
        names.add(m.group(2))
    return names


def asserting_functions(defs):
    """Names of Tests/ functions that assert, directly or through another such function."""
    called = {name: set().union(*(calls(b) for b in bodies)) for name, bodies in defs.items()}
    asserting = {name for name, bodies in defs.items() if any(ASSERTION.search(b) for b in bodies)}
    changed = True
    while changed:
        changed = False
        for name in defs:
            if name not in asserting and called[name] & asserting:
                asserting.add(name)
                changed = True
    return asserting


def touches_files(expression, defs, seen=None):
    seen = set() if seen is None else seen
    if FILE_ACCESS.search(expression):
        return True
    for name in re.findall(r"\b([A-Za-z_]\w*)\b", expression):
        if name in defs and name not in seen:
            seen.add(name)
            if any(touches_files(b, defs, seen) for b in defs[name]):
                return True
    return False


def check_tests(rel, code, text, asserting, defs, findings):
    for m in re.finditer(r"@Test\b", code):
        f = function_body(code, m.end())
        if not f:
            continue
        name, start, end = f
        body = code[start:end]
        if ASSERTION.search(body):
            continue
        if calls(body) & asserting:
            continue
        findings.append((rel, line_of(text, m.start()), f"assert: @Test {name} has no #expect/#require and calls no function that has one"))
    for m in re.finditer(r"\.(enabled|disabled)\b", code):
        if m.group(1) == "disabled":
            findings.append((rel, line_of(text, m.start()), "skip: a .disabled trait skips the test"))
            continue
        paren = code.find("(", m.end())
        if paren < 0 or code[m.end():paren].strip():
            continue
        condition = code[paren:matching(code, paren, "(", ")")]
        if touches_files(condition, defs):
            findings.append((rel, line_of(text, m.start()), "skip: .enabled(if:) depends on files: the test skips silently where they are missing"))


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    findings = []
    tests = {}
    for top in ["Sources", "Tests"]:
        for folder, _, names in os.walk(os.path.join(root, top)):
            for name in sorted(names):
                if not name.endswith(".swift"):
                    continue
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                code, strings = lex(text)
                check_paths(rel, text, strings, findings)
                if top == "Tests":
                    tests[rel] = (text, code)
                    check_folds(rel, text, code, findings)
    defs = definitions(tests)
    asserting = asserting_functions(defs)
    for rel, (text, code) in sorted(tests.items()):
        check_tests(rel, code, text, asserting, defs, findings)
    for rel, line, why in sorted(findings):
        print(f"{rel}:{line}: {why}")
    if findings:
        print(f"check_tests: {len(findings)} finding(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
