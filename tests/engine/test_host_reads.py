"""A training step reads no value on the host on a GPU (issue 28): each such read (``float(t)``,
``t.item()``, ``if t.any():``) makes the host wait for every queued kernel, and the GPU then idles
while the host prepares the next ones.

On the CPU a read costs nothing, and the code takes the simple way there. The test switches the
GPU's ways on (``host_reads_are_free`` -> False) and counts the reads that vqvdm's own code makes
inside the optimizer steps (the batch's loading aside, which happens on the host in a GPU run
too) of the real tokenizer (vq with EMA, data init and dead-code re-seeding,
the 3D discriminator) and the real denoiser (U-Net, class and FPS conditioners, guidance dropout).
Reads that torch makes inside its own functions are not seen here; on a GPU,
``scripts/gpu-check.sh`` runs the same steps under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import os
import sys
from collections import Counter

import torch
from rich.console import Console

from vqvdm_core.engine.batches import InfiniteLoader
from vqvdm_core.engine.trainer import Trainer
from vqvdm_core.pipeline import run_recipe
from vqvdm_core.recipe import load_recipe
from vqvdm_core.runtime import devices

READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")

RECIPE = {
    "name": "reads", "device": "cpu", "stages": ["tokenizer", "latents", "denoiser"],
    "data": {"train": {"name": "synthetic_motion", "num_clips": 8, "frames": 4, "size": 16, "fps_values": [4.0, 8.0]}},
    "tokenizer": {"name": "vqgan3d", "temporal_factor": 2, "spatial_factor": 4, "channels": 8, "channel_mults": [1, 1, 1],
                  "num_res_blocks": 1, "norm_groups": 4, "perceptual_weight": 0.0, "discriminator_start": 0,
                  "disc_channels": 8, "disc_layers": 2,
                  "quantizer": {"name": "vq", "num_codes": 16, "ema": True, "init_from_data": True,
                                "dead_code_threshold": 1.0}},
    "denoiser": {"name": "unet3d", "channels": 8, "channel_mults": [1], "num_res_blocks": 1, "attention_head_dim": 8,
                 "norm_groups": 4},
    "schedule": {"name": "ddpm", "num_train_steps": 50},
    "conditioners": [{"name": "fps"}, {"name": "class", "dropout": 0.5}],
    "guidance": {"name": "cfg"},
    "train": {"tokenizer": {"steps": 5, "batch_size": 4, "val_clips": 0, "log_every": 5, "ema_decay": 0.9},
              "denoiser": {"steps": 5, "batch_size": 4, "val_clips": 0, "log_every": 5, "ema_decay": 0.9}},
    "latents": {"batch_size": 4},
}


def test_the_gpu_path_of_a_training_step_reads_nothing_on_the_host(tmp_path, monkeypatch):
    reads: Counter[str] = Counter()
    counting = [False]

    def wrap(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            caller = sys._getframe(1)
            module = caller.f_globals.get("__name__", "?")
            if counting[0] and module.startswith("vqvdm"):
                reads[f"{module}:{caller.f_lineno} {name}"] += 1
            return original(self, *args, **kwargs)

        return read

    step = Trainer._optimizer_step

    def counted_step(self, loader):
        counting[0] = self.step >= 1  # the first step may read once (is the codebook filled yet?)
        try:
            return step(self, loader)
        finally:
            counting[0] = False

    following = InfiniteLoader.__next__

    def next_batch(self):  # the clips are read on the host, as a GPU run reads them: not counted
        was, counting[0] = counting[0], False
        try:
            return following(self)
        finally:
            counting[0] = was

    monkeypatch.setattr(InfiniteLoader, "__next__", next_batch)
    monkeypatch.setattr(devices, "host_reads_are_free", lambda device: False)
    monkeypatch.setattr(Trainer, "_optimizer_step", counted_step)
    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, wrap(name))
    ctx = run_recipe(load_recipe({**RECIPE, "output_dir": str(tmp_path)}), console=Console(file=open(os.devnull, "w")))
    monkeypatch.undo()
    assert (ctx.run.path / "denoiser" / "denoiser.safetensors").is_file()
    assert not reads, dict(reads)


def test_the_host_read_counter_sees_a_read(monkeypatch):
    """The counter above is not blind: a read in vqvdm's code under the same patch is counted."""
    seen = []
    original = torch.Tensor.__float__

    def read(self):
        seen.append(sys._getframe(1).f_globals.get("__name__"))
        return original(self)

    monkeypatch.setattr(torch.Tensor, "__float__", read)
    from vqvdm_core.engine.log_window import as_float

    as_float(torch.tensor(2.0))
    monkeypatch.undo()
    assert seen == ["vqvdm_core.engine.log_window"]
