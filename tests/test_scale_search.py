"""Output-aware activation-scale search (`int8 --scale-search`) on the trained tiny: it never raises the
calibration-crop drift it starts from, what it writes is what it measured, and the sidecar records it."""

from __future__ import annotations

import onnx
import pytest
from onnx import numpy_helper

from simplehand_deploy.artifact import OnnxArtifact
from simplehand_deploy.calibration import build_calibration_set, load_calibration_set
from simplehand_deploy.checkpoint import load_checkpoint
from simplehand_deploy.export import export_onnx
from simplehand_deploy.ort import make_session, run
from simplehand_deploy.precision import quantize_int8, scale_search
from simplehand_deploy.precision.macs import int8_mac_share
from simplehand_deploy.precision.repair import drift_mm


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, trained_tiny):
    w = tmp_path_factory.mktemp("scale-search")
    model, info = load_checkpoint(trained_tiny)
    calib = build_calibration_set(w / "calib", synthetic=True, num=8, seed=1, progress=False)
    fp32 = export_onnx(model, w / "fp32.onnx", info=info, progress=False).path
    plain = quantize_int8(fp32, calib, w / "all.onnx", placement="all", progress=False).path
    return {"fp32": fp32, "calib": calib, "all": plain, "w": w}


def _scales(path):
    m = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    return {s: float(inits[s]) for s, _ in scale_search.activation_scales(m)}


def test_search_never_raises_calibration_drift(graphs, monkeypatch):
    # a short search (the 8 most sensitive scales) keeps the test quick; the full one runs in the preset
    monkeypatch.setattr(scale_search, "DEFAULT_MULTIPLIERS", (0.5, 0.7, 0.85, 1.0, 1.2))
    monkeypatch.setattr(scale_search, "DEFAULT_TOP", 8)
    calib, fp32 = graphs["calib"], graphs["fp32"]
    out = quantize_int8(fp32, calib, graphs["w"] / "searched.onnx", placement="all", scale_search=True,
                        progress=False)
    images = load_calibration_set(calib).images
    ref = run(make_session(fp32), images)
    before, after = drift_mm(ref, graphs["all"], images), drift_mm(ref, out.path, images)
    rec = OnnxArtifact.read(out.path).int8
    found = rec.extra["scale_search"]
    # measured independently of the search's own session: never worse than the calibrated start, and it did improve
    assert after <= before + 1e-6
    assert after < before
    assert found["start_mm"] == pytest.approx(before, rel=1e-4)
    assert found["final_mm"] == pytest.approx(after, rel=1e-4)
    assert found["searched"] == 8 and found["crops"] == len(images) and found["changed"]
    # only the scales it names changed, by the multipliers it names; placement (MAC share) untouched
    s0, s1 = _scales(graphs["all"]), _scales(out.path)
    moved = {k for k in s0 if s0[k] != s1[k]}
    assert len(moved) == len(found["changed"])
    assert all(abs(s1[k] / s0[k] - m) < 2e-3 for k in moved for m in [min(found["multipliers"],
                                                                             key=lambda x: abs(s1[k] / s0[k] - x))])
    assert int8_mac_share(out.path) == pytest.approx(int8_mac_share(graphs["all"]))
    assert OnnxArtifact.read(graphs["all"]).int8.extra["scale_search"] is None


def test_scale_search_is_ours_only(graphs):
    from simplehand_deploy.errors import UsageError

    with pytest.raises(UsageError, match="--scale-search"):
        quantize_int8(graphs["fp32"], graphs["calib"], graphs["w"] / "mo.onnx", quantizer="modelopt",
                      scale_search=True, progress=False)
