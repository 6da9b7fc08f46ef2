"""Harness overhead: ONNX Runtime median latency through `bench.latency.measure` vs a bare `session.run` loop.

    python benchmarks/harness_overhead.py [--config tiny|fastvit_ma36] [--batch 1] [--iterations 200]

Both loops use the same session and the same input; the ratio should be within 1.05 (issue 7).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=200)
    args = ap.parse_args()
    from simplehand_deploy.bench.latency import measure, stats
    from simplehand_deploy.export import export_onnx
    from simplehand_deploy.model import create_model
    from simplehand_deploy.runners import get_runner

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(create_model(args.config), Path(tmp) / "m.onnx", progress=False)
        runner = get_runner("onnxruntime", onnx=path)
        runner.open()
        ratios = []
        for _ in range(3):  # interleave rounds: a shared machine drifts
            res = measure(runner, args.batch, duration=0.0, iterations=args.iterations, warmup=0.5)
            feed = runner._staged[args.batch]
            times = []
            for _ in range(args.iterations):
                t0 = time.perf_counter()
                runner.session.run(None, feed)
                times.append((time.perf_counter() - t0) * 1000)
            bare = stats(np.array(times))["latency_p50_ms"]
            ratios.append(res["latency_p50_ms"] / bare)
            print(f"harness p50 {res['latency_p50_ms']:.3f} ms | bare session.run p50 {bare:.3f} ms | "
                  f"ratio {ratios[-1]:.3f}")
        runner.close()
    print(f"median ratio over rounds: {np.median(ratios):.3f} (target <= 1.05; {args.config}, batch {args.batch})")


if __name__ == "__main__":
    main()
