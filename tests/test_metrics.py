from __future__ import annotations

import numpy as np
import pytest
from reference import align_reference
from scipy.spatial.transform import Rotation

from simplehand_deploy.metrics import auc, evaluate, per_sample_errors, procrustes_align


def test_alignment_matches_scipy_reference():
    rng = np.random.default_rng(0)
    gt = rng.normal(0, 0.05, (16, 778, 3))
    pred = gt + rng.normal(0, 0.01, gt.shape)
    ours = procrustes_align(pred, gt)
    for b in range(len(gt)):
        np.testing.assert_allclose(ours[b], align_reference(pred[b], gt[b]), atol=1e-6)


def test_rigid_scaled_copy_scores_zero():
    rng = np.random.default_rng(1)
    gt = rng.normal(0, 0.05, (8, 21, 3))
    rot = Rotation.random(8, random_state=2).as_matrix()
    pred = np.einsum("bij,bnj->bni", rot, gt) * 1.7 + rng.normal(0, 1, (8, 1, 3))
    m = evaluate(pred, gt, None, None)
    assert m["pa_mpjpe_mm"] == pytest.approx(0, abs=1e-6)
    assert m["auc_joints"] == pytest.approx(1.0, abs=0.011)  # first threshold is 0 mm


def test_evaluate_keys_auc_and_fscore():
    rng = np.random.default_rng(3)
    gt_v = rng.normal(0, 0.05, (4, 778, 3))
    out = evaluate(None, None, gt_v + 0.003 * rng.normal(size=gt_v.shape), gt_v)
    assert set(out) == {"pa_mpvpe_mm", "auc_vertices", "f5", "f15"}
    assert 0 < out["f5"] <= out["f15"] <= 1
    err = per_sample_errors(gt_v, gt_v)
    assert err.max() < 1e-9
    assert auc(np.full((2, 5), 0.025)) == pytest.approx(0.5, abs=0.011)
