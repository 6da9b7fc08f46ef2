"""Drift report: rows and units, task metrics from labels, CLI JSON, bad calibration sets exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simplehand_deploy.cli import _run, deploy
from simplehand_deploy.drift import drift_row, measure_drift
from simplehand_deploy.export import export_onnx
from simplehand_deploy.fileio import sha256_file
from simplehand_deploy.model import create_model
from simplehand_deploy.precision import convert_fp16


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    from simplehand_deploy.calibration import build_calibration_set

    root = tmp_path_factory.mktemp("drift")
    fp32 = export_onnx(create_model("tiny", seed=0), root / "t-fp32.onnx", progress=False)
    fp16 = convert_fp16(fp32, root / "t-fp16.onnx")
    calib = build_calibration_set(root / "cal", synthetic=True, num=6, seed=3, progress=False)
    return {"fp32": fp32, "fp16": fp16, "calib": calib}


def test_drift_row_units():
    ref = {"vertices": np.zeros((2, 778, 3), np.float32), "uv": np.zeros((2, 21, 2), np.float32)}
    out = {"vertices": ref["vertices"].copy(), "uv": ref["uv"].copy()}
    out["vertices"][..., 0] = 0.001  # 1 mm everywhere
    out["uv"][0, 0, 1] = 1 / 224  # one keypoint off by one crop pixel
    row = drift_row(ref, out)
    assert row["vertex_drift_mean_mm"] == pytest.approx(1.0, rel=1e-5)
    assert row["vertex_drift_max_mm"] == pytest.approx(1.0, rel=1e-5)
    assert row["uv_drift_max_px"] == pytest.approx(1.0, rel=1e-5)
    assert row["uv_drift_mean_px"] == pytest.approx(1 / 42, rel=1e-5)


def test_measure_drift_rows(graphs):
    df = measure_drift([graphs["fp32"], graphs["fp16"]], graphs["calib"], model=create_model("tiny", seed=0))
    assert df.height == 2
    need = {"artifact", "precision", "num_samples", "vertex_drift_mean_mm", "vertex_drift_p99_mm",
            "vertex_drift_max_mm", "uv_drift_mean_px", "uv_drift_max_px", "pa_mpvpe_mm", "pa_mpjpe_mm"}
    assert need <= set(df.columns)
    r32, r16 = df.row(0, named=True), df.row(1, named=True)
    assert (r32["precision"], r16["precision"]) == ("fp32", "fp16") and r32["num_samples"] == 6
    assert r32["vertex_drift_mean_mm"] < 1e-2 and r16["vertex_drift_max_mm"] > 0  # fp32 ~ exact, fp16 differs
    assert r32["vertex_drift_mean_mm"] <= r32["vertex_drift_p99_mm"] <= r32["vertex_drift_max_mm"]
    # An ONNX graph that reproduces eager has eager's task metrics.
    assert r32["pa_mpvpe_mm"] == pytest.approx(r32["eager_pa_mpvpe_mm"], abs=1e-2)
    assert r32["pa_mpjpe_mm"] == pytest.approx(r32["eager_pa_mpjpe_mm"], abs=1e-2) and r32["pa_mpjpe_mm"] > 0


def test_drift_cli_json(graphs, capsys):
    code = _run(deploy, ["drift", "--onnx", str(graphs["fp32"]), "--onnx", str(graphs["fp16"]),
                         "--calib", str(graphs["calib"]), "--config", "tiny", "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["precision"] for r in rows] == ["fp32", "fp16"]
    assert all(r["vertex_drift_mean_mm"] >= 0 for r in rows)


def test_drift_bad_calibration_sets_exit_2(graphs, tmp_path, capsys):
    import shutil

    tampered = tmp_path / "tampered"
    shutil.copytree(graphs["calib"], tampered)
    imgs = np.load(tampered / "images.npy")
    np.save(tampered / "images.npy", imgs[:3])  # no longer what the manifest describes
    empty = tmp_path / "empty"
    empty.mkdir()
    np.save(empty / "images.npy", np.zeros((0, 3, 224, 224), np.float32))
    np.savez(empty / "labels.npz")
    files = {n: sha256_file(empty / n) for n in ("images.npy", "labels.npz")}
    (empty / "manifest.json").write_text(json.dumps({"files": files}))
    for calib, word in ((tampered, "manifest hash"), (empty, "empty"), (tmp_path / "missing", "no such folder")):
        code = _run(deploy, ["drift", "--onnx", str(graphs["fp32"]), "--calib", str(calib), "--config", "tiny",
                             "--json"])
        err = capsys.readouterr().err
        assert code == 2 and word in err, (calib, err)
        assert "Traceback" not in err
