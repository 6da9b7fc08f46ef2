"""CPU latency: fused PyTorch eager vs unfused eager vs ONNX Runtime FP32 vs ONNX Runtime INT8 (fake-quant).

    python benchmarks/cpu_latency.py [--config fastvit_ma36] [--batches 1,8] [--iterations 5] [--duration 0]
                                     [--threads N] [--work DIR] [--out DIR]

A preset of `simplehand-bench latency` (the one timing loop): it makes the FP32 and INT8 graphs (kept in
`--work` so a re-run only times), then runs

    simplehand-bench latency --config C --runners torch,torch_unfused,onnxruntime --onnx FP32 --onnx INT8
        --batch-sizes B --iterations N --duration D [--threads T] --out DIR

and prints the ratios from the results folder it wrote (default benchmarks/results/<run-id>-cpu-latency/).
Speed-ups are against *fused* eager (what the graphs run); the unfused row is the re-parameterisation gain.
INT8 on a CPU is a simulation (Q/DQ fake quantisation, docs/precision.md): it says nothing about what
INT8 buys under TensorRT on a GPU. On a shared host pass `--threads 1`: with more threads than free cores,
PyTorch eager degrades far more than ONNX Runtime, which turns the ratios into noise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="fastvit_ma36")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--duration", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads for torch and ORT alike")
    ap.add_argument("--work", type=Path, default=None, help="keep (and reuse) the ONNX graphs here")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/<run-id>-...)")
    args = ap.parse_args()
    import polars as pl

    from simplehand_deploy.calibration import build_calibration_set
    from simplehand_deploy.cli import _run, bench
    from simplehand_deploy.env import fingerprint
    from simplehand_deploy.export import export_onnx
    from simplehand_deploy.model import create_model
    from simplehand_deploy.precision import quantize_int8

    out = args.out or Path("benchmarks") / "results" / f"{fingerprint()['run_id']}-cpu-latency"
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        fp32, int8 = work / f"{args.config}-fp32.onnx", work / f"{args.config}-int8.onnx"
        if not fp32.is_file():
            export_onnx(create_model(args.config), fp32, progress=False)
        if not int8.is_file():
            calib = build_calibration_set(work / "cal", synthetic=True, num=16, progress=False)
            quantize_int8(fp32, calib, int8, progress=False, target="trt8")  # the FP32-scale graph, as before targets
        argv = ["latency", "--config", args.config, "--runners", "torch,torch_unfused,onnxruntime",
                "--onnx", str(fp32), "--onnx", str(int8), "--batch-sizes", args.batches,
                "--iterations", str(args.iterations), "--duration", str(args.duration), "--out", str(out), "--quiet"]
        if args.threads:
            argv += ["--threads", str(args.threads)]
        print("simplehand-bench " + " ".join(argv), flush=True)
        code = _run(bench, argv)
    if code != 0:
        return code
    df = pl.read_parquet(out / "results.parquet").filter(pl.col("status") == "ok")
    threads = sorted(set(df["cpu_threads"].to_list()))
    print(f"{args.config} on {df['device_name'][0]} (CPU threads: {'/'.join(map(str, threads))}), p50 of >= "
          f"{args.iterations} (CPU figures, not TensorRT):")
    for b in sorted(set(df["batch_size"].to_list())):
        rows = {(r["runner"], r["precision"]): r for r in df.filter(pl.col("batch_size") == b).iter_rows(named=True)}
        eager, unfused = rows.get(("torch_eager", "fp32")), rows.get(("torch_unfused", "fp32"))
        o32, o8 = rows.get(("onnxruntime", "fp32")), rows.get(("onnxruntime", "int8"))
        if not (eager and unfused and o32 and o8):
            continue
        e = eager["latency_p50_ms"]
        print(f"  batch {b}: eager fused {e:.1f} ms | eager unfused {unfused['latency_p50_ms']:.1f} ms "
              f"(fusion gain {unfused['latency_p50_ms'] / e:.2f}x) | ORT FP32 {o32['latency_p50_ms']:.1f} ms "
              f"({o32['speedup_vs_eager']:.2f}x fused eager) | ORT INT8 fake-quant {o8['latency_p50_ms']:.1f} ms "
              f"({o8['latency_p50_ms'] / o32['latency_p50_ms']:.2f}x ORT FP32 time; a simulation, not a speed-up)")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
