"""Drift report: rows and units, task metrics from labels, CLI JSON, bad calibration sets exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from teeth import assert_discriminates

from simplehand_deploy.cli import _run, deploy
from simplehand_deploy.drift import drift_row, measure_drift
from simplehand_deploy.fileio import sha256_file


@pytest.fixture(scope="module")
def graphs(trained_engines):
    """The trained tiny's FP32 and FP16 graphs, its eager model and held-out crops (8) to measure them on."""
    from simplehand_deploy.checkpoint import load_checkpoint

    model, _ = load_checkpoint(trained_engines["checkpoint"])
    return {"fp32": trained_engines["fp32"], "fp16": trained_engines["fp16"], "calib": trained_engines["held_out"],
            "checkpoint": trained_engines["checkpoint"], "model": model}


@pytest.fixture(scope="module")
def rows(graphs):
    """measure_drift's rows for fp32 and fp16; the precondition that makes their bounds mean something."""
    import torch

    with torch.no_grad():
        _, eager = graphs["model"](torch.from_numpy(np.load(graphs["calib"] / "images.npy")))
    assert_discriminates(eager.numpy(), FP16_MAX_MM, "mean_dist_mm")
    df = measure_drift([graphs["fp32"], graphs["fp16"]], graphs["calib"], model=graphs["model"])
    return df


FP16_MAX_MM = 0.1  # the FP16 target is 0.05 mm mean vertex drift (docs/precision.md)


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


def test_measure_drift_rows(rows):
    df = rows
    assert df.height == 2
    need = {"artifact", "precision", "num_samples", "vertex_drift_mean_mm", "vertex_drift_p99_mm",
            "vertex_drift_max_mm", "uv_drift_mean_px", "uv_drift_max_px", "pa_mpvpe_mm", "pa_mpjpe_mm"}
    assert need <= set(df.columns)
    r32, r16 = df.row(0, named=True), df.row(1, named=True)
    assert (r32["precision"], r16["precision"]) == ("fp32", "fp16") and r32["num_samples"] == 8
    assert r32["vertex_drift_mean_mm"] < 1e-3 < r16["vertex_drift_mean_mm"] < FP16_MAX_MM  # fp32 ~ exact
    assert r32["vertex_drift_mean_mm"] <= r32["vertex_drift_p99_mm"] <= r32["vertex_drift_max_mm"]
    # An ONNX graph that reproduces eager has eager's task metrics.
    assert r32["pa_mpvpe_mm"] == pytest.approx(r32["eager_pa_mpvpe_mm"], abs=1e-2)
    assert r32["pa_mpjpe_mm"] == pytest.approx(r32["eager_pa_mpjpe_mm"], abs=1e-2) and r32["pa_mpjpe_mm"] > 0


def test_drift_cli_json(graphs, rows, capsys):
    code = _run(deploy, ["drift", "--onnx", str(graphs["fp32"]), "--onnx", str(graphs["fp16"]),
                         "--calib", str(graphs["calib"]), "--config", "tiny", "--checkpoint",
                         str(graphs["checkpoint"]), "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["precision"] for r in printed] == ["fp32", "fp16"]
    assert [r["artifact"] for r in printed] == [str(graphs["fp32"]), str(graphs["fp16"])]
    # the CLI reports what the library measures (same model, same crops), not merely a number
    for got, want in zip(printed, rows.iter_rows(named=True), strict=True):
        assert got["vertex_drift_mean_mm"] == pytest.approx(want["vertex_drift_mean_mm"], rel=1e-4, abs=1e-6)
    assert printed[0]["vertex_drift_mean_mm"] < 1e-3 < printed[1]["vertex_drift_mean_mm"] < FP16_MAX_MM


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


# -- hand regions and drift maps -----------------------------------------------------------------------

def _toy_hand():
    """21 joints spread out (wrist at 0, fingers fanned along y) and 3 vertices next to every joint."""
    from simplehand_deploy.drift import JOINT_REGION

    joints = np.zeros((21, 3))
    for f in range(5):
        for k in range(4):
            joints[1 + 4 * f + k] = [0.02 * (f - 2), 0.02 * (k + 1), 0.0]
    offsets = np.array([[0.002, 0, 0], [0, 0, 0.002], [-0.001, 0.001, 0.0]])
    vertices = (joints[:, None, :] + offsets[None]).reshape(-1, 3)  # 63 vertices, 3 per joint in joint order
    return joints, vertices, np.repeat(JOINT_REGION, 3)


def test_joint_region_map_is_the_documented_one():
    from simplehand_deploy.drift import JOINT_REGION, REGIONS

    want = {"thumb": [1, 2, 3, 4], "index": [6, 7, 8], "middle": [10, 11, 12], "ring": [14, 15, 16],
            "little": [18, 19, 20], "palm": [0, 5, 9, 13, 17]}
    assert {r: [j for j in range(21) if REGIONS[JOINT_REGION[j]] == r] for r in REGIONS} == want


def test_vertex_regions_nearest_joint_of_the_mean_hand():
    from simplehand_deploy.drift import REGIONS, HandRegions, mean_hand, vertex_regions

    joints, vertices, expected = _toy_hand()
    assert (vertex_regions(vertices, joints) == expected).all()
    # A vertex halfway-but-nearer to the index tip (8) than to the middle tip (12) is index, not middle.
    probe = joints[8] + 0.45 * (joints[12] - joints[8])
    assert REGIONS[vertex_regions(probe[None], joints)[0]] == "index"
    # Labels of the same hand in other poses (rotated, translated): the mean hand is that hand again, up to a
    # rotation, so the assignment is unchanged (without the alignment the mean is a blur and the test fails).
    rng = np.random.default_rng(0)
    vs, js = [], []
    for _ in range(6):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))
        shift = rng.normal(scale=0.05, size=3)
        vs.append(vertices @ q.T + shift)
        js.append(joints @ q.T + shift)
    mv, mj = mean_hand(np.stack(vs), np.stack(js))
    assert np.allclose(np.linalg.norm(mv - mj[0], axis=1), np.linalg.norm(vertices - joints[0], axis=1), atol=1e-9)
    assert np.allclose(np.linalg.norm(mj - mj[0], axis=1), np.linalg.norm(joints - joints[0], axis=1), atol=1e-9)
    hand = HandRegions.from_labels(np.stack(vs), np.stack(js))
    assert (hand.regions == expected).all()
    assert HandRegions.from_labels(None, np.stack(js)) is None


