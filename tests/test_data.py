"""Data layer: FreiHAND reader, virtual-camera crop, synthetic hands, calibration sets."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from simplehand_deploy.calibration import build_calibration_set, ensure_calibration_set, load_calibration_set
from simplehand_deploy.cli import _run, deploy
from simplehand_deploy.data.crop import crop_sample, keypoint_box, uncrop_uv
from simplehand_deploy.data.freihand import FreiHAND, project
from simplehand_deploy.data.synthetic import generate, regressor
from simplehand_deploy.errors import UsageError

COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]  # BGR: red, green, blue dots on joints 0, 9, 12


def _dot_folder(root, n=3, with_xyz_eval=False):
    """FreiHAND v2 layout whose images carry coloured dots exactly on three projected joints."""
    rng = np.random.default_rng(0)
    Ks, xyzs = [], []
    (root / "training" / "rgb").mkdir(parents=True)
    (root / "evaluation" / "rgb").mkdir(parents=True)
    for i in range(n):
        f = 500 + 40 * i
        K = np.array([[f, 0, 112.0], [0, f, 112.0], [0, 0, 1]])
        xyz = np.column_stack([rng.uniform(-0.04, 0.04, 21), rng.uniform(-0.04, 0.04, 21), rng.uniform(0.5, 0.6, 21)])
        img = np.full((224, 224, 3), 40, np.uint8)
        uv = project(xyz, K)
        for j, colour in zip((0, 9, 12), COLOURS, strict=True):
            cv2.circle(img, tuple(np.round(uv[j]).astype(int).tolist()), 3, colour, -1)
        cv2.imwrite(str(root / "training" / "rgb" / f"{i:08d}.png"), img)
        cv2.imwrite(str(root / "evaluation" / "rgb" / f"{i:08d}.png"), img)
        Ks.append(K.tolist())
        xyzs.append(xyz.tolist())
    for split in ("training", "evaluation"):
        (root / f"{split}_K.json").write_text(json.dumps(Ks))
    (root / "training_xyz.json").write_text(json.dumps(xyzs))
    return root


def test_crop_uv_lands_on_coloured_dots_and_is_bgr(tmp_path):
    ds = FreiHAND(_dot_folder(tmp_path), "training")
    for i in range(len(ds)):
        crop, lab = crop_sample(ds[i], scale_enlarge=1.25)
        img = crop.image  # (3,224,224) BGR
        for j, colour in zip((0, 9, 12), COLOURS, strict=True):
            x, y = lab["uv"][j] * 224
            px = img[:, round(y), round(x)]
            channel = int(np.argmax(colour))
            assert px[channel] > 150, (i, j, px)  # the dot's own channel is bright at the label ...
            assert px[channel] == px.max()  # ... and dominates: BGR order preserved
        assert crop.image.dtype == np.float32 and crop.image.shape == (3, 224, 224)
        assert np.all(lab["xyz"][9] == 0)  # root-relative to joint 9


def test_evaluation_split_without_xyz(tmp_path):
    ds = FreiHAND(_dot_folder(tmp_path), "evaluation")
    sample = ds[1]
    assert sample["xyz"] is None and sample["uv"] is None
    crop, lab = crop_sample(sample)
    assert crop.image.shape == (3, 224, 224) and lab == {}


def test_crop_round_trip_subpixel():
    """uv -> crop -> back to the image within 0.5 px; 3-D labels project onto the 2-D labels.

    The 3-D check uses square pixels (fx == fy, as in FreiHAND): with fx != fy an in-plane rotation of
    the crop image is not exactly a rotation of the camera, the same approximation as the official code.
    """
    from simplehand_deploy.data.crop import apply_homography, crop_transform

    rng = np.random.default_rng(3)
    for _ in range(20):
        f = rng.uniform(300, 900)
        K = np.array([[f, 0, rng.uniform(80, 140)], [0, f, rng.uniform(80, 140)], [0, 0, 1]])
        xyz = np.column_stack([rng.uniform(-0.1, 0.1, 21), rng.uniform(-0.1, 0.1, 21), rng.uniform(0.3, 0.9, 21)])
        uv = project(xyz, K)
        center, size = keypoint_box(uv, (224, 224), 1.25)
        M, R, K_new = crop_transform(K, center, size, rotation=rng.uniform(-3, 3))
        uv01 = apply_homography(M, uv) / 224
        assert np.abs(uncrop_uv(uv01, M) - uv).max() < 0.5
        assert np.abs(project(xyz @ R.T, K_new) - uv01 * 224).max() < 0.5


def test_synthetic_is_deterministic_exact_and_loadable(tmp_path):
    a = generate(tmp_path / "a", 6, seed=5, eval_num=2, progress=False)
    b = generate(tmp_path / "b", 6, seed=5, progress=False)
    assert (a / "training_xyz.json").read_text() == (b / "training_xyz.json").read_text()
    ds = FreiHAND(a, "training")
    R = regressor()
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].shape == (224, 224, 3) and s["image"].dtype == np.uint8
        np.testing.assert_allclose(R @ s["vertices"], s["xyz"], atol=2e-6)  # exact up to JSON rounding
        assert (s["uv"] > 0).all() and (s["uv"] < 224).all()
        bones = np.linalg.norm(s["xyz"][1:] - s["xyz"][[0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17,
                                                                    18, 19]], axis=1)
        assert (bones > 0.01).all() and (bones < 0.11).all()  # plausible bone lengths in metres
    assert len(FreiHAND(a, "evaluation")) == 2


def test_reader_errors_name_the_problem(tmp_path):
    root = _dot_folder(tmp_path / "fh")
    with pytest.raises(UsageError, match=r"no such folder"):
        FreiHAND(tmp_path / "nope")
    (root / "training_xyz.json").write_text(json.dumps([[[0, 0, 1]] * 20] * 3))
    with pytest.raises(UsageError, match=r"entry 0 field 'xyz'"):
        FreiHAND(root, "training")[0]
    (root / "training_K.json").write_text(json.dumps([np.eye(3).tolist()] * 2))
    with pytest.raises(UsageError, match="do not divide"):
        FreiHAND(root, "training")
    (root / "training_K.json").unlink()
    with pytest.raises(UsageError, match=r"training_K\.json"):
        FreiHAND(root, "training")


def test_per_image_layout(tmp_path):
    xyz = np.column_stack([np.linspace(-0.03, 0.03, 21), np.linspace(-0.02, 0.03, 21), np.full(21, 0.5)])
    K = np.array([[500, 0, 112], [0, 500, 112], [0, 0, 1.0]])
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((224, 224, 3), np.uint8))
    (tmp_path / "a.json").write_text(json.dumps({"xyz": xyz.tolist(), "K": K.tolist(), "uv": project(xyz, K).tolist(),
                                                 "vertices": np.zeros((778, 3)).tolist()}))
    (tmp_path / "list.json").write_text(json.dumps(["a.jpg"]))
    s = FreiHAND(tmp_path / "list.json")[0]
    np.testing.assert_allclose(s["uv"], project(xyz, K))


def test_calibration_set_build_verify_reuse(tmp_path):
    out = build_calibration_set(tmp_path / "cal", synthetic=True, num=5, seed=2, progress=False)
    cs = load_calibration_set(out)
    assert cs.images.shape == (5, 3, 224, 224) and cs.images.dtype == np.float32
    assert cs.uv.shape == (5, 21, 2) and cs.vertices.shape == (5, 778, 3)
    assert np.allclose(cs.xyz[:, 9], 0)
    m = cs.manifest
    assert m["seed"] == 2 and len(m["indices"]) == 5 and set(m["files"]) == {"images.npy", "labels.npz"}
    stamp = (out / "manifest.json").stat().st_mtime_ns
    ensure_calibration_set(out, synthetic=True, num=5, seed=2, progress=False)
    assert (out / "manifest.json").stat().st_mtime_ns == stamp  # same settings: reused
    ensure_calibration_set(out, synthetic=True, num=4, seed=2, progress=False)
    assert load_calibration_set(out).manifest["num"] == 4  # other settings: rebuilt, not reused
    arr = np.load(out / "images.npy")
    arr[0, 0, 0, 0] += 1
    np.save(out / "images.npy", arr)
    with pytest.raises(UsageError, match="does not match"):
        load_calibration_set(out)


def test_calib_set_cli_bad_input_and_no_partial(tmp_path, capsys, monkeypatch):
    root = _dot_folder(tmp_path / "fh")
    code = _run(deploy, ["calib-set", "--freihand", str(root), "--num", "10", "--out", str(tmp_path / "c"), "--quiet"])
    assert code == 2 and "larger than the data" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    code = _run(deploy, ["calib-set", "--freihand", str(tmp_path / "missing"), "--num", "1", "--out",
                         str(tmp_path / "c")])
    assert code == 2 and "missing" in capsys.readouterr().err
    # An interruption mid-crop leaves nothing at the destination (and no stray temp folders).
    import simplehand_deploy.data.crop as crop_mod

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(crop_mod, "crop_sample", boom)
    with pytest.raises(KeyboardInterrupt):
        build_calibration_set(tmp_path / "c", freihand=root, num=2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fh"]
    monkeypatch.undo()
    assert _run(deploy, ["calib-set", "--freihand", str(root), "--num", "2", "--out", str(tmp_path / "c"),
                         "--quiet"]) == 0
    assert load_calibration_set(tmp_path / "c").images.shape[0] == 2
