"""Regenerate the weights behind the official-model parity fixture from their published recipe.

The recipe (`tests/fixtures/parity/README.md`) walks the official state-dict layout in order with
one seeded generator, so a faithful model loading these weights reproduces the official outputs.
The layout file ships in `tests/fixtures/` and is copied next to this module's users; the path is
an argument so nothing here depends on the test tree.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

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
