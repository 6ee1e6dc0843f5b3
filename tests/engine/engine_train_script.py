"""Train the toy GAN from the command line (used by the subprocess tests).

    python engine_train_script.py OUT_DIR CONFIG_JSON

Run alone it trains in one process; under ``torchrun`` it trains with several. The exported
(EMA) weights go to ``OUT_DIR/weights.safetensors``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_toys import ToyPairs, make_gan, make_trainer, settings  # noqa: E402
from rich.console import Console  # noqa: E402

from vqvdm_core.engine import Trainer  # noqa: E402
from vqvdm_core.runtime import distributed  # noqa: E402


def train(out_dir: Path, config: dict) -> Trainer:
    model = make_gan(**config.get("model", {}))
    trainer = make_trainer(model, settings(**config["settings"]), out_dir, seed=config.get("seed", 0),
                           description="toy", console=Console())
    trainer.fit(ToyPairs(config.get("n", 16), augment=config.get("augment", True)))
    trainer.export_weights(out_dir / "weights.safetensors")
    return trainer


if __name__ == "__main__":
    train(Path(sys.argv[1]), json.loads(sys.argv[2]))
    distributed.cleanup()
