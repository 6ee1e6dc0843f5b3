"""A whole tiny run laid out like the quickstart's, for tests of the report page.

4 classes x 3 FPS values x 2 clips per condition in the sample grid (as the quickstart), a named
sampler, two validations per training stage; the stand-in components keep it to a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from standins import tiny_recipe

CLASS_NAMES = ["right", "up", "left", "a class name far too long for its clip"]
SAMPLER = {"name": "ddim", "eta": 0.5}


def make_report_run(root: Path, *, size: int = 16) -> Path:
    """Run every stage into ``root/tiny`` (stand-ins must be registered) and return the run directory.

    After the latents stage, its record's class names are replaced by :data:`CLASS_NAMES` (the data
    set's are ``c0``...), one of them longer than any clip is wide; the later stages caption with them.
    """
    from vqvdm_core import load_recipe
    from vqvdm_core.pipeline import run_recipe

    recipe = tiny_recipe(output_dir=str(root))
    data = {"name": "tiny_clips", "num_classes": 4, "size": size, "frames": 4}
    recipe["data"] = {"train": dict(data, num_clips=8), "val": dict(data, num_clips=4, seed=1)}
    recipe["sample"] = {"steps": 3, "fps": [4.0, 8.0, 16.0], "per_condition": 2, "batch_size": 24,
                        "sampler": SAMPLER}
    recipe["evaluate"].update(steps=3, sampler=SAMPLER)
    recipe["train"]["tokenizer"].update(val_clips=3)
    recipe["train"]["denoiser"].update(val_every=2, val_clips=3)
    loaded = load_recipe(recipe)
    quiet = Console(file=open("/dev/null", "w"))
    run = run_recipe(loaded, stages=["tokenizer", "latents"], console=quiet).run.path
    record_path = run / "latents" / "stage.json"
    record = json.loads(record_path.read_text())
    record["info"]["class_names"] = CLASS_NAMES
    record_path.write_text(json.dumps(record))
    run_recipe(loaded, stages=["denoiser", "sample", "evaluate"], console=quiet)
    return run
