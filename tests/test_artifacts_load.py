"""Artifacts that load everywhere: every ONNX artifact `make engine` writes passes
`polygraphy check lint`, runs under `polygraphy run --onnxrt` and under ONNX Runtime's DEFAULT session
options, as a user's own tools would load it. The FP16 island is built so that ORT's attention fusion
does not trip on it (precision.graph.attention_scores); the last test shows that it would otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from teeth import assert_discriminates

pytest.importorskip("polygraphy", reason="polygraphy is in the dev extra: pip install -e '.[dev]'")

ARTIFACTS = ("fp32", "fp16", "int8-trt10", "int8-trt8")


def _polygraphy() -> str:
    local = Path(sys.executable).with_name("polygraphy")
    found = str(local) if local.is_file() else shutil.which("polygraphy")
    if not found:
        pytest.skip("the polygraphy console script is not on PATH")
    return found


@pytest.fixture(scope="module")
def engines(trained_engines):
    """What the make-engine code path wrote for the trained tiny (conftest), and 4 held-out crops."""
    paths = {p: trained_engines[p] for p in ARTIFACTS}
    return paths, np.load(trained_engines["held_out"] / "images.npy")[:4]


def _polygraphy_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_polygraphy(), *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_polygraphy_lint_and_onnxrt(engines, artifact):
    path = engines[0][artifact]
    for cmd in (["check", "lint", str(path)], ["run", "--onnxrt", str(path)]):
        res = _polygraphy_run(*cmd)
        assert res.returncode == 0 and "PASSED" in res.stdout + res.stderr, (cmd, (res.stdout + res.stderr)[-2000:])


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_onnxruntime_default_session_options(engines, artifact):
    import onnxruntime as ort

    paths, x = engines
    ref = ort.InferenceSession(str(paths["fp32"]), providers=["CPUExecutionProvider"]).run(None, {"image": x})[1]
    sess = ort.InferenceSession(str(paths[artifact]), providers=["CPUExecutionProvider"])  # no SessionOptions
    vertices = sess.run(None, {"image": x})[1]
    assert vertices.shape == (4, 778, 3) and vertices.dtype == np.float32
    # the same model: within the precision's drift target (mm, mean per vertex), far below how much the trained
    # tiny's vertices differ between images
    bound_mm = {"fp32": 1e-3, "fp16": 0.1, "int8-trt10": 1.0, "int8-trt8": 1.0}[artifact]
    assert_discriminates(ref, bound_mm, "mean_dist_mm")
    assert np.linalg.norm(vertices - ref, axis=-1).mean() * 1000 < bound_mm


def test_int8_targets_differ_as_intended(engines):
    paths, _ = engines
    opset = {p: next(o.version for o in onnx.load(paths[p]).opset_import if o.domain in ("", "ai.onnx"))
             for p in ARTIFACTS}
    assert opset == {"fp32": 17, "fp16": 17, "int8-trt10": 19, "int8-trt8": 17}


@pytest.mark.skipif(not __import__("onnxruntime").__version__.startswith("1.32."),
                    reason="the attention-fusion type bug was seen in ONNX Runtime 1.32")
def test_fp16_attention_scale_outside_the_island_trips_ort(engines, tmp_path):
    """The pattern the island avoids: without the attention scores in FP32, ORT's default optimisations
    (MobileCLIP attention fusion reading the FP16 q-scale as float32) refuse the graph, and so does Polygraphy."""
    import onnxruntime as ort

    from simplehand_deploy.precision.fp16 import island, to_fp16
    from simplehand_deploy.precision.graph import sensitive_nodes

    model = onnx.load(engines[0]["fp32"])
    scores = sensitive_nodes(model.graph)["attention_scores"]
    assert {"MatMul", "Mul", "Softmax"} <= {n.op_type for n in model.graph.node if n.name in scores}
    old = tmp_path / "old-island.onnx"
    onnx.save(to_fp16(model, island(model.graph) - scores), old)
    with pytest.raises(Exception, match="Tensor type mismatch"):
        ort.InferenceSession(str(old), providers=["CPUExecutionProvider"])
    assert _polygraphy_run("run", "--onnxrt", str(old)).returncode != 0
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    ort.InferenceSession(str(old), opts, providers=["CPUExecutionProvider"])  # only the fusion trips on it
