"""Batch prediction with the PyTorch model: crops in (.npy), uv/vertices(/joints) out (.npz)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import DEFAULT_CONFIG, IMAGE_SIZE
from .errors import UsageError
from .fileio import atomic_path

INPUT_SHAPE_TEXT = f"(B, 3, {IMAGE_SIZE}, {IMAGE_SIZE}) float32, BGR, 0..255"


def validate_images(arr: np.ndarray, source: str) -> np.ndarray:
    """Check the model-input contract; the error names the expected shape."""
    if arr.ndim != 4 or arr.shape[1:] != (3, IMAGE_SIZE, IMAGE_SIZE) or arr.shape[0] < 1:
        raise UsageError(f"{source}: shape {arr.shape}, expected {INPUT_SHAPE_TEXT}")
    if arr.dtype != np.float32:
        raise UsageError(f"{source}: dtype {arr.dtype}, expected {INPUT_SHAPE_TEXT} (cast with .astype(np.float32))")
    return arr


def load_images(path: str | os.PathLike[str]) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"input {p}: no such file (expected a .npy of {INPUT_SHAPE_TEXT})")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise UsageError(f"input {p}: not a .npy array ({exc})") from None
    return validate_images(arr, f"input {p}")


@torch.no_grad()
def run_model(model: torch.nn.Module, images: np.ndarray, device: str = "cpu", batch_size: int = 32) -> dict:
    model = model.to(device).eval()
    uvs, verts = [], []
    with torch.no_grad():  # inference: no autograd graph (a model being fine-tuned has trainable weights)
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size])).to(device)
            uv, v = model(x)
            uvs.append(uv.float().cpu().numpy())
            verts.append(v.float().cpu().numpy())
    return {"uv": np.concatenate(uvs), "vertices": np.concatenate(verts)}


def _check_outputs(mano: object, regressor: object, output: str | os.PathLike[str]) -> None:
    """Options that cannot work together or an output that would be refused: said before any work."""
    if mano and regressor:
        raise UsageError("give either --mano or --regressor, not both")
    out_path = Path(output)
    if out_path.suffix != ".npz":
        raise UsageError(f"output {out_path}: must end in .npz")


def predict_file(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    config: str = DEFAULT_CONFIG,
    fused: bool = False,
    mano: str | os.PathLike[str] | None = None,
    regressor: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    allow_pickle: bool = False,
) -> dict[str, np.ndarray]:
    from .checkpoint import load_checkpoint
    from .joints import apply_regressor, load_regressor

    _check_outputs(mano, regressor, output)
    images = load_images(input)
    source = mano or regressor
    reg = load_regressor(source) if source else None
    model, _ = load_checkpoint(checkpoint, config, fused=fused, allow_pickle=allow_pickle)
    out = run_model(model, images, device)
    if reg is not None:
        out["joints"] = apply_regressor(reg, out["vertices"]).astype(np.float32)
    with atomic_path(Path(output)) as tmp, open(tmp, "wb") as f:
        np.savez(f, **out)
    return out


@dataclass(frozen=True)
class PredictConfig:
    """`simplehand-deploy predict`: crops in, weights, what to write; every default is the command's."""

    input: Path
    output: Path
    checkpoint: Path | None = None  # None: seed-initialised weights (announced)
    config: str = DEFAULT_CONFIG
    fuse: bool = False
    mano: Path | None = None
    regressor: Path | None = None
    device: str = "cpu"
    allow_pickle: bool = False

    @classmethod
    def from_cli(cls, **options: Any) -> PredictConfig:
        """Options left at None take the defaults above; --mano with --regressor, or a non-.npz output, is refused."""
        cfg = cls(**{k: v for k, v in options.items() if v is not None})
        _check_outputs(cfg.mano, cfg.regressor, cfg.output)
        return cfg


def run_predict(cfg: PredictConfig) -> dict[str, np.ndarray]:
    """Announce seed weights, predict, write the .npz atomically; the arrays written (uv, vertices, joints)."""
    if cfg.checkpoint is None:
        from .checkpoint import seed_weights_note

        print(seed_weights_note(cfg.config), file=sys.stderr)
    return predict_file(cfg.input, cfg.output, checkpoint=cfg.checkpoint, config=cfg.config, fused=cfg.fuse,
                        mano=cfg.mano, regressor=cfg.regressor, device=cfg.device, allow_pickle=cfg.allow_pickle)
