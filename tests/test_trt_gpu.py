"""TensorRT on a real GPU: build -> run -> compare with ONNX Runtime. Skips without TensorRT + CUDA."""

from __future__ import annotations

import numpy as np
import pytest

from simplehand_deploy.errors import UsageError

pytestmark = [pytest.mark.trt, pytest.mark.gpu]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from simplehand_deploy.pipeline import run_engine_job

    root = tmp_path_factory.mktemp("gpu")
    run_engine_job(config="tiny", calib_num=16, out=root / "engines", calib_dir=root / "calibration", quiet=True,
                   profile=(1, 8, 64))
    return root


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_matches_onnxruntime(artifacts, precision):
    from simplehand_deploy.ort import make_session, run
    from simplehand_deploy.trt.build import build_engine, require_tensorrt, trt_major
    from simplehand_deploy.trt.runtime import TrtEngine

    trt = require_tensorrt()
    eng = artifacts / "engines"
    src = eng / f"simplehand-tiny-seed0-{precision}.onnx"
    if precision == "fp16" and trt_major(trt) < 10:
        src = eng / "simplehand-tiny-seed0-fp32.onnx"
    art = build_engine(src, precision=precision, out_dir=eng)
    assert art.cached  # the engine job built this key already: a content-key hit, no rebuild
    runner = TrtEngine(art.plan)
    x = np.load(artifacts / "calibration" / "synthetic-16" / "images.npy")
    ref = run(make_session(eng / f"simplehand-tiny-seed0-{precision}.onnx"), x)
    for batch in (1, 8, 64):
        xb = np.resize(x, (batch, 3, 224, 224)).astype(np.float32)
        out = runner.infer(xb)
        assert out["vertices"].shape == (batch, 778, 3)
    out = runner.infer(x)
    drift_mm = np.linalg.norm(out["vertices"] - ref["vertices"], axis=-1).mean() * 1000
    assert drift_mm < {"fp32": 0.01, "fp16": 0.1, "int8": 1.0}[precision]
    with pytest.raises(UsageError, match="outside the engine profile"):
        runner.prepare(65)
    assert runner.layer_times(1, runs=2)


def test_failed_deserialisation_is_a_cache_miss(artifacts):
    from simplehand_deploy.trt.build import build_engine

    src = artifacts / "engines" / "simplehand-tiny-seed0-fp32.onnx"
    art = build_engine(src, precision="fp32", out_dir=artifacts / "engines")
    art.plan.write_bytes(b"not a plan")
    again = build_engine(src, precision="fp32", out_dir=artifacts / "engines")
    assert not again.cached and again.key == art.key and again.plan.stat().st_size > 1000
