"""Shared by the benchmark scripts: interleaved timing, the machine's conditions, JSON output.

Other processes share this machine's cores, so absolute times drift; every script times the things
it compares in turns (A, B, matmul, A, B, matmul, ...) and reports medians, so a change in load
hits all of them, and records the load average and thread count next to the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from vqvdm_core.profiling.measure import load_average  # noqa: E402
from vqvdm_core.runtime.devices import synchronize  # noqa: E402


def paper_recipe_parser(doc: str | None, *, repeats: int) -> argparse.ArgumentParser:
    """The options every paper-shape benchmark takes: ``--recipe``, ``--set``, ``--repeats``,
    ``--threads``, ``--device`` and ``--out``; a script adds its own before parsing."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "vqvdm_ucf101.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override")
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="JSON file (default: print)")
    return parser


def apply_machine_options(args: argparse.Namespace) -> torch.device:
    """Set ``--threads`` (when given) and return the ``--device``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return torch.device(args.device)


def paper_system(args: argparse.Namespace, override: str, device: torch.device) -> tuple[Any, Any, tuple[int, int, int]]:
    """``(recipe, system, clip_shape)``: ``--recipe`` with ``override`` and ``--set`` applied, and its
    system with random weights (seed 0) on ``device``, sized by the recipe's data set."""
    from vqvdm_core.profiling.table3 import clip_settings
    from vqvdm_core.recipe import load_recipe
    from vqvdm_core.system import build_system

    recipe = load_recipe(args.recipe, [override, *args.overrides])
    clip_shape, num_classes = clip_settings(recipe)
    torch.manual_seed(0)
    system = build_system(recipe, num_classes=num_classes, clip_shape=clip_shape).to(device)
    return recipe, system, clip_shape


def conditions(device: torch.device) -> dict[str, Any]:
    """What the numbers depend on: device, threads, load, torch version."""
    return {"device": str(device), "threads": torch.get_num_threads(), "load_average": load_average(),
            "torch": torch.__version__}


def interleaved(fns: dict[str, Callable[[], Any]], *, repeats: int, device: torch.device,
                warmup: int = 1, say: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Seconds per call of each function, calling them in turn ``repeats`` times after ``warmup``."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
            if say:
                say(f"  repeat {r + 1}/{repeats} {name}: {times[name][-1]:.3f} s")
    return times


def write_json(data: dict[str, Any], path: str | None) -> None:
    text = json.dumps(data, indent=2, default=str)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
        print(f"wrote {path}")
    else:
        print(text)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
