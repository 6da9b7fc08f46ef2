"""Data layer hardening: CLI round trips, evaluation-split calibration, bad input naming the culprit,
metrics against a plain per-sample implementation."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from reference import align_reference
from scipy.spatial.transform import Rotation

from simplehand_deploy.calibration import load_calibration_set, stratified_indices
from simplehand_deploy.cli import _run, deploy
from simplehand_deploy.data.crop import crop_sample
from simplehand_deploy.data.freihand import FreiHAND, project
from simplehand_deploy.data.synthetic import generate, regressor
from simplehand_deploy.errors import UsageError
from simplehand_deploy.metrics import evaluate

V2_FILES = ("K", "xyz", "verts", "mano", "scale")


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- synth CLI -----------------------------------------------------------------------------------------------------


def test_synth_cli_round_trip_layout_and_determinism(tmp_path, capsys):
    argv = ["synth", "--num", "3", "--eval-num", "2", "--seed", "7", "--quiet"]
    assert _run(deploy, [*argv, "--out", str(tmp_path / "a")]) == 0
    assert _run(deploy, [*argv, "--out", str(tmp_path / "b")]) == 0
    a = tmp_path / "a"
    expected = [f"evaluation/rgb/{i:08d}.jpg" for i in range(2)] + [f"evaluation_{n}.json" for n in V2_FILES]
    expected += [f"training/rgb/{i:08d}.jpg" for i in range(3)] + [f"training_{n}.json" for n in V2_FILES]
    assert _files(a) == sorted(expected)
    for split, n in (("training", 3), ("evaluation", 2)):
        for name in V2_FILES:
            assert len(json.loads((a / f"{split}_{name}.json").read_text())) == n, (split, name)
        ds = FreiHAND(a, split)
        assert len(ds) == n
        s = ds[n - 1]
        np.testing.assert_allclose(regressor() @ s["vertices"], s["xyz"], atol=2e-6)
    for rel in expected:  # same seed -> byte-identical files (JPEGs included)
        assert (a / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    capsys.readouterr()
    assert _run(deploy, ["synth", "--num", "3", "--seed", "8", "--quiet", "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "training_xyz.json").read_text() != (a / "training_xyz.json").read_text()
    assert not (tmp_path / "c" / "evaluation").exists()  # --eval-num defaults to 0


def test_synth_cli_bad_num_exits_2(tmp_path, capsys):
    assert _run(deploy, ["synth", "--num", "0", "--out", str(tmp_path / "s"), "--quiet"]) == 2
    assert "--num" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_synth_refuses_to_replace_an_unrelated_folder(tmp_path, capsys):
    """`--out` pointing at a folder of other files must not wipe it (the atomic swap would rmtree it)."""
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious")
    assert _run(deploy, ["synth", "--num", "1", "--out", str(keep), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err and "not a synthetic FreiHAND set" in err
    assert (keep / "notes.txt").read_text() == "precious"
    # ... but regenerating over an earlier synthetic set is fine.
    assert _run(deploy, ["synth", "--num", "1", "--out", str(tmp_path / "s"), "--quiet"]) == 0
    assert _run(deploy, ["synth", "--num", "2", "--out", str(tmp_path / "s"), "--quiet"]) == 0
    assert len(FreiHAND(tmp_path / "s")) == 2


def test_calib_set_refuses_to_replace_an_unrelated_folder(tmp_path, capsys):
    root = generate(tmp_path / "fh", 2, seed=0, progress=False)
    keep = tmp_path / "out"
    keep.mkdir()
    (keep / "weights.pt").write_bytes(b"x")
    argv = ["calib-set", "--freihand", str(root), "--num", "1", "--quiet", "--out"]
    assert _run(deploy, [*argv, str(keep)]) == 2
    assert "weights.pt" in capsys.readouterr().err and (keep / "weights.pt").exists()
    (tmp_path / "afile").write_text("x")
    assert _run(deploy, [*argv, str(tmp_path / "afile")]) == 2
    assert "not a folder" in capsys.readouterr().err and (tmp_path / "afile").read_text() == "x"
    assert _run(deploy, [*argv, str(tmp_path / "cal")]) == 0
    assert _run(deploy, [*argv, str(tmp_path / "cal")]) == 0  # an existing calibration set is rebuilt in place
    capsys.readouterr()


# -- calib-set on the evaluation split ---------------------------------------------------------------------------


def test_calib_set_evaluation_split_of_a_synthetic_set(tmp_path, capsys):
    root = tmp_path / "fh"
    assert _run(deploy, ["synth", "--num", "2", "--eval-num", "6", "--seed", "3", "--quiet", "--out", str(root)]) == 0
    out = tmp_path / "cal-eval"
    argv = ["calib-set", "--freihand", str(root), "--split", "evaluation", "--num", "4", "--seed", "1", "--quiet"]
    assert _run(deploy, [*argv, "--out", str(out)]) == 0
    cs = load_calibration_set(out)
    m = cs.manifest
    assert m["split"] == "evaluation" and m["num"] == 4 and m["seed"] == 1
    assert m["indices"] == stratified_indices(6, 4, 1) and all(0 <= i < 6 for i in m["indices"])
    assert m["crop"]["scale_enlarge"] == 1.25
    assert cs.images.shape == (4, 3, 224, 224) and cs.xyz.shape == (4, 21, 3) and cs.vertices.shape == (4, 778, 3)
    ds = FreiHAND(root, "evaluation")
    for row, i in enumerate(m["indices"]):  # rows are the evaluation crops of the listed indices, in order
        crop, lab = crop_sample(ds[i], scale_enlarge=1.25)
        np.testing.assert_array_equal(cs.images[row], crop.image)
        np.testing.assert_allclose(cs.uv[row], lab["uv"])
        np.testing.assert_allclose(cs.xyz[row], lab["xyz"])
    # The training split of the same folder has only 2 samples: asking for 4 is bad input.
    capsys.readouterr()
    assert _run(deploy, [*argv[:4], "training", *argv[5:], "--out", str(tmp_path / "t")]) == 2
    assert "larger than the data" in capsys.readouterr().err
    assert _run(deploy, [*argv[:4], "bogus", *argv[5:], "--out", str(tmp_path / "t")]) == 2
    assert "bogus" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_calib_set_synthetic_evaluation_split(tmp_path):
    out = tmp_path / "c"
    assert _run(deploy, ["calib-set", "--synthetic", "--split", "evaluation", "--num", "3", "--quiet",
                         "--out", str(out)]) == 0
    cs = load_calibration_set(out)
    assert cs.manifest["split"] == "evaluation" and cs.images.shape[0] == 3 and cs.vertices.shape == (3, 778, 3)


# -- bad input names the culprit ---------------------------------------------------------------------------------


def _per_image(root, names):
    xyz = np.column_stack([np.linspace(-0.03, 0.03, 21), np.linspace(-0.02, 0.03, 21), np.full(21, 0.5)])
    K = np.array([[500, 0, 112], [0, 500, 112], [0, 0, 1.0]])
    for name in names:
        cv2.imwrite(str(root / f"{name}.jpg"), np.full((224, 224, 3), 90, np.uint8))
        (root / f"{name}.json").write_text(json.dumps({"xyz": xyz.tolist(), "K": K.tolist(),
                                                       "uv": project(xyz, K).tolist()}))
    (root / "list.json").write_text(json.dumps([f"{n}.jpg" for n in names]))
    return root / "list.json"


def _calib(listing, out, num=3):
    return _run(deploy, ["calib-set", "--freihand", str(listing), "--num", str(num), "--quiet", "--out", str(out)])


def test_per_image_layout_missing_sibling_json_exits_2(tmp_path, capsys):
    listing = _per_image(tmp_path, ["a", "b", "c"])
    assert _calib(listing, tmp_path / "ok") == 0
    (tmp_path / "b.json").unlink()
    capsys.readouterr()
    assert _calib(listing, tmp_path / "cal") == 2
    err = capsys.readouterr().err
    assert "b.json" in err and "missing" in err and "Traceback" not in err
    assert not (tmp_path / "cal").exists()


def test_per_image_layout_missing_image_and_bad_entries(tmp_path, capsys):
    listing = _per_image(tmp_path, ["a", "b", "c"])
    (tmp_path / "c.jpg").unlink()
    assert _calib(listing, tmp_path / "cal") == 2
    assert "c.jpg" in capsys.readouterr().err
    listing = _per_image(tmp_path, ["a", "b", "c"])
    (tmp_path / "a.json").write_text(json.dumps([1, 2, 3]))  # valid JSON, wrong type
    assert _calib(listing, tmp_path / "cal") == 2
    assert "a.json" in capsys.readouterr().err
    listing = _per_image(tmp_path, ["a", "b", "c"])
    ann = json.loads((tmp_path / "b.json").read_text())
    ann["K"] = [[1, 0], [0, 1]]
    (tmp_path / "b.json").write_text(json.dumps(ann))
    assert _calib(listing, tmp_path / "cal") == 2
    err = capsys.readouterr().err
    assert "b.json" in err and "'K'" in err
    (tmp_path / "list.json").write_text(json.dumps({"a": 1}))
    assert _calib(tmp_path / "list.json", tmp_path / "cal") == 2
    assert "list.json" in capsys.readouterr().err
    assert not (tmp_path / "cal").exists()


@pytest.mark.parametrize("content", [b"[[[1, 0, 0], [0, 1", b"\xff\xfe\x00garbage", b""])
def test_malformed_json_file_exits_2_naming_it(tmp_path, capsys, content):
    root = generate(tmp_path / "fh", 2, seed=0, progress=False)
    (root / "training_K.json").write_bytes(content)
    assert _run(deploy, ["calib-set", "--freihand", str(root), "--num", "1", "--quiet", "--out",
                         str(tmp_path / "cal")]) == 2
    err = capsys.readouterr().err
    assert "training_K.json" in err and "Traceback" not in err
    assert not (tmp_path / "cal").exists()


def test_annotation_file_of_the_wrong_kind_exits_2(tmp_path, capsys):
    root = generate(tmp_path / "fh", 2, seed=0, progress=False)
    (root / "training_K.json").write_text(json.dumps({"K": [1, 2]}))  # valid JSON, but not a list per image
    assert _run(deploy, ["calib-set", "--freihand", str(root), "--num", "1", "--quiet", "--out",
                         str(tmp_path / "cal")]) == 2
    assert "training_K.json" in capsys.readouterr().err
    with pytest.raises(UsageError, match=r"training_K\.json"):
        FreiHAND(root)


def test_empty_rgb_folder_and_bad_scale(tmp_path, capsys):
    root = generate(tmp_path / "fh", 2, seed=0, progress=False)
    for p in (root / "training" / "rgb").iterdir():
        p.unlink()
    assert _run(deploy, ["calib-set", "--freihand", str(root), "--num", "1", "--quiet", "--out",
                         str(tmp_path / "cal")]) == 2
    assert "no images" in capsys.readouterr().err
    root = generate(tmp_path / "fh2", 2, seed=0, progress=False)
    assert _run(deploy, ["calib-set", "--freihand", str(root), "--num", "1", "--scale-enlarge", "0", "--quiet",
                         "--out", str(tmp_path / "cal")]) == 2
    assert "--scale-enlarge" in capsys.readouterr().err


def test_calibration_labels_of_the_wrong_shape_are_refused(tmp_path):
    root = generate(tmp_path / "fh", 2, seed=0, progress=False)
    assert _run(deploy, ["calib-set", "--freihand", str(root), "--num", "2", "--quiet", "--out",
                         str(tmp_path / "cal")]) == 0
    # Rewrite labels with a wrong uv shape and re-sign the manifest, so only the shape check can catch it.
    from simplehand_deploy.fileio import sha256_file

    cal = tmp_path / "cal"
    labels = dict(np.load(cal / "labels.npz"))
    labels["uv"] = labels["uv"][:, :20]
    np.savez(cal / "labels.npz", **labels)
    man = json.loads((cal / "manifest.json").read_text())
    man["files"]["labels.npz"] = sha256_file(cal / "labels.npz")
    (cal / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(UsageError, match=r"labels\.npz.*uv"):
        load_calibration_set(cal)


# -- metrics vs a per-sample loop --------------------------------------------------------------------------------


def _auc_per_point(errors):
    """FreiHAND's EvalUtil: a PCK curve per point over 100 thresholds in [0, 50 mm], trapezoid, mean over points."""
    th = np.linspace(0, 0.05, 100)
    aucs = []
    for k in range(errors.shape[1]):
        pck = [np.mean(errors[:, k] <= t) for t in th]
        area = sum((pck[i] + pck[i + 1]) / 2 * (th[i + 1] - th[i]) for i in range(len(th) - 1))
        aucs.append(area / 0.05)
    return float(np.mean(aucs))


