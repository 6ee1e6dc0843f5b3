#!/usr/bin/env bash
# The whole test suite: set up .venv/ if needed, then run pytest (extra arguments go to pytest).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/ensure-venv.sh"
cd "$repo"
exec python -m pytest "$@"
