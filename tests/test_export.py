"""ONNX export: parity with PyTorch and the official fixture, graph checks, sidecar, bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from teeth import assert_discriminates

from simplehand_deploy.artifact import OnnxArtifact
from simplehand_deploy.cli import _run, deploy
from simplehand_deploy.errors import UsageError
from simplehand_deploy.export import artifact_name, export_onnx, graph_problems, load_onnx
from simplehand_deploy.ort import make_session, run


@pytest.fixture(scope="module")
def tiny_onnx(trained_engines):
    """The trained tiny's FP32 artifact, exported by `make engine`'s code path."""
    return trained_engines["fp32"]


def _torch_outputs(checkpoint, x):
    import torch

    from simplehand_deploy.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        uv, v = model(torch.from_numpy(x))
    return uv.numpy(), v.numpy()


def test_graph_contract(tiny_onnx):
    model = onnx.load(tiny_onnx)
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 17
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 224, 224]
    assert [o.name for o in model.graph.output] == ["uv", "vertices"]
    ops = {n.op_type for n in model.graph.node}
    assert "GridSample" in ops and "CumSum" not in ops  # position map precomputed
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node if "stem" in n.name)  # fused
    assert graph_problems(model) == []
    side = json.loads(tiny_onnx.with_suffix(".json").read_text())
    assert side["opset"] == 17 and side["fused"] and side["parity_max_abs"]["vertices"] < 1e-4
    assert {p.key for p in model.metadata_props} >= {"simplehand", "producer"}


def test_dynamic_batch_parity_against_torch(tiny_onnx, trained_tiny, held_out):
    x = np.load(held_out / "images.npy")[:5]
    uv, v = _torch_outputs(trained_tiny, x)
    assert_discriminates(v, 1e-4)
    assert_discriminates(uv, 1e-5, what="uv")
    sess = make_session(tiny_onnx)
    for b in (1, 5):
        out = run(sess, x[:b], batch_size=b)
        np.testing.assert_allclose(out["vertices"], v[:b], atol=1e-4, rtol=0)
        np.testing.assert_allclose(out["uv"], uv[:b], atol=1e-5, rtol=0)


def test_graph_checks_catch_linear_gridsample(tiny_onnx):
    model = onnx.load(tiny_onnx)
    gs = next(n for n in model.graph.node if n.op_type == "GridSample")
    next(a for a in gs.attribute if a.name == "mode").s = b"linear"
    assert any("linear" in p for p in graph_problems(model))


@pytest.mark.slow
def test_fastvit_ma36_export_reproduces_official_fixture(tmp_path, parity_checkpoint, fixtures_dir):
    """Acceptance: the exported graph reproduces the official outputs in ONNX Runtime at batch 1 and 3."""
    from simplehand_deploy.checkpoint import load_checkpoint

    model, info = load_checkpoint(parity_checkpoint, "fastvit_ma36")
    art = export_onnx(model, tmp_path / artifact_name("fastvit_ma36", info.short, "fp32"), info=info, progress=False)
    path = art.path
    x = np.load(fixtures_dir / "parity" / "input.npy")
    exp_uv = np.load(fixtures_dir / "parity" / "expected_uv.npy").reshape(2, 21, 2)
    exp_v = np.load(fixtures_dir / "parity" / "expected_vertices.npy")
    sess = make_session(path)
    for batch in (1, 3):
        idx = np.arange(batch) % 2
        out = run(sess, x[idx], batch_size=batch)
        assert_discriminates(exp_v, 1e-4)
        np.testing.assert_allclose(out["vertices"], exp_v[idx], atol=1e-4, rtol=0)
        np.testing.assert_allclose(out["uv"], exp_uv[idx], atol=1e-5, rtol=0)
    assert OnnxArtifact.read(path) == art and art.extra["weights_sha256"] == info.sha256  # returns what it wrote


def test_bad_inputs(tmp_path, capsys):
    (tmp_path / "bad.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(UsageError, match=r"bad\.onnx"):
        load_onnx(tmp_path / "bad.onnx")
    code = _run(deploy, ["fp16", "--onnx", str(tmp_path / "bad.onnx"), "--out", str(tmp_path / "o.onnx")])
    assert code == 2 and "bad.onnx" in capsys.readouterr().err and not (tmp_path / "o.onnx").exists()
    code = _run(deploy, ["export", "--config", "tiny", "--opset", "20", "--out", str(tmp_path / "x.onnx"), "--quiet"])
    assert code == 2 and "opset" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()
    with pytest.raises(UsageError):
        artifact_name("tiny", "seed0", "fp8")


def test_dynamo_export_is_brought_down_to_opset_17(tmp_path, trained_tiny, held_out):
    """The dynamo exporter emits opset 18 whatever it is asked; the artifact must still be opset 17, batch-dynamic."""
    from simplehand_deploy.checkpoint import load_checkpoint

    trained, info = load_checkpoint(trained_tiny)
    art = export_onnx(trained, tmp_path / "dyn.onnx", info=info, dynamo=True, progress=False)
    path = art.path
    assert OnnxArtifact.read(path) == art  # the value export returns is the one it wrote
    model = onnx.load(path)
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 17
    assert graph_problems(model) == []
    side = json.loads(art.sidecar.read_text())
    assert side["exporter"] == "dynamo" and side["exporter_opset"] >= 17 and side["parity_max_abs"]["vertices"] < 1e-4
    x = np.load(held_out / "images.npy")[:3]
    _, v = _torch_outputs(trained_tiny, x)
    assert_discriminates(v, 1e-4)
    out = run(make_session(path), x, batch_size=3)
    np.testing.assert_allclose(out["vertices"], v, atol=1e-4, rtol=0)
