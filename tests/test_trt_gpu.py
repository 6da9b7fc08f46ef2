"""TensorRT on a real GPU: build -> run -> compare with ONNX Runtime. Skips without TensorRT + CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simplehand_deploy.errors import UsageError

pytestmark = [pytest.mark.trt, pytest.mark.gpu]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, trained_tiny):
    """The engine job on the trained tiny (seed weights' vertices hardly depend on the image: no bound bites)."""
    from simplehand_deploy.pipeline import int8_targets, run_engine_job

    root = tmp_path_factory.mktemp("gpu")
    rows = run_engine_job(config="tiny", checkpoint=trained_tiny, calib_num=16, out=root / "engines",
                          calib_dir=root / "calibration", quiet=True, profile=(1, 8, 64))
    onnx = {r.artifact.removeprefix("ONNX ").replace(" ", "-"): Path(r.path) for r in rows
            if r.artifact.startswith("ONNX")}
    onnx["int8"] = onnx[f"int8-{int8_targets()[0]}"]  # the INT8 artifact the job builds this TensorRT's engine from
    return root, onnx


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_matches_onnxruntime(artifacts, precision):
    from teeth import assert_discriminates

    from simplehand_deploy.ort import make_session, run
    from simplehand_deploy.trt.build import build_engine, require_tensorrt, trt_major
    from simplehand_deploy.trt.runtime import TrtEngine

    trt = require_tensorrt()
    root, onnx = artifacts
    eng = root / "engines"
    src = onnx[precision]
    if precision == "fp16" and trt_major(trt) < 10:
        src = onnx["fp32"]
    art = build_engine(src, precision=precision, out_dir=eng)
    assert art.cached  # the engine job built this key already: a content-key hit, no rebuild
    runner = TrtEngine(art.plan)
    x = np.load(root / "calibration" / "synthetic-16" / "images.npy")
    ref = run(make_session(onnx[precision]), x)
    bound_mm = {"fp32": 0.01, "fp16": 0.1, "int8": 1.0}[precision]
    assert_discriminates(ref["vertices"], bound_mm, "mean_dist_mm")
    for batch in (1, 8, 64):
        xb = np.resize(x, (batch, 3, 224, 224)).astype(np.float32)
        out = runner.infer(xb)
        assert out["vertices"].shape == (batch, 778, 3)
    out = runner.infer(x)
    drift_mm = np.linalg.norm(out["vertices"] - ref["vertices"], axis=-1).mean() * 1000
    assert drift_mm < bound_mm
    with pytest.raises(UsageError, match="outside the engine profile"):
        runner.prepare(65)
    assert runner.layer_times(1, runs=2)


def test_failed_deserialisation_is_a_cache_miss(artifacts, tmp_path):
    """Corrupts a plan in its own engine folder: the module's shared plans stay intact (order-independent)."""
    from simplehand_deploy.trt.build import build_engine

    _, onnx = artifacts
    src = onnx["fp32"]
    own = tmp_path / "engines"
    art = build_engine(src, precision="fp32", out_dir=own)
    art.plan.write_bytes(b"not a plan")
    again = build_engine(src, precision="fp32", out_dir=own)
    assert not again.cached and again.key == art.key and again.plan.stat().st_size > 1000


# --- CUDA-graph replay on the engine's stream (fastvit_ma36, batch 8) ----------------------


@pytest.fixture(scope="module")
def ma36_plan(tmp_path_factory):
    """fastvit_ma36 FP32 engine (profile 1..8..8). Latency and graph-vs-plain equality are properties of the
    engine and its runtime, not of the weights, so seed weights serve here."""
    from simplehand_deploy.checkpoint import load_checkpoint
    from simplehand_deploy.export import export_onnx
    from simplehand_deploy.trt.build import build_engine

    root = tmp_path_factory.mktemp("ma36")
    model, info = load_checkpoint(None, "fastvit_ma36")
    onnx = export_onnx(model, root / "simplehand-fastvit_ma36-seed0-fp32.onnx", info=info, parity=False,
                       progress=False).path
    return build_engine(onnx, precision="fp32", profile=(1, 8, 8), out_dir=root / "engines").plan


def test_graph_latency_is_not_a_microsecond_reading(ma36_plan):
    """Graph replay on the wrong stream timed an empty stream (~microseconds). Graph time must be at least
    half the plain-enqueue time: graphs save launch overhead, not half of fastvit_ma36's compute."""
    from simplehand_deploy.runners.tensorrt import TrtRunner
    from simplehand_deploy.timing import measure

    p50 = {}
    for graphs in (True, False):
        with TrtRunner(ma36_plan, cuda_graphs=graphs) as runner:
            out = measure(runner, 8, duration=1.0, iterations=50, warmup=0.3)
            assert runner.describe()["cuda_graphs"] is graphs
        p50[graphs] = out["latency_p50_ms"]
    assert p50[True] >= 0.5 * p50[False], p50


@pytest.mark.parametrize("buffers", ["torch", "cuda-python", "pycuda"])
def test_graph_outputs_equal_plain_outputs_with_cuda_tensor_input(ma36_plan, buffers):
    """A CUDA-tensor input still being produced on torch's stream must be waited for by the graph's stream; for
    every buffer backend installed here (pycuda has no graphs: plain enqueue on both sides)."""
    import torch

    from simplehand_deploy.trt.runtime import TrtEngine, available_buffers

    if not available_buffers()[buffers]:
        pytest.skip(f"buffer backend {buffers} is not installed here")

    def slow_input(seed: int) -> torch.Tensor:
        g = torch.Generator(device="cuda").manual_seed(seed)
        x = torch.rand((8, 3, 224, 224), generator=g, device="cuda")
        big = torch.rand((4096, 4096), device="cuda")
        for _ in range(20):  # keep the producing stream busy so a missing wait reads stale data
            big = big @ big / 4096
        return x * 255 + big[0, 0] * 0

    graph = TrtEngine(ma36_plan, cuda_graphs=True, buffers=buffers)
    plain = TrtEngine(ma36_plan, cuda_graphs=False, buffers=buffers)
    try:
        graph.infer(slow_input(0))
        assert (8 in graph._graphs) is (buffers != "pycuda")  # the graph was captured
        x = slow_input(1)
        got = graph.infer(x)
        want = plain.infer(x.clone())
        other = plain.infer(slow_input(0))
        gap = max(float(np.abs(want[k] - other[k]).max()) for k in ("uv", "vertices"))
        assert gap > 1e-5, "precondition: two different inputs must give different outputs"
        for k in ("uv", "vertices"):
            np.testing.assert_allclose(got[k], want[k], rtol=0, atol=gap / 100)
    finally:
        graph.close()
        plain.close()
