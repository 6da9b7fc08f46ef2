"""Checkpoint loading: formats, strictness, clear errors; the predict CLI contract."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from teeth import assert_discriminates

from simplehand_deploy.checkpoint import load_checkpoint
from simplehand_deploy.cli import _run, deploy
from simplehand_deploy.errors import UsageError
from simplehand_deploy.model import create_model


def _predict(args):
    return _run(deploy, ["predict", *args])


def test_our_checkpoint_roundtrip_embeds_config(tiny_checkpoint):
    model, info = load_checkpoint(tiny_checkpoint)  # no config: it is embedded
    assert info.kind == "simplehand-deploy" and info.config == "tiny" and len(info.sha256) == 64
    ref = create_model("tiny", seed=0).state_dict()
    assert all(torch.equal(ref[k], v) for k, v in model.state_dict().items())


def test_module_prefix_and_bare_state_dict(tmp_path):
    sd = create_model("tiny", seed=1).state_dict()
    torch.save({"epoch": 5, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "ddp.pt")
    torch.save(sd, tmp_path / "bare.pt")
    m1, i1 = load_checkpoint(tmp_path / "ddp.pt", "tiny")
    m2, i2 = load_checkpoint(tmp_path / "bare.pt", "tiny")
    assert i1.kind == "official" and i1.epoch == 5 and i2.kind == "state_dict"
    for k in sd:
        assert torch.equal(m1.state_dict()[k], sd[k]) and torch.equal(m2.state_dict()[k], sd[k])


def test_fused_checkpoint_loads_into_fused_model(tmp_path):
    from simplehand_deploy.model import fuse

    m = fuse(create_model("tiny", seed=2))
    torch.save({"state_dict": m.state_dict()}, tmp_path / "fused.pt")
    loaded, info = load_checkpoint(tmp_path / "fused.pt", "tiny")
    assert info.fused and loaded.is_fused


def _write_broken(tmp_path, kind):
    sd = create_model("tiny", seed=0).state_dict()
    if kind == "missing":
        del sd["mesh_head.proj_2.weight"]
        key = "mesh_head.proj_2.weight"
    elif kind == "extra":
        sd["mesh_head.surprise.weight"] = torch.zeros(3)
        key = "mesh_head.surprise.weight"
    else:
        sd["keypoints_2d_head.bias"] = torch.zeros(41)
        key = "keypoints_2d_head.bias"
    path = tmp_path / f"{kind}.pt"
    torch.save({"epoch": 1, "state_dict": sd}, path)
    return path, key


@pytest.mark.parametrize("kind", ["missing", "extra", "misshaped"])
def test_bad_keys_exit_2_naming_the_key(tmp_path, capsys, kind):
    path, key = _write_broken(tmp_path, kind)
    x = np.zeros((1, 3, 224, 224), np.float32)
    np.save(tmp_path / "x.npy", x)
    code = _predict(
        [
            "--checkpoint",
            str(path),
            "--config",
            "tiny",
            "--input",
            str(tmp_path / "x.npy"),
            "--output",
            str(tmp_path / "o.npz"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert key in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("content", [b"hello, I am text\n", b"PK\x03\x04truncated"])
def test_non_checkpoint_files_are_usage_errors(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=r"bad\.pt"):
        load_checkpoint(path, "tiny")


def test_truncated_real_checkpoint(tmp_path, tiny_checkpoint):
    data = tiny_checkpoint.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError, match=r"cut\.pt"):
        load_checkpoint(path)


def test_predict_writes_npz_with_joints(tmp_path, tiny_checkpoint):
    x = (np.random.default_rng(0).random((2, 3, 224, 224)) * 255).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    reg = np.random.default_rng(1).random((21, 778)).astype(np.float32)
    np.save(tmp_path / "r.npy", reg)
    code = _predict(
        [
            "--checkpoint",
            str(tiny_checkpoint),
            "--input",
            str(tmp_path / "x.npy"),
            "--output",
            str(tmp_path / "o.npz"),
            "--regressor",
            str(tmp_path / "r.npy"),
        ]
    )
    assert code == 0
    out = np.load(tmp_path / "o.npz")
    assert out["uv"].shape == (2, 21, 2) and out["vertices"].shape == (2, 778, 3)
    np.testing.assert_allclose(out["joints"], reg @ out["vertices"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "dtype"), [((2, 3, 224), np.float32), ((1, 3, 128, 128), np.float32), ((1, 3, 224, 224), np.float64)]
)
def test_predict_rejects_wrong_input(tmp_path, capsys, shape, dtype):
    np.save(tmp_path / "x.npy", np.zeros(shape, dtype))
    code = _predict(["--config", "tiny", "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "o.npz")])
    assert code == 2
    assert "(B, 3, 224, 224)" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


def test_predict_reproduces_parity_fixture(tmp_path, parity_checkpoint, fixtures_dir):
    """Acceptance: the official-format checkpoint through `predict` matches the official outputs."""
    out = tmp_path / "o.npz"
    code = _predict(
        [
            "--checkpoint",
            str(parity_checkpoint),
            "--config",
            "fastvit_ma36",
            "--input",
            str(fixtures_dir / "parity" / "input.npy"),
            "--output",
            str(out),
            "--fuse",
        ]
    )
    assert code == 0
    res = np.load(out)
    assert_discriminates(np.load(fixtures_dir / "parity" / "expected_vertices.npy"), 1e-4)
    assert_discriminates(np.load(fixtures_dir / "parity" / "expected_uv.npy"), 1e-5, what="uv")
    np.testing.assert_allclose(
        res["uv"].reshape(2, 42), np.load(fixtures_dir / "parity" / "expected_uv.npy"), atol=1e-5, rtol=0
    )
    np.testing.assert_allclose(
        res["vertices"], np.load(fixtures_dir / "parity" / "expected_vertices.npy"), atol=1e-4, rtol=0
    )


@pytest.mark.parametrize("script", ["simplehand-deploy", "simplehand-bench"])
def test_help_does_not_import_tensorrt(script):
    code = (
        "import sys\n"
        f"from simplehand_deploy.cli import {'deploy_app' if script == 'simplehand-deploy' else 'bench_app'} as app\n"
        "try:\n    app(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'tensorrt' not in sys.modules, 'tensorrt imported'\n"
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime imported'\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Usage" in res.stdout
