"""The ONNX Runtime calibrator patches are pinned to the ORT versions they were checked on."""

from __future__ import annotations

import importlib

import pytest

from simplehand_deploy.precision import ort_patches


def test_patched_functions_are_the_ones_checked():
    """Fails when ORT changes a function we patch (or rely on): re-read it, then add its hashes to CHECKED."""
    version = ort_patches.ort_version()
    assert version in ort_patches.CHECKED, f"ONNX Runtime {version}: calibrator patches never checked on it"
    assert ort_patches.unverified() == []
    assert ort_patches.patches_verified()


def test_a_changed_function_is_caught(monkeypatch):
    """The hash really covers the function's source: a replaced function no longer verifies."""
    mod = importlib.import_module("onnxruntime.quantization.quantize")

    def create_calibrator(*args, **kwargs):  # same name, other body
        return None

    monkeypatch.setattr(mod, "create_calibrator", create_calibrator)
    assert ort_patches.unverified() == ["onnxruntime.quantization.quantize:create_calibrator"]
    monkeypatch.setattr(ort_patches, "ort_version", lambda: "0.0.0")
    assert len(ort_patches.unverified()) == len(next(iter(ort_patches.CHECKED.values())))


@pytest.mark.parametrize("guard", [ort_patches.entropy_bins, ort_patches.percentile_guard])
def test_patches_are_undone(guard):
    from onnxruntime.quantization.calibrate import HistogramCollector

    mod = importlib.import_module("onnxruntime.quantization.quantize")
    before = (mod.create_calibrator, HistogramCollector.collect_absolute_value)
    with guard():
        assert (mod.create_calibrator, HistogramCollector.collect_absolute_value) != before
    assert (mod.create_calibrator, HistogramCollector.collect_absolute_value) == before


def test_int8_mac_share_reads_the_graph():
    """MACs of weighted nodes whose activation and weight both come from DQ (directly or via Cast), batch 1."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from simplehand_deploy.precision import int8_mac_share

    def graph(cast: bool, act_dq: bool):
        nodes, inits = [], [numpy_helper.from_array(np.ones((8, 3, 3, 3), np.int8), "w_q"),
                            numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.int8(0), "z"),
                            numpy_helper.from_array(np.ones((4, 8, 1, 1), np.float32), "w2")]
        nodes.append(helper.make_node("DequantizeLinear", ["w_q", "s", "z"], ["w"]))
        x = "x"
        if act_dq:
            nodes += [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
                      helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"])]
            x = "xd"
        if cast:
            nodes += [helper.make_node("Cast", [x], ["xc"], to=TensorProto.FLOAT),
                      helper.make_node("Cast", ["w"], ["wc"], to=TensorProto.FLOAT)]
        nodes += [helper.make_node("Conv", ["xc" if cast else x, "wc" if cast else "w"], ["y"], name="c1",
                                   pads=[1, 1, 1, 1]),
                  helper.make_node("Conv", ["y", "w2"], ["out"], name="c2")]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", 4, 4, 4])], inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])

    c1, c2 = 16 * 8 * 27, 16 * 4 * 8  # output positions x (cin x k x k) per output channel
    share = c1 / (c1 + c2)
    assert int8_mac_share(graph(cast=False, act_dq=True)) == pytest.approx(share)
    assert int8_mac_share(graph(cast=True, act_dq=True)) == pytest.approx(share)
    assert int8_mac_share(graph(cast=False, act_dq=False)) == 0.0  # weight-only Q/DQ is not INT8 compute
    onnx.checker.check_model(graph(cast=True, act_dq=True))
