"""Test support that the benchmarks use too (numpy.testing's pattern): nothing here runs in a deployment.

* the weights behind the official-model parity fixture, regenerated from their published recipe
  (`tests/fixtures/parity/README.md`): the recipe walks the official state-dict layout in order with
  one seeded generator, so a faithful model loading these weights reproduces the official outputs; the
  layout file ships in `tests/fixtures/` and its path is an argument, so nothing depends on the test tree;
* `save_official`: a state dict wrapped the way the official training script saves it;
* `quick_tiny_checkpoint`: a `tiny` model trained briefly on synthetic hands (drift figures that mean something).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .fileio import atomic_path

RECIPE_SEED = 20241002
INPUT_SEED = 7


def read_layout(tsv: str | os.PathLike[str]) -> list[tuple[str, str, tuple[int, ...]]]:
    """Rows of `key<TAB>dtype<TAB>shape` (shape comma-separated, empty for 0-d)."""
    rows = []
    for line in Path(tsv).read_text().splitlines():
        if not line.strip():
            continue
        key, dtype, shape = [*line.split("\t"), ""][:3]
        rows.append((key, dtype, tuple(int(s) for s in shape.split(",") if s)))
    return rows


def recipe_state_dict(tsv: str | os.PathLike[str], seed: int = RECIPE_SEED) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for key, dtype, shape in read_layout(tsv):
        if dtype.startswith("int"):
            sd[key] = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("running_mean"):
            sd[key] = torch.randn(shape, generator=g) * 0.1
        elif key.endswith(".weight") and len(shape) == 1:
            sd[key] = 1 + torch.randn(shape, generator=g) * 0.02
        elif len(shape) >= 2 and "pos_emb" not in key and not key.endswith(".gamma"):
            fan_in = int(np.prod(shape)) // shape[0]
            sd[key] = torch.randn(shape, generator=g) / fan_in**0.5
        else:
            sd[key] = torch.randn(shape, generator=g) * 0.02
    return sd


def recipe_input(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, 224, 224, generator=torch.Generator().manual_seed(INPUT_SEED)) * 255


def save_official(path: str | os.PathLike[str], state_dict: dict[str, torch.Tensor], epoch: int = 200) -> Path:
    """Wrap a state dict the way the official training script saves it."""
    with atomic_path(path) as tmp:
        torch.save({"epoch": epoch, "state_dict": state_dict}, tmp)
    return Path(path)


def quick_tiny_checkpoint(out_dir: str | os.PathLike[str], steps: int = 300, seed: int = 0) -> Path:
    """A `tiny` model trained briefly on synthetic hands (for drift figures that mean something).

    In-plane augmentation is off: in a few hundred steps the tiny model learns the hand's shape (held-out
    PA-MPVPE ~41 -> ~23 mm after 120 x 8 crops) but not arbitrary orientations, whose average is a blob.
    """
    from .train import TrainConfig, train

    cfg = TrainConfig(config="tiny", out=str(out_dir), synthetic=True, synthetic_num=256, steps=steps,
                      batch_size=16, seed=seed, lr=2e-3, rotation=0.0, progress=False)
    last = Path(out_dir) / "last.pt"
    return last if last.is_file() else train(cfg)


# The INT8 comparisons' recipe (benchmarks/int8_peers.py, benchmarks/precision_drift.py): one definition of the
# trained tiny they quantise and of the crop sets they calibrate, fine-tune and measure on.
INT8_RECIPE = {"train": "simplehand-deploy train --config tiny --synthetic --steps 300 --seed 1 --rotation 0",
               "calib": "simplehand-deploy calib-set --synthetic --num 32 --seed 1",
               "held_out": "simplehand-deploy calib-set --synthetic --num 64 --seed 777",
               "qat_data": "simplehand-deploy calib-set --synthetic --num 2048 --seed 5"}


def int8_recipe_checkpoint(work: str | os.PathLike[str], steps: int = 300) -> Path:
    """`tiny` trained as INT8_RECIPE["train"] says (the command's defaults otherwise) into `<work>/train`; a
    finished run found there is reused."""
    from .train import TrainConfig, train

    last = Path(work) / "train" / "last.pt"
    if last.is_file():
        return last
    return train(TrainConfig.from_cli(config="tiny", synthetic=True, steps=steps, seed=1, rotation=0.0,
                                      out=str(Path(work) / "train"), quiet=True))
