"""Accuracy drift per runner versus torch FP32 eager on the same crops, plus task metrics vs labels."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..drift import drift_row


def infer_all(runner: Any, images: np.ndarray, batch_size: int = 8) -> dict[str, np.ndarray]:
    outs: dict[str, list[np.ndarray]] = {"uv": [], "vertices": []}
    for i in range(0, len(images), batch_size):
        o = runner.infer(images[i : i + batch_size])
        outs["uv"].append(o["uv"])
        outs["vertices"].append(o["vertices"])
    return {k: np.concatenate(v) for k, v in outs.items()}


def accuracy_row(ref: dict[str, np.ndarray], out: dict[str, np.ndarray], labels: dict[str, np.ndarray | None],
                 regressor: np.ndarray | None = None) -> dict[str, Any]:
    """Drift (mm, px) vs the reference; joint drift with a regressor; metrics vs labels when present."""
    from ..metrics import evaluate

    row: dict[str, Any] = {"num_samples": len(out["vertices"]), **drift_row(ref, out)}
    if regressor is not None:
        j_out, j_ref = regressor @ out["vertices"], regressor @ ref["vertices"]
        row["joint_drift_mean_mm"] = float(np.linalg.norm(j_out - j_ref, axis=-1).mean() * 1000)
    if labels.get("vertices") is not None:
        pj = regressor @ out["vertices"] if regressor is not None and labels.get("xyz") is not None else None
        m = evaluate(pj, labels.get("xyz") if pj is not None else None, out["vertices"], labels["vertices"])
        row.update({"pa_mpvpe_mm": m.get("pa_mpvpe_mm"), "pa_mpjpe_mm": m.get("pa_mpjpe_mm"), "f5": m.get("f5"),
                    "f15": m.get("f15")})
    return row
