"""Joints from vertices: joints = R (21x778) @ vertices.

R comes from the user (MANO is licensed: we never ship it nor bake it into an artifact by default):
* a MANO right-hand pickle, either the official release (chumpy objects, scipy-sparse
  `J_regressor`, Python-2 pickle) or a plain-numpy conversion: its 16 regressor rows plus one-hot
  rows for the fingertip vertices, reordered from MANO to FreiHAND joint order;
* a `.npy` matrix of shape (21, 778), used as is (for example the synthetic hands' own regressor).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .config import NUM_JOINTS, NUM_VERTICES
from .errors import UsageError

FINGERTIP_VERTICES = (744, 320, 443, 555, 672)  # thumb, index, middle, ring, pinky
# MANO order (wrist, index, middle, pinky, ring, thumb) + 5 tips -> FreiHAND/OpenPose order.
MANO_TO_FREIHAND = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)


class _Opaque:
    """Stands in for chumpy classes so an official MANO pickle loads without chumpy installed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _ManoUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("chumpy"):
            return _Opaque
        return super().find_class(module, name)


def regressor_from_mano(j_regressor: Any) -> np.ndarray:
    """Build the 21x778 FreiHAND-order regressor from MANO's 16x778 J_regressor (dense or sparse)."""
    dense = j_regressor.toarray() if hasattr(j_regressor, "toarray") else np.asarray(j_regressor)
    if dense.shape != (16, NUM_VERTICES):
        raise UsageError(f"MANO J_regressor has shape {dense.shape}, expected (16, {NUM_VERTICES})")
    tips = np.zeros((5, NUM_VERTICES), dtype=np.float64)
    tips[np.arange(5), FINGERTIP_VERTICES] = 1.0
    full = np.concatenate([dense.astype(np.float64), tips], axis=0)
    return full[list(MANO_TO_FREIHAND)].astype(np.float32)


def load_regressor(path: str | os.PathLike[str]) -> np.ndarray:
    """Load R (21, 778) float32 from a MANO pickle or an .npy matrix."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"regressor {p}: no such file (give a MANO_RIGHT.pkl or a (21, 778) .npy)")
    if p.suffix == ".npy":
        try:
            r = np.load(p, allow_pickle=False)
        except ValueError as exc:
            raise UsageError(f"regressor {p}: not a numeric .npy array ({exc})") from None
        if r.shape != (NUM_JOINTS, NUM_VERTICES):
            raise UsageError(f"regressor {p}: shape {r.shape}, expected ({NUM_JOINTS}, {NUM_VERTICES})")
        return r.astype(np.float32)
    try:
        with p.open("rb") as f:
            data = _ManoUnpickler(f, encoding="latin1").load()
    except Exception as exc:
        raise UsageError(f"MANO file {p}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or "J_regressor" not in data:
        raise UsageError(f"MANO file {p}: no 'J_regressor' entry (is this MANO_RIGHT.pkl?)")
    return regressor_from_mano(data["J_regressor"])


def apply_regressor(regressor: Any, vertices: Any) -> Any:
    """(21, 778) @ (B, 778, 3) -> (B, 21, 3); works for numpy arrays and torch tensors alike."""
    return regressor @ vertices
