#!/usr/bin/env bash
# Create (once) and update (when pyproject.toml changes) the virtual environment at .venv/.
# Sourced by the other scripts; safe to run on a fresh machine with only python3 installed.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
python="${PYTHON:-python3}"
stamp="$venv/.vqvdm-installed"
want="$(cat "$repo/pyproject.toml" "$repo/scripts/constraints.txt" | sha256sum | cut -d' ' -f1)"

if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating $venv" >&2
  "$python" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing vqvdm and its dependencies into $venv (first time: a few minutes)" >&2
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  # torch first, pinned: the constraints keep every later step from pulling another build.
  "$venv/bin/python" -m pip install --quiet -c "$repo/scripts/constraints.txt" torch torchvision
  "$venv/bin/python" -m pip install --quiet -c "$repo/scripts/constraints.txt" -e "$repo[test]"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
