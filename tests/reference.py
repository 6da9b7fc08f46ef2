"""Straightforward per-sample reference implementations the vectorised metrics are checked against."""

from __future__ import annotations

import numpy as np
from scipy.linalg import orthogonal_procrustes


def align_reference(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """FreiHAND's alignment helper for one sample, written plainly with scipy."""
    mu1, mu2 = gt.mean(0), pred.mean(0)
    t1, t2 = gt - mu1, pred - mu2
    s1, s2 = np.linalg.norm(t1), np.linalg.norm(t2)
    R, s = orthogonal_procrustes(t1 / s1, t2 / s2)
    return (t2 / s2) @ R.T * s * s1 + mu1
