"""`int8 --quantizer modelopt`: NVIDIA ModelOpt's ONNX PTQ in its own venv, checked like our own INT8 artifacts.

The tests that run ModelOpt skip with the reason where its venv is absent (`make modelopt` creates it);
the usage errors are checked everywhere, since they must come before any venv is looked for.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from simplehand_deploy.cli import _run, deploy
from simplehand_deploy.errors import UsageError
from simplehand_deploy.precision import modelopt as mo

AVAILABLE, WHY = mo.modelopt_available()
needs_modelopt = pytest.mark.skipif(not AVAILABLE, reason=f"ModelOpt venv absent: {WHY}")


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    from simplehand_deploy.calibration import build_calibration_set
    from simplehand_deploy.export import export_onnx
    from simplehand_deploy.model import create_model

    root = tmp_path_factory.mktemp("modelopt")
    fp32 = export_onnx(create_model("tiny", seed=0), root / "t-fp32.onnx", progress=False).path
    calib = build_calibration_set(root / "cal", synthetic=True, num=6, seed=3, progress=False)
    return {"root": root, "fp32": fp32, "calib": calib}


def test_options_checked_before_any_venv():
    assert mo.check_options("minmax", "trt10", None) == "max"
    assert mo.check_options("entropy", "trt10", "fp32") == "entropy"
    for args, word in ((("percentile", "trt10", None), "max and entropy"), (("minmax", "trt8", None), "opset"),
                       (("minmax", "trt10", "bf8"), "fp16 or fp32"), (("kl", "trt10", None), "minmax")):
        with pytest.raises(UsageError, match=word):
            mo.check_options(*args)


def test_percentile_is_a_usage_error(graphs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(mo.VENV_ENV, str(tmp_path / "no-venv"))  # the method is refused before the venv is sought
    code = _run(deploy, ["int8", "--quantizer", "modelopt", "--method", "percentile", "--onnx", str(graphs["fp32"]),
                         "--calib", str(graphs["calib"]), "--out", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "percentile" in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()


def test_trt8_is_a_usage_error(graphs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(mo.VENV_ENV, str(tmp_path / "no-venv"))
    code = _run(deploy, ["int8", "--quantizer", "modelopt", "--target", "trt8", "--onnx", str(graphs["fp32"]),
                         "--calib", str(graphs["calib"]), "--out", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "trt8" in err and "opset" in err and "make modelopt" not in err


def test_missing_or_broken_venv_says_how_to_create_it(graphs, tmp_path, capsys, monkeypatch):
    args = ["int8", "--quantizer", "modelopt", "--onnx", str(graphs["fp32"]), "--calib", str(graphs["calib"]),
            "--out", str(tmp_path / "x.onnx")]
    monkeypatch.setenv(mo.VENV_ENV, str(tmp_path / "no-venv"))
    assert _run(deploy, args) == 2
    err = capsys.readouterr().err
    assert "make modelopt" in err and mo.VENV_ENV in err and "Traceback" not in err
    # a venv without ModelOpt (this test's own interpreter, when it lacks modelopt) is refused the same way
    try:
        import modelopt  # noqa: F401
    except ImportError:
        monkeypatch.setenv(mo.VENV_ENV, sys.prefix)
        assert _run(deploy, args) == 2
        err = capsys.readouterr().err
        assert "cannot import modelopt" in err and "make modelopt" in err
    assert not (tmp_path / "x.onnx").exists()


def test_modelopt_command_line():
    from pathlib import Path

    cmd = mo.modelopt_command(Path("py"), Path("a.onnx"), Path("c.npz"), Path("o.onnx"), method="entropy",
                              high_precision="fp16", eps=["cpu"], exclude=["/head/Gemm.1"])
    text = " ".join(cmd)
    assert "-m modelopt.onnx.quantization" in text and "--quantize_mode int8" in text
    assert "--calibration_method entropy" in text and "--calibration_eps cpu" in text
    assert "--high_precision_dtype fp16" in text and "--calibration_data_path c.npz" in text
    assert cmd[cmd.index("--nodes_to_exclude") + 1] == r"^/head/Gemm\.1$"  # names, not patterns


@needs_modelopt
def test_modelopt_int8_runs_in_onnxruntime_with_our_sidecar(graphs, capsys):
    import onnx

    from simplehand_deploy.ort import graph_kind, make_session, run
    from simplehand_deploy.precision.macs import int8_mac_share, qdq_count

    out = graphs["root"] / "t-int8-modelopt.onnx"
    code = _run(deploy, ["int8", "--quantizer", "modelopt", "--onnx", str(graphs["fp32"]), "--calib",
                         str(graphs["calib"]), "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    model = onnx.load(str(out))
    assert graph_kind(model) == "int8" and max(o.version for o in model.opset_import if o.domain == "") >= 19
    side = json.loads(out.with_suffix(".json").read_text())["int8"]
    assert side["quantizer"] == "modelopt.onnx.quantization" and side["modelopt_method"] == "max"
    assert side["versions"]["nvidia-modelopt"] == mo.MODELOPT_VERSION and "onnx" in side["versions"]
    assert side["qdq_nodes"] == qdq_count(model) > 0
    assert side["int8_mac_share"] == pytest.approx(int8_mac_share(model)) and side["int8_mac_share"] > 0.5
    assert side["target"] == "trt10" and side["high_precision_dtype"] == "fp16" and side["calibration"]["num"] == 6
    # FP16 remainder: float16 tensors outside the Q/DQ layers
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    # the same sidecar fields as our own INT8 artifacts
    ours = graphs["root"] / "t-int8-ort.onnx"
    assert _run(deploy, ["int8", "--onnx", str(graphs["fp32"]), "--calib", str(graphs["calib"]), "--out", str(ours),
                         "--quiet"]) == 0
    top, ours_top = (json.loads(p.with_suffix(".json").read_text()) for p in (out, ours))
    shared = {"quantizer", "versions", "qdq_nodes", "int8_mac_share", "method", "placement", "target", "remainder",
              "calibration"}
    assert shared <= set(top["int8"]) and shared <= set(ours_top["int8"])
    assert top["int8_target"] == ours_top["int8_target"] == "trt10" and top["opset"] >= 19 and ours_top["opset"] >= 19
    assert ours_top["int8"]["qdq_nodes"] == qdq_count(onnx.load(str(ours))) > 0
    images = np.load(graphs["calib"] / "images.npy")
    y = run(make_session(out), images)
    assert y["vertices"].shape == (6, 778, 3) and np.isfinite(y["vertices"]).all()


@needs_modelopt
def test_modelopt_fp32_remainder_and_entropy(graphs):
    import onnx

    out = mo.quantize_modelopt(graphs["fp32"], graphs["calib"], graphs["root"] / "t-mo-fp32.onnx", method="entropy",
                               high_precision="fp32", calibration_eps=["cpu"], progress=False).path
    model = onnx.load(str(out))
    assert not any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    side = json.loads(out.with_suffix(".json").read_text())["int8"]
    assert side["modelopt_method"] == "entropy" and side["high_precision_dtype"] == "fp32"
    assert side["calibration_eps"] == ["cpu"]
