"""Evaluation with the official protocol: crop x1.25, root-relative outputs, Procrustes-aligned metrics.

Joint metrics need joints = regressor @ vertices: synthetic hands carry their own regressor; FreiHAND
needs the user's MANO file (`--mano`). Without one, joint metrics are skipped and the reason is said.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


@torch.no_grad()
def evaluate_model(model: Any, dataset: Any, regressor: np.ndarray | None = None, *, batch_size: int = 16,
                   limit: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Metrics of `model` on `dataset` (FreiHAND-like samples); keys of metrics.evaluate + `skipped`, `num`."""
    from .data.augment import eval_sample
    from .errors import UsageError
    from .metrics import evaluate
    from .progress import track

    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise UsageError("the evaluation dataset is empty")
    if hasattr(dataset, "annotation"):  # check labels before decoding a single image (no partial work)
        for i in range(n):
            ann = dataset.annotation(i)
            if ann["xyz"] is None or ann["vertices"] is None:
                raise UsageError(f"sample {i}: no 3-D labels (xyz and verts); the official protocol needs both")
    model = model.eval()
    device = next(model.parameters()).device
    preds, gts_v, gts_j = [], [], []
    for start in track(range(0, n, batch_size), "evaluating", progress):
        items = [eval_sample(dataset[i]) for i in range(start, min(n, start + batch_size))]
        x = torch.from_numpy(np.stack([it["image"] for it in items])).to(device)
        _, v = model(x)
        preds.append(v.float().cpu().numpy())
        gts_v.append(np.stack([it["vertices"] for it in items]))
        gts_j.append(np.stack([it["xyz"] for it in items]))
    pred_v, gt_v, gt_j = np.concatenate(preds), np.concatenate(gts_v), np.concatenate(gts_j)
    pred_v = pred_v - (regressor @ pred_v)[:, 9:10] if regressor is not None else pred_v
    skipped = {}
    if regressor is None:
        skipped = {k: "no joint regressor: pass --mano MANO_RIGHT.pkl" for k in ("pa_mpjpe_mm", "auc_joints")}
    pred_j = regressor @ pred_v if regressor is not None else None
    out: dict[str, Any] = evaluate(pred_j, gt_j if pred_j is not None else None, pred_v, gt_v)
    out.update({"num": n, "skipped": skipped})
    return out
