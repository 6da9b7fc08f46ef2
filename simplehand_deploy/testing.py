"""Test support that the benchmarks use too (numpy.testing's pattern): nothing here runs in a deployment.

* the weights behind the official-model parity fixture, regenerated from their published recipe
  (`tests/fixtures/parity/README.md`): the recipe walks the official state-dict layout in order with
  one seeded generator, so a faithful model loading these weights reproduces the official outputs; the
  layout file ships in `tests/fixtures/` and its path is an argument, so nothing depends on the test tree;
* `save_official`: a state dict wrapped the way the official training script saves it;
* `quick_tiny_checkpoint`: a `tiny` model trained briefly on synthetic hands (drift figures that mean something);
  `python -m simplehand_deploy.testing --out DIR` trains it from the shell (CI's drift gate), so the recipe is
  written only here.
"""

from __future__ import annotations

import argparse
import os
import sys
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


QUICK_TINY_STEPS = 300


def quick_tiny_checkpoint(out_dir: str | os.PathLike[str], steps: int = QUICK_TINY_STEPS, seed: int = 0) -> Path:
    """A `tiny` model trained briefly on synthetic hands (for drift figures that mean something).

    In-plane augmentation is off: in a few hundred steps the tiny model learns the hand's shape (held-out
    PA-MPVPE ~41 -> ~23 mm after 120 x 8 crops) but not arbitrary orientations, whose average is a blob.
    """
    from .train import TrainConfig, train

    cfg = TrainConfig(config="tiny", out=str(out_dir), synthetic=True, synthetic_num=256, steps=steps,
                      batch_size=16, seed=seed, lr=2e-3, rotation=0.0, progress=False)
    last = Path(out_dir) / "last.pt"
    return last if last.is_file() else train(cfg)


def main(argv: list[str] | None = None) -> int:
    """`python -m simplehand_deploy.testing --out DIR`: the trained tiny (`quick_tiny_checkpoint`) at DIR/last.pt."""
    ap = argparse.ArgumentParser(prog="python -m simplehand_deploy.testing",
                                 description="Train the quick `tiny` on synthetic hands (the test suite's trained "
                                             "fixture and CI's drift gate use this one recipe).")
    ap.add_argument("--out", type=Path, required=True, help="run folder; DIR/last.pt is reused when present")
    ap.add_argument("--steps", type=int, default=QUICK_TINY_STEPS, help="training steps (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(quick_tiny_checkpoint(args.out, steps=args.steps, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