def test_region_columns_of_drift_row():
    from simplehand_deploy.drift import REGION_COLUMNS, REGIONS

    _, vertices, regions = _toy_hand()
    ref = {"vertices": np.zeros((2, len(vertices), 3), np.float32)}
    out = {"vertices": ref["vertices"].copy()}
    for k in range(len(REGIONS)):
        out["vertices"][:, regions == k, 0] = 0.001 * (k + 1)  # region k drifts k+1 mm
    row = drift_row(ref, out, regions)
    assert [row[c] for c in REGION_COLUMNS] == pytest.approx([1, 2, 3, 4, 5, 6], rel=1e-5)
    assert "uv_drift_mean_px" not in row  # vertices-only callers (a bare GPU image) get the vertex keys
    assert set(REGION_COLUMNS).isdisjoint(drift_row(ref, out))  # no regions known: no region columns


def test_measure_drift_region_columns_add_up(graphs):
    from simplehand_deploy.calibration import load_calibration_set
    from simplehand_deploy.drift import REGION_COLUMNS, HandRegions

    df = measure_drift([graphs["fp16"]], graphs["calib"], model=graphs["model"])
    r = df.row(0, named=True)
    assert all(r[c] is not None and r[c] > 0 for c in REGION_COLUMNS)
    cal = load_calibration_set(graphs["calib"])
    counts = np.bincount(HandRegions.from_labels(cal.vertices, cal.xyz).regions, minlength=6)
    assert (counts > 0).all()  # every region owns vertices of the synthetic mean hand
    assert sum(n * r[c] for n, c in zip(counts, REGION_COLUMNS, strict=True)) / counts.sum() == pytest.approx(
        r["vertex_drift_mean_mm"], rel=1e-4)


def test_bench_accuracy_writes_region_columns_and_drift_maps(graphs, tmp_path, capsys):
    from simplehand_deploy.bench.results import RESULT_COLUMNS, read_results
    from simplehand_deploy.cli import bench
    from simplehand_deploy.drift import REGION_COLUMNS

    assert set(REGION_COLUMNS) <= set(RESULT_COLUMNS)
    code = _run(bench, ["accuracy", "--config", "tiny", "--checkpoint", str(graphs["checkpoint"]), "--runners",
                        "onnxruntime", "--onnx", str(graphs["fp32"]),
                        "--onnx", str(graphs["fp16"]), "--calib", str(graphs["calib"]), "--out",
                        str(tmp_path / "acc"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    df = read_results(tmp_path / "acc")
    assert df.height == 2 and df.select(list(REGION_COLUMNS)).null_count().sum_horizontal().item() == 0
    for precision in ("fp32", "fp16"):
        png = (tmp_path / "acc" / f"drift_map_onnxruntime_{precision}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000


def test_drift_cli_takes_any_onnx_without_sidecar(graphs, tmp_path, capsys):
    import shutil

    from simplehand_deploy.drift import REGION_COLUMNS

    bare = tmp_path / "someone-elses.onnx"
    shutil.copy(graphs["fp16"], bare)  # no .json sidecar beside it
    assert not bare.with_suffix(".json").exists()
    code = _run(deploy, ["drift", "--onnx", str(bare), "--calib", str(graphs["calib"]), "--config", "tiny", "--json"])
    assert code == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["artifact"] == str(bare) and row["precision"] == "fp16" and row["vertex_drift_mean_mm"] > 0
    assert all(row[c] > 0 for c in REGION_COLUMNS)
