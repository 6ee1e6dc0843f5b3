#!/usr/bin/env bash
# The main job: set up .venv/ if needed, then run the quickstart recipe end to end on this machine.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/ensure-venv.sh"
cd "$repo"
exec vqvdm run recipes/quickstart.yaml "$@"
