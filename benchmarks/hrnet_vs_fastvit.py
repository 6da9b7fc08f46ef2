"""HRNet-W48 (the paper's accuracy model) beside FastViT-MA36 (its real-time model): CPU latency and drift.

    python benchmarks/hrnet_vs_fastvit.py [--configs hrnet_w48,fastvit_ma36] [--batches 1] [--iterations 5]
                                          [--threads 1] [--heldout-num 16] [--engines engines] [--out DIR]

For each config it runs `make engine`'s job (`simplehand-deploy engine --config C`: seed weights, 64 synthetic
calibration crops; artifacts already in `--engines` that are still valid are reused, as `make engine` reuses
them), then the equivalent of

    simplehand-bench run --config C --runners torch,onnxruntime --onnx FP32 --onnx FP16 --onnx INT8-trt10
        --batch-sizes B --iterations N --duration 0 --threads T --calib HELD_OUT

(latency of fused PyTorch eager and ONNX Runtime per graph; drift of each graph against PyTorch FP32 eager on
held-out synthetic crops, seed 777, none of them calibration crops), and writes both configs' rows into one
folder `<out>/<run-id>-hrnet-vs-fastvit/`: results.{parquet,csv,json,md}, env.json (with the sha256 of every
graph timed), hrnet_vs_fastvit.md (the benchmarks/README table) and preset.json (the engine job's steps).

Seed weights: no trained HRNet-W48 or FastViT-MA36 checkpoint exists here, so the drift figures say how far
FP16/INT8 deployment moves *untrained* weights' outputs; they are not accuracy and not a prediction of a
trained model's drift. Latency does not depend on the weights. On a CPU, FP16 is emulated with casts and INT8
is Q/DQ fake quantisation: the latencies compare the two models' FP32 cost, not what TensorRT buys on a GPU.
Run it alone on a shared host (`flock`), with `--threads 1`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GRAPHS = (("fp32", None), ("fp16", None), ("int8", "trt10"))  # what a TensorRT 10 deployment builds from
HELD_OUT_SEED = 777
RUNNER_LABEL = {("torch_eager", "fp32"): "PyTorch eager FP32", ("onnxruntime", "fp32"): "ORT FP32",
                ("onnxruntime", "fp16"): "ORT FP16", ("onnxruntime", "int8"): "ORT INT8 (Q/DQ, trt10)"}


def comparison_md(rows: list[dict[str, Any]], configs: list[str], batches: list[int]) -> str:
    """One line per (runner, precision): each config's p50 latency per batch and mean/p99 vertex drift side by side.

    The ratio column is the first config's p50 over the second's at batch 1 (how many times slower)."""
    from simplehand_deploy.bench.results import markdown_rows

    ok = [r for r in rows if r["status"] == "ok"]

    def cell(config: str, key: tuple[str, str], measurement: str, batch: int | None = None) -> dict[str, Any] | None:
        return next((r for r in ok if r["config"] == config and (r["runner"], r["precision"]) == key
                     and r["measurement"] == measurement and (batch is None or r["batch_size"] == batch)), None)

    def ms(r: dict[str, Any] | None) -> str:
        return "–" if r is None else f"{r['latency_p50_ms']:.0f}"

    def drift(r: dict[str, Any] | None) -> str:
        return "–" if r is None else f"{r['vertex_drift_mean_mm']:.3g} / {r['vertex_drift_p99_mm']:.3g}"

    header = ["runner"]
    for c in configs:
        header += [f"{c} p50 ms (batch {b})" for b in batches]
    header += [f"{configs[0]} / {configs[1]} (batch {batches[0]})"] if len(configs) == 2 else []
    header += [f"{c} drift mean / p99 mm" for c in configs]
    body = []
    for key, label in RUNNER_LABEL.items():
        line: list[object] = [label]
        for c in configs:
            line += [ms(cell(c, key, "latency", b)) for b in batches]
        if len(configs) == 2:
            a, b = cell(configs[0], key, "latency", batches[0]), cell(configs[1], key, "latency", batches[0])
            line.append("–" if a is None or b is None else f"{a['latency_p50_ms'] / b['latency_p50_ms']:.2f}x")
        line += [drift(cell(c, key, "accuracy")) for c in configs]
        body.append(line)
    return markdown_rows(header, body)


def _artifacts(job: Any) -> list[Path]:
    """The FP32, FP16 and INT8-trt10 graphs the engine job reports (built now or reused)."""
    paths = {s.artifact: Path(s.path) for s in job if s.path and s.status in ("built", "reused")}
    wanted = [f"ONNX {p}" + (f" {t}" if t else "") for p, t in GRAPHS]
    missing = [w for w in wanted if w not in paths]
    if missing:
        raise SystemExit(f"error: the engine job made no {', '.join(missing)}: {[(s.artifact, s.status) for s in job]}")
    return [paths[w] for w in wanted]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="hrnet_w48,fastvit_ma36", help="comma list (two for the ratio column)")
    ap.add_argument("--batches", default="1", help="comma list of batch sizes to time")
    ap.add_argument("--iterations", type=int, default=5, help="timed runs per row (after a 0.2 s warm-up)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads for torch and ORT alike")
    ap.add_argument("--heldout-num", type=int, default=16, help="held-out synthetic crops the drift is measured on")
    ap.add_argument("--engines", type=Path, default=ROOT / "engines", help="make engine's folder (reused)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "hrnet-vs-fastvit", help="held-out crops")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    import polars as pl

    from simplehand_deploy.bench.results import write_results
    from simplehand_deploy.bench.run import BenchConfig, run_bench
    from simplehand_deploy.calibration import ensure_calibration_set
    from simplehand_deploy.env import fingerprint
    from simplehand_deploy.fileio import sha256_file
    from simplehand_deploy.pipeline import run_engine_job

    t0 = time.time()
    load = os.getloadavg()[0]  # other work on the host at the start (the latencies are only as quiet as it)
    env = fingerprint()
    held_out = ensure_calibration_set(args.work / f"heldout-{args.heldout_num}-seed{HELD_OUT_SEED}", synthetic=True,
                                      num=args.heldout_num, seed=HELD_OUT_SEED, progress=False)
    frames, steps, graphs, seconds = [], {}, {}, {}
    for config in configs:
        t = time.time()
        print(f"[{config}] engine job (make engine CONFIG={config}) in {args.engines}", file=sys.stderr, flush=True)
        job = run_engine_job(config=config, out=args.engines, calib_dir=ROOT / "calibration", quiet=True)
        steps[config] = [{"artifact": s.artifact, "status": s.status, "path": Path(s.path).name if s.path else ""}
                         for s in job]
        onnx = _artifacts(job)
        graphs |= {p.name: sha256_file(p) for p in onnx}
        seconds[f"{config}_engine"] = round(time.time() - t)
        t = time.time()
        print(f"[{config}] latency (batch {args.batches}, {args.iterations} iterations, {args.threads} thread) and "
              f"drift on {args.heldout_num} held-out crops", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            run = run_bench(BenchConfig(kinds=("latency", "accuracy"), runners="torch,onnxruntime",
                                        batch_sizes=args.batches, duration=0.0, iterations=args.iterations,
                                        config=config, onnx=tuple(onnx), calib=held_out, out=Path(tmp),
                                        threads=args.threads, quiet=True))
        frames.append(run.df)
        seconds[f"{config}_bench"] = round(time.time() - t)
    df = pl.concat(frames, how="vertical_relaxed")
    folder = args.out / f"{env['run_id']}-hrnet-vs-fastvit"
    write_results(df, folder, env={**env, "graphs_sha256": graphs})
    rows = df.drop("latency_samples_ms").to_dicts()
    failed = [(r["config"], r["runner"], r["precision"], r["measurement"], r["status"]) for r in rows
              if r["status"] != "ok"]
    md = (f"{', '.join(configs)}: seed weights (untrained: drift = deployment error on untrained weights only), "
          f"{env['cpu_model']} ({env['cpu_count']} CPUs, 1-min load {load:.1f} at start), {args.threads} thread(s), "
          f"p50 of {args.iterations} runs; "
          f"drift vs PyTorch FP32 eager on {args.heldout_num} held-out synthetic crops (seed {HELD_OUT_SEED})\n\n"
          + comparison_md(rows, configs, batches))
    (folder / "hrnet_vs_fastvit.md").write_text(md)
    command = " ".join(["python benchmarks/hrnet_vs_fastvit.py", *(argv if argv is not None else sys.argv[1:])])
    (folder / "preset.json").write_text(json.dumps(
        {"command": command, "args": {k: str(v) for k, v in vars(args).items()}, "engine_steps": steps,
         "load_average_1min_at_start": round(load, 2),
         "failed_rows": failed, "seconds": {**seconds, "total": round(time.time() - t0)}}, indent=2) + "\n")
    print(md)
    for f in failed:
        print(f"  not ok: {f}", file=sys.stderr)
    print(f"results: {folder}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