def _fscore(pred, gt, th):
    d = np.linalg.norm(pred[:, None] - gt[None], axis=-1)
    precision, recall = (d.min(axis=1) < th).mean(), (d.min(axis=0) < th).mean()
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def test_evaluate_with_joints_matches_a_per_sample_loop():
    rng = np.random.default_rng(11)
    B = 6
    gt_v = rng.normal(0, 0.04, (B, 778, 3))
    rot = Rotation.random(B, random_state=4).as_matrix()
    pred_v = np.einsum("bij,bnj->bni", rot, gt_v + rng.normal(0, 0.006, gt_v.shape)) * 1.3 + 0.2
    R = regressor().astype(np.float64)
    gt_j, pred_j = R @ gt_v, R @ pred_v + rng.normal(0, 0.004, (B, 21, 3))

    out = evaluate(pred_j, gt_j, pred_v, gt_v)
    assert set(out) == {"pa_mpjpe_mm", "auc_joints", "pa_mpvpe_mm", "auc_vertices", "f5", "f15"}

    err_j = np.stack([np.linalg.norm(align_reference(pred_j[b], gt_j[b]) - gt_j[b], axis=1) for b in range(B)])
    err_v = np.stack([np.linalg.norm(align_reference(pred_v[b], gt_v[b]) - gt_v[b], axis=1) for b in range(B)])
    assert out["pa_mpjpe_mm"] == pytest.approx(err_j.mean() * 1000, abs=1e-3)  # 1e-6 m
    assert out["pa_mpvpe_mm"] == pytest.approx(err_v.mean() * 1000, abs=1e-3)
    assert out["auc_joints"] == pytest.approx(_auc_per_point(err_j), abs=1e-9)
    assert out["auc_vertices"] == pytest.approx(_auc_per_point(err_v), abs=1e-9)
    for key, th in (("f5", 0.005), ("f15", 0.015)):
        ref = np.mean([_fscore(align_reference(pred_v[b], gt_v[b]), gt_v[b], th) for b in range(B)])
        assert out[key] == pytest.approx(ref, abs=1e-9)
    assert 3 < out["pa_mpvpe_mm"] < 15 and 0 < out["f5"] < out["f15"] < 1  # the noise level shows up
    # Joints alone give the joint keys only, with the same numbers.
    only = evaluate(pred_j, gt_j, None, None)
    assert set(only) == {"pa_mpjpe_mm", "auc_joints"} and only["pa_mpjpe_mm"] == out["pa_mpjpe_mm"]


