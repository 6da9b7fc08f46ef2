"""HRNet variant: the small twin runs the real HRNet code paths through export, FP16 and INT8."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from simplehand_deploy.config import ModelConfig, get_config
from simplehand_deploy.model import create_model


def test_hrnet_configs_round_trip_and_forward() -> None:
    for name in ("hrnet_w48", "hrnet_tiny"):
        cfg = get_config(name)
        assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    model = create_model("hrnet_tiny")
    with torch.no_grad():
        features = model.backbone.forward_features(torch.zeros(1, 3, 224, 224))
        uv, v = model(torch.rand(2, 3, 224, 224) * 255)
    assert features.shape == (1, 2048, 7, 7)
    assert uv.shape == (2, 21, 2) and v.shape == (2, 778, 3)
    # seed weights start the residual blocks as the identity: outputs O(1), not the ~1e7 timm's init gives
    assert uv.abs().max() < 10 and v.abs().max() < 10


def test_hrnet_tiny_export_fp16_int8(tmp_path: Path) -> None:
    """FP16 keeps Resize's scales float32 (else ORT refuses the graph); both INT8 placements mean something."""
    from simplehand_deploy.artifact import OnnxArtifact
    from simplehand_deploy.calibration import build_calibration_set
    from simplehand_deploy.checkpoint import load_checkpoint
    from simplehand_deploy.export import export_onnx
    from simplehand_deploy.ort import make_session
    from simplehand_deploy.precision import convert_fp16, quantize_int8

    model, info = load_checkpoint(None, "hrnet_tiny")
    fp32 = export_onnx(model, tmp_path / "fp32.onnx", info=info, progress=False)
    fp32_path = getattr(fp32, "path", tmp_path / "fp32.onnx")
    convert_fp16(fp32_path, tmp_path / "fp16.onnx")
    session = make_session(tmp_path / "fp16.onnx")
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 224, 224)).astype(np.float32)
    outs = session.run(None, {session.get_inputs()[0].name: x})
    assert all(np.isfinite(o).all() for o in outs)
    calib = build_calibration_set(tmp_path / "cal", synthetic=True, num=8, progress=False)
    shares = {}
    for placement in ("dense", "all"):
        quantize_int8(fp32_path, calib, tmp_path / f"{placement}.onnx", placement=placement, progress=False)
        side = OnnxArtifact.read_or_none(tmp_path / f"{placement}.onnx")
        assert side is not None and side.int8 is not None
        shares[placement] = side.int8.int8_mac_share
    assert 0.9 < shares["dense"] < shares["all"] < 1.0, shares


@pytest.mark.parametrize("name", ["hrnet_tiny"])
def test_hrnet_checkpoint_round_trip(tmp_path: Path, name: str) -> None:
    from simplehand_deploy.checkpoint import load_checkpoint, save_checkpoint

    model = create_model(name, seed=3)
    save_checkpoint(tmp_path / "w.pt", model)
    loaded, info = load_checkpoint(tmp_path / "w.pt")
    assert info.config == name
    x = torch.rand(1, 3, 224, 224) * 255
    with torch.no_grad():
        assert torch.equal(model(x)[1], loaded(x)[1])
