"""CPU latency of fastvit_ma36: PyTorch eager (fused) vs ONNX Runtime FP32 vs ONNX Runtime INT8 (fake-quant).

    python benchmarks/cpu_latency.py [--config fastvit_ma36] [--batches 1,8] [--iterations 5] [--threads N]
                                     [--work DIR]

Printed as ratios to eager, measured in the same round. These are CPU *simulation* figures: on CPUs
without VNNI, Q/DQ INT8 runs slower than FP32 (notes/cpu-precision.md); they say nothing about
what INT8 buys under TensorRT on a GPU. On a shared host pass `--threads 1`: with more threads than
free cores, PyTorch eager degrades far more than ONNX Runtime (measured here: eager fastvit_ma36 at
batch 1 took 6.5 s with 2 threads under load vs ~0.2 s idle), which turns the ratios into noise.
`--work DIR` keeps the exported graphs so a re-run only times.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _median_ms(fn, iterations: int) -> float:
    fn()
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="fastvit_ma36")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads for torch and ORT alike")
    ap.add_argument("--work", type=Path, default=None, help="keep (and reuse) the ONNX graphs here")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from simplehand_deploy.calibration import build_calibration_set
    from simplehand_deploy.export import export_onnx
    from simplehand_deploy.model import create_model, fuse
    from simplehand_deploy.ort import make_session
    from simplehand_deploy.precision import quantize_int8

    with tempfile.TemporaryDirectory() as tmp:
        t = args.work or Path(tmp)
        fp32, int8 = t / f"{args.config}-fp32.onnx", t / f"{args.config}-int8.onnx"
        if not fp32.is_file():
            export_onnx(create_model(args.config), fp32, progress=False)
        if not int8.is_file():
            calib = build_calibration_set(t / "cal", synthetic=True, num=16, progress=False)
            quantize_int8(fp32, calib, int8, progress=False)
        model = fuse(create_model(args.config))
        s32, s8 = make_session(fp32, threads=args.threads), make_session(int8, threads=args.threads)
        print(f"{args.config} on CPU ({torch.get_num_threads()} threads), median of {args.iterations} "
              "(CPU simulation figures, not TensorRT):")
        for b in (int(v) for v in args.batches.split(",")):
            x = (np.random.default_rng(b).random((b, 3, 224, 224)) * 255).astype(np.float32)
            xt = torch.from_numpy(x)
            with torch.no_grad():
                eager = _median_ms(lambda xt=xt: model(xt), args.iterations)
            ort32 = _median_ms(lambda x=x: s32.run(None, {"image": x}), args.iterations)
            ort8 = _median_ms(lambda x=x: s8.run(None, {"image": x}), args.iterations)
            print(f"  batch {b}: eager {eager:.1f} ms | ORT FP32 {ort32:.1f} ms ({eager / ort32:.2f}x faster than "
                  f"eager) | ORT INT8 fake-quant {ort8:.1f} ms ({eager / ort8:.2f}x vs eager, {ort8 / ort32:.2f}x "
                  "ORT FP32 time; a simulation, not a speed-up)")

if __name__ == "__main__":
    main()
