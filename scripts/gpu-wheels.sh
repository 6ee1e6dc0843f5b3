#!/usr/bin/env bash
# Download (here, where the package index answers) the wheels of vqvdm's dependencies that a lent GPU
# machine's image lacks, for its Python, into gpu-wheels/ (git-ignored; carried to the machine with the
# device tool's `carry: ["gpu-wheels"]`). scripts/gpu-check.sh installs them there without a network.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py_version="${GPU_PYTHON_VERSION:-3.12}"   # the device image's python3 (KINDS.md: 3.12.3)
dest="$repo/gpu-wheels"
mkdir -p "$dest"
pip="${PIP:-$repo/.venv/bin/python -m pip}"
# Not in that image: pydantic (and its core), lpips, PyAV. Binary wheels for its Python and platform only.
$pip download --quiet --dest "$dest" --only-binary=:all: --python-version "$py_version" \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    "pydantic>=2.5" "pydantic-core" "annotated-types" "typing-inspection" "av>=12"
$pip download --quiet --dest "$dest" --no-deps "lpips>=0.1.4"
du -sh "$dest"
ls "$dest"
