#!/usr/bin/env bash
# Prove vqvdm's CUDA path on one GPU in at most 10 minutes, writing every figure to one JSON file (issue 28):
#   bash scripts/gpu-check.sh [--quick] [--only PART ...]      -> $OUT/gpu_check.json (or ./gpu-check/)
# On a lent GPU machine (the device tool): first `bash scripts/gpu-wheels.sh` here, then run
#   bash scripts/gpu-check.sh   with carry: ["gpu-wheels"]
# VQVDM_CHECK_DEVICE=cpu runs the same parts on the CPU (with --quick: the script's own test).
# What each part measures: benchmarks/gpu_check.py; how to read the result: docs/performance.md.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out="${OUT:-$repo/gpu-check}"
mkdir -p "$out"
if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py="${PYTHON:-python3}"; fi
missing=$("$py" - <<'PY'
import importlib.util
need = {"pydantic": "pydantic", "typer": "typer", "rich": "rich", "einops": "einops", "yaml": "pyyaml",
        "av": "av", "lpips": "lpips", "safetensors": "safetensors", "PIL": "pillow", "scipy": "scipy",
        "matplotlib": "matplotlib", "pytest": "pytest"}
print(" ".join(pkg for module, pkg in need.items() if importlib.util.find_spec(module) is None))
PY
)
if [ -n "$missing" ]; then
  if [ -d gpu-wheels ]; then
    echo "[gpu-check] installing from gpu-wheels/: $missing" >&2
    "$py" -m pip install --quiet --no-index --find-links gpu-wheels $missing
  else
    echo "[gpu-check] missing Python packages: $missing; run scripts/gpu-wheels.sh where pip can download, and carry gpu-wheels/" >&2
    exit 2
  fi
fi
if ! "$py" -c "import importlib.metadata as m, sys; sys.exit(0 if m.entry_points(group='vqvdm.denoisers') else 1)" 2>/dev/null; then
  # the default plug-ins register through entry points: vqvdm must be installed (editable, no downloads)
  "$py" -m pip install --quiet --no-deps --no-build-isolation -e . >&2
fi
exec timeout "${GPU_CHECK_TIMEOUT:-585}" "$py" benchmarks/gpu_check.py --out "$out/gpu_check.json" \
    --device "${VQVDM_CHECK_DEVICE:-cuda}" --work "${GPU_CHECK_WORK:-/tmp/vqvdm-gpu-check}" "$@"
