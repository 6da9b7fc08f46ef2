"""Evaluation with the official protocol: crop x1.25, root-relative outputs, Procrustes-aligned metrics.

Joint metrics need joints = regressor @ vertices: synthetic hands carry their own regressor; FreiHAND
needs the user's MANO file (`--mano`). Without one, joint metrics are skipped and the reason is said.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import DEFAULT_CONFIG


@torch.no_grad()
def evaluate_model(model: Any, dataset: Any, regressor: np.ndarray | None = None, *, batch_size: int = 16,
                   limit: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Metrics of `model` on `dataset` (FreiHAND-like samples); keys of metrics.evaluate + `skipped`, `num`."""
    from .errors import UsageError
    from .metrics import evaluate

    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise UsageError("the evaluation dataset is empty")
    if hasattr(dataset, "annotation"):  # check labels before decoding a single image (no partial work)
        for i in range(n):
            ann = dataset.annotation(i)
            if ann["xyz"] is None or ann["vertices"] is None:
                raise UsageError(f"sample {i}: no 3-D labels (xyz and verts); the official protocol needs both")
    pred_v, gt_v, gt_j = _predict(model, dataset, list(range(n)), batch_size, progress)
    pred_v = pred_v - (regressor @ pred_v)[:, 9:10] if regressor is not None else pred_v
    skipped = {}
    if regressor is None:
        skipped = {k: "no joint regressor: pass --mano MANO_RIGHT.pkl" for k in ("pa_mpjpe_mm", "auc_joints")}
    pred_j = regressor @ pred_v if regressor is not None else None
    out: dict[str, Any] = evaluate(pred_j, gt_j if pred_j is not None else None, pred_v, gt_v)
    out.update({"num": n, "skipped": skipped})
    return out


@dataclass(frozen=True)
class EvalConfig:
    """`simplehand-deploy eval`: which weights, which data (exactly one source), how many samples."""

    checkpoint: Path | None = None
    config: str = DEFAULT_CONFIG
    freihand: Path | None = None
    synthetic: bool = False
    synthetic_num: int = 64
    split: str | None = None  # None: FreiHAND evaluation; DexYCB s0-test on the full release, else all
    mano: Path | None = None
    limit: int | None = None
    progress: bool = True
    dexycb: Path | None = None
    mano_left: Path | None = None  # DexYCB: MANO_LEFT.pkl for left-hand vertices

    @classmethod
    def from_cli(cls, **options: Any) -> EvalConfig:
        return cls(**{k: v for k, v in options.items() if v is not None})


SYNTHETIC_EVAL_SEED = 12345


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    """Load the weights (seed weights announced), make or open the data, evaluate; the metrics dict."""
    import tempfile

    from .checkpoint import load_announced
    from .data.freihand import FreiHAND
    from .errors import UsageError

    if sum((cfg.freihand is not None, cfg.dexycb is not None, cfg.synthetic)) != 1:
        raise UsageError("give exactly one data source: --freihand DIR or --synthetic (or --dexycb DIR)")
    if cfg.dexycb is not None:
        return run_eval_dexycb(cfg)
    model, _ = load_announced(cfg.checkpoint, cfg.config, announce=cfg.progress)
    reg = None
    with tempfile.TemporaryDirectory(prefix="simplehand-eval-") as tmp:
        if cfg.synthetic:
            from .data.synthetic import generate, regressor

            root = generate(Path(tmp) / "synthetic", 1, seed=SYNTHETIC_EVAL_SEED, eval_num=cfg.synthetic_num,
                            progress=cfg.progress)
            ds, reg = FreiHAND(root, "evaluation"), regressor()
        else:
            assert cfg.freihand is not None
            ds = FreiHAND(cfg.freihand, cfg.split or "evaluation")
        if cfg.mano is not None:
            from .joints import load_regressor

            reg = load_regressor(cfg.mano)
        return evaluate_model(model, ds, reg, limit=cfg.limit, progress=cfg.progress)


def run_eval_dexycb(cfg: EvalConfig) -> dict[str, Any]:
    """DexYCB: the data (and MANO models) are opened and checked before the weights load; the metrics dict."""
    from .checkpoint import load_announced
    from .data.dexycb import DexYCB, default_split

    assert cfg.dexycb is not None
    reg = mano_right = mano_left = None
    if cfg.mano is not None:
        from .joints import load_regressor

        reg = load_regressor(cfg.mano)
        if cfg.mano.suffix != ".npy":
            from .mano import load_mano

            mano_right = load_mano(cfg.mano)
    if cfg.mano_left is not None:
        from .mano import load_mano

        mano_left = load_mano(cfg.mano_left)
    ds = DexYCB(cfg.dexycb, cfg.split or default_split(cfg.dexycb, "eval"), mano_right=mano_right,
                mano_left=mano_left)
    model, _ = load_announced(cfg.checkpoint, cfg.config, announce=cfg.progress)
    return evaluate_dexycb(model, ds, reg, limit=cfg.limit, progress=cfg.progress)