def test_evaluate_rejects_mismatched_shapes():
    a = np.zeros((2, 21, 3))
    with pytest.raises(UsageError, match="joints: prediction shape"):
        evaluate(a, np.zeros((2, 778, 3)), None, None)
    with pytest.raises(UsageError, match="vertices: prediction shape"):
        evaluate(None, None, np.zeros((2, 778, 2)), np.zeros((2, 778, 2)))


# -- synthetic generation at a realistic size --------------------------------------------------------------------


def test_synthetic_fifty_samples(tmp_path):
    """Not timed (see benchmarks/crop_speed.py for samples/s); 50 samples must be well-formed and varied."""
    root = generate(tmp_path / "s", 50, seed=1, progress=False)
    ds = FreiHAND(root)
    assert len(ds) == 50 and len(list((root / "training" / "rgb").iterdir())) == 50
    xyz = np.stack([ds.annotation(i)["xyz"] for i in range(50)])
    uv = np.stack([ds.annotation(i)["uv"] for i in range(50)])
    assert (uv > 0).all() and (uv < 224).all()
    assert np.abs(xyz - xyz.mean(0)).max() > 0.05  # poses and placements differ across samples
    K = np.stack([ds.annotation(i)["K"] for i in range(50)])
    assert K[:, 0, 0].std() > 10  # random intrinsics
