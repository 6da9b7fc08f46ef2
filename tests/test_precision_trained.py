"""The drift targets (docs/precision.md) on a *trained* tiny model (seed weights say little about quantisation error).

`benchmarks/precision_drift.py` prints the measured figures (same recipe: 300 steps, 32 calibration and
32 held-out synthetic crops); this test asserts looser bounds so noise cannot flake it. Measured there:
FP16 0.046 mm, INT8 `dense` 0.68 mm, INT8 `all` 1.56 mm mean vertex drift; PA-MPVPE 23.81 mm in all three.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from teeth import assert_discriminates

from simplehand_deploy.calibration import build_calibration_set
from simplehand_deploy.checkpoint import load_checkpoint
from simplehand_deploy.drift import measure_drift
from simplehand_deploy.export import export_onnx
from simplehand_deploy.precision import convert_fp16, quantize_int8


@pytest.fixture(scope="module")
def drift_rows(tmp_path_factory, trained_tiny):
    w = tmp_path_factory.mktemp("trained")
    model, info = load_checkpoint(trained_tiny)
    calib = build_calibration_set(w / "calib", synthetic=True, num=32, seed=1, progress=False)
    held_out = build_calibration_set(w / "heldout", synthetic=True, num=32, seed=777, progress=False)
    fp32 = export_onnx(model, w / "fp32.onnx", info=info, progress=False).path
    graphs = {
        "fp32": fp32,
        "fp16": convert_fp16(fp32, w / "fp16.onnx").path,
        "int8": quantize_int8(fp32, calib, w / "int8.onnx", progress=False).path,
        "int8-all": quantize_int8(fp32, calib, w / "int8-all.onnx", placement="all", progress=False).path,
    }
    df = measure_drift(list(graphs.values()), held_out, model=model)
    with torch.no_grad():
        _, eager = model(torch.from_numpy(np.load(held_out / "images.npy")[:8]))
    return {**dict(zip(graphs, df.iter_rows(named=True), strict=True)), "eager_vertices": eager.numpy()}


def test_trained_tiny_drift_targets(drift_rows):
    r = drift_rows
    # the largest bound below; the trained tiny's vertices differ between images by only ~1.3-2.7 mm (near-mean
    # hands), so INT8 is held to its target, not looser
    assert_discriminates(r["eager_vertices"], 1.0, "mean_dist_mm")
    assert r["fp32"]["vertex_drift_mean_mm"] < 1e-3
    assert r["fp16"]["vertex_drift_mean_mm"] < 0.1  # target 0.05
    assert r["int8"]["vertex_drift_mean_mm"] < 1.0  # the target (measured 0.68)
    pa = r["fp32"]["pa_mpvpe_mm"]
    assert pa < 35  # the model did learn the hand (seed weights: ~41 mm)
    for p in ("fp16", "int8", "int8-all"):
        assert abs(r[p]["pa_mpvpe_mm"] - pa) <= 0.15 * pa, p  # target 10%


def test_dense_placement_beats_all(drift_rows):
    """Keeping depthwise convs and the token regressor float is what brings INT8 under the target."""
    r = drift_rows
    assert r["int8"]["vertex_drift_mean_mm"] < 0.75 * r["int8-all"]["vertex_drift_mean_mm"]
    assert r["int8"]["uv_drift_mean_px"] < r["int8-all"]["uv_drift_mean_px"]
