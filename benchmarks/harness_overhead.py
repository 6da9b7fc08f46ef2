"""Harness overhead: ONNX Runtime p50 through `timing.measure` vs a bare `session.run` loop.

    python benchmarks/harness_overhead.py [--config tiny|fastvit_ma36] [--batch 1] [--iterations 200] [--threads N]
                                          [--out DIR]

Both loops use the same open runner, session and input, interleaved over 3 rounds (a shared machine
drifts). The bare loop is deliberately not the harness: it is the reference the harness is checked
against. Target: median ratio <= 1.05. Writes harness_overhead.json + env.json into a results
folder (default benchmarks/results/<run-id>-harness-overhead/); exit 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET = 1.05


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from simplehand_deploy.env import fingerprint, write_env_json
    from simplehand_deploy.export import export_onnx
    from simplehand_deploy.model import create_model
    from simplehand_deploy.runners import get_runner
    from simplehand_deploy.timing import measure, stats

    env = fingerprint()
    out = args.out or Path("benchmarks") / "results" / f"{env['run_id']}-harness-overhead"
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(create_model(args.config), Path(tmp) / "m.onnx", progress=False).path
        with get_runner("onnxruntime", onnx=path, threads=args.threads) as runner:
            for _ in range(3):
                res = measure(runner, args.batch, duration=0.0, iterations=args.iterations, warmup=0.5)
                feed = runner._staged[args.batch]
                times = []
                for _ in range(args.iterations):
                    t0 = time.perf_counter()
                    runner.session.run(None, feed)
                    times.append((time.perf_counter() - t0) * 1000)
                bare = stats(np.array(times))["latency_p50_ms"]
                rounds.append({"harness_p50_ms": res["latency_p50_ms"], "bare_p50_ms": bare,
                               "ratio": res["latency_p50_ms"] / bare, "cpu_threads": res.get("cpu_threads")})
                print(f"harness p50 {res['latency_p50_ms']:.3f} ms | bare session.run p50 {bare:.3f} ms | "
                      f"ratio {rounds[-1]['ratio']:.3f}", flush=True)
    ratio = float(np.median([r["ratio"] for r in rounds]))
    met = ratio <= TARGET
    print(f"median ratio over rounds: {ratio:.3f} (target <= {TARGET}; {args.config}, batch {args.batch}) -> "
          f"{'ok' if met else 'MISSED'}")
    out.mkdir(parents=True, exist_ok=True)
    record = {"command": " ".join(["python benchmarks/harness_overhead.py", *sys.argv[1:]]), "config": args.config,
              "batch": args.batch, "iterations": args.iterations, "rounds": rounds, "median_ratio": ratio,
              "target": TARGET, "met": met}
    (out / "harness_overhead.json").write_text(json.dumps(record, indent=1) + "\n")
    write_env_json(out, env)
    print(f"results: {out}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
