"""FreiHAND metrics, vectorised: PA-MPJPE, PA-MPVPE, AUC (0-50 mm), F@5 mm / F@15 mm.

Alignment follows FreiHAND's evaluation helper: centre both point sets, normalise each by its
Frobenius norm, solve orthogonal Procrustes (rotation may be a reflection, as scipy's solver
allows), scale by the sum of singular values, then map the prediction back into GT's scale and
position. Inputs are metres, (B, N, 3); errors are reported in millimetres.
"""

from __future__ import annotations

import numpy as np

AUC_MAX_M = 0.05
AUC_STEPS = 100


def _pair(pred: np.ndarray, gt: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 (B, N, 3) of the same shape; otherwise a one-line error instead of a gufunc traceback."""
    from .errors import UsageError

    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.ndim != 3 or pred.shape[-1] != 3 or pred.shape != gt.shape:
        raise UsageError(f"{what}: prediction shape {pred.shape} and ground-truth shape {gt.shape} "
                         "must match as (B, N, 3) in metres")
    return pred, gt


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Align each pred[b] onto gt[b] with rotation + scale + translation; returns (B, N, 3)."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    mu_gt, mu_pred = gt.mean(axis=1, keepdims=True), pred.mean(axis=1, keepdims=True)
    g, p = gt - mu_gt, pred - mu_pred
    s_gt = np.linalg.norm(g, axis=(1, 2), keepdims=True)
    s_pred = np.linalg.norm(p, axis=(1, 2), keepdims=True)
    g, p = g / np.maximum(s_gt, 1e-12), p / np.maximum(s_pred, 1e-12)
    u, sig, vt = np.linalg.svd(np.swapaxes(g, 1, 2) @ p)  # scipy: R = U V^T minimises ||g R - p||
    rot = u @ vt
    scale = sig.sum(axis=1)[:, None, None]
    return (p @ np.swapaxes(rot, 1, 2)) * scale * s_gt + mu_gt


def per_sample_errors(pred: np.ndarray, gt: np.ndarray, aligned: bool = True) -> np.ndarray:
    """Euclidean error per point (B, N) in metres, after Procrustes alignment by default."""
    pred = procrustes_align(pred, gt) if aligned else np.asarray(pred, dtype=np.float64)
    return np.linalg.norm(pred - np.asarray(gt, dtype=np.float64), axis=-1)


def auc(errors: np.ndarray, max_m: float = AUC_MAX_M, steps: int = AUC_STEPS) -> float:
    """Area under the PCK curve over [0, max_m] (trapezoid), normalised to [0, 1], averaged over points."""
    thresholds = np.linspace(0.0, max_m, steps)
    pck = (errors.reshape(-1, errors.shape[-1])[None] <= thresholds[:, None, None]).mean(axis=1)  # (T, N)
    # the trapezoid rule written out as NumPy computes it (its name changed in 2.0: trapz -> trapezoid)
    area = (np.diff(thresholds)[:, None] * (pck[1:] + pck[:-1]) / 2.0).sum(axis=0)
    return float(np.mean(area / max_m))


def f_scores(pred: np.ndarray, gt: np.ndarray, thresholds_m: tuple[float, ...] = (0.005, 0.015)) -> np.ndarray:
    """Mean F-score over samples for each threshold (nearest-neighbour precision/recall)."""
    from scipy.spatial import cKDTree

    out = np.zeros((len(pred), len(thresholds_m)))
    for b in range(len(pred)):
        d_pred = cKDTree(gt[b]).query(pred[b])[0]  # precision side
        d_gt = cKDTree(pred[b]).query(gt[b])[0]  # recall side
        for k, th in enumerate(thresholds_m):
            p, r = (d_pred < th).mean(), (d_gt < th).mean()
            out[b, k] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return out.mean(axis=0)


def evaluate(
    pred_joints: np.ndarray | None,
    gt_joints: np.ndarray | None,
    pred_vertices: np.ndarray | None,
    gt_vertices: np.ndarray | None,
) -> dict[str, float]:
    """The paper's FreiHAND table: keys pa_mpjpe_mm, auc_joints (when joints are given),
    pa_mpvpe_mm, auc_vertices, f5, f15 (when vertices are given)."""
    out: dict[str, float] = {}
    if pred_joints is not None and gt_joints is not None:
        pred_joints, gt_joints = _pair(pred_joints, gt_joints, "joints")
        err = per_sample_errors(pred_joints, gt_joints)
        out["pa_mpjpe_mm"] = float(err.mean() * 1000)
        out["auc_joints"] = auc(err)
    if pred_vertices is not None and gt_vertices is not None:
        pred_vertices, gt_vertices = _pair(pred_vertices, gt_vertices, "vertices")
        err = per_sample_errors(pred_vertices, gt_vertices)
        out["pa_mpvpe_mm"] = float(err.mean() * 1000)
        out["auc_vertices"] = auc(err)
        aligned = procrustes_align(pred_vertices, gt_vertices)
        f5, f15 = f_scores(aligned, np.asarray(gt_vertices, dtype=np.float64))
        out["f5"], out["f15"] = float(f5), float(f15)
    return out