@torch.no_grad()
def evaluate_dexycb(model: Any, dataset: Any, regressor: np.ndarray | None = None, *, batch_size: int = 16,
                    limit: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Metrics on DexYCB frames with a hand (left hands mirrored): PA-MPJPE against `joint_3d` with joints =
    regressor @ predicted vertices; vertex metrics when every frame's vertices are known. Extra keys:
    `num`, `handless_skipped`, `left_hands`, `skipped`."""
    from .errors import UsageError
    from .metrics import evaluate
    from .progress import track

    valid, handless, left, no_vertices = [], 0, 0, {"right": 0, "left": 0}
    for i in track(range(len(dataset)), "reading labels", progress):
        ann = dataset.annotation(i)
        if ann is None:
            handless += 1
            continue
        valid.append(i)
        left += ann["side"] == "left"
        if ann["vertices"] is None:
            no_vertices[ann["side"]] += 1
    valid = valid[:limit] if limit is not None else valid
    if not valid:
        raise UsageError(f"{dataset.root}: no frame with a hand in split {dataset.split}")
    has_vertices = not any(no_vertices.values())
    skipped: dict[str, str] = {}
    if regressor is None:
        skipped |= {k: "no joint regressor: pass --mano MANO_RIGHT.pkl" for k in ("pa_mpjpe_mm", "auc_joints")}
    if not has_vertices:
        need = " and ".join(f"--mano{'-left MANO_LEFT' if s == 'left' else ' MANO_RIGHT'}.pkl ({n} {s}-hand frames)"
                            for s, n in no_vertices.items() if n)
        skipped |= {k: f"no ground-truth vertices: pass {need}" for k in ("pa_mpvpe_mm", "auc_vertices", "f5", "f15")}
    if regressor is None and not has_vertices:
        raise UsageError(f"{dataset.root}: nothing to measure: pass --mano MANO_RIGHT.pkl (or a (21, 778) .npy "
                         "regressor) for PA-MPJPE")
    pred_v, gt_v, gt_j = _predict(model, dataset, valid, batch_size, progress)
    pred_j = regressor @ pred_v if regressor is not None else None
    out: dict[str, Any] = evaluate(pred_j, gt_j if pred_j is not None else None,
                                   pred_v if has_vertices else None, gt_v if has_vertices else None)
    out.update({"num": len(valid), "handless_skipped": handless, "left_hands": left, "skipped": skipped})
    return out


METRIC_ORDER = ("pa_mpjpe_mm", "pa_mpvpe_mm", "auc_joints", "auc_vertices", "f5", "f15")


def metrics_table(metrics: dict[str, Any]) -> Any:
    """The metrics as a rich table (what `eval` prints without --json; `skipped_lines` say what is missing)."""
    from rich.table import Table

    extra = f", {metrics['handless_skipped']} handless frames skipped" if "handless_skipped" in metrics else ""
    table = Table(title=f"FreiHAND protocol ({metrics['num']} samples{extra})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in METRIC_ORDER:
        if k in metrics:
            table.add_row(k, f"{metrics[k]:.4f}")
    return table


def skipped_lines(metrics: dict[str, Any]) -> list[str]:
    return [f"skipped {k}: {why}" for k, why in metrics.get("skipped", {}).items()]


@torch.no_grad()
def _predict(model: Any, dataset: Any, indices: list[int], batch_size: int,
             progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted vertices and the labelled vertices and joints of `indices`, in batches of the protocol's crops (the
    FreiHAND and DexYCB evaluations share this loop)."""
    from .data.augment import eval_sample
    from .progress import track

    model = model.eval()
    device = next(model.parameters()).device
    preds, gts_v, gts_j = [], [], []
    for start in track(range(0, len(indices), batch_size), "evaluating", progress):
        items = [eval_sample(dataset[i]) for i in indices[start : start + batch_size]]
        x = torch.from_numpy(np.stack([it["image"] for it in items])).to(device)
        _, v = model(x)
        preds.append(v.float().cpu().numpy())
        gts_v.append(np.stack([it["vertices"] for it in items]))
        gts_j.append(np.stack([it["xyz"] for it in items]))
    return np.concatenate(preds), np.concatenate(gts_v), np.concatenate(gts_j)
