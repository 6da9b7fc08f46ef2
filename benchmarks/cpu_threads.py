"""Which CPU thread setting gives the steadiest latency on this machine? Run-to-run and within-job spread.

    python benchmarks/cpu_threads.py [--runs 4] [--rounds 4] [--duration 0.5] [--batch-sizes 1,4]
                                     [--settings ort-1,ort-default,...] [--out benchmarks/results/<run-id>-cpu-threads]

Six settings, the tiny model: ONNX Runtime (`simplehand-bench compare`'s runner, on the exported FP32 graph)
and torch eager (fused), each with 1 intra-op thread, with the library's default (one per physical core),
and with the default but idle pool threads sleeping instead of spin-waiting (ONNX Runtime:
`session.intra_op.allow_spinning=0`; torch: `OMP_WAIT_POLICY=PASSIVE`, OpenMP's equivalent).

Each run is a fresh process (runs of all settings interleaved, in a rotated order, so a slow spell of the
machine does not land on one setting) that opens the same model twice and times the two copies as
`simplehand-bench compare` does: ABBA blocks of `--duration` s samples. From each run:

- run-to-run spread: side A's p50 (median of its per-block p50s), compared across runs (max/min, CoV);
- within-job spread: the CoV of side A's per-sample p50s, the CoV of the per-block ratios B/A of two
  identical copies, and the width of the 95% bootstrap interval `compare` would report (what a real
  slowdown has to clear).

The folder gets cpu_threads.{json,md} and env.json. Exit 0 (a measurement, not a gate).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {  # name: (runner, threads or None for the default, spinning)
    "ort-1": ("onnxruntime", 1, True),
    "ort-default": ("onnxruntime", None, True),
    "ort-default-nospin": ("onnxruntime", None, False),
    "torch-1": ("torch", 1, True),
    "torch-default": ("torch", None, True),
    "torch-default-nospin": ("torch", None, False),
}


def worker(setting: str, onnx: str, batches: list[int], rounds: int, duration: float) -> dict:
    """One run: open the model twice, time the copies in ABBA blocks at each batch size (this process only)."""
    import numpy as np

    from simplehand_deploy.bench.compare import measure_pair, timed_rows
    from simplehand_deploy.runners import get_runner

    runner, threads, spinning = SETTINGS[setting]
    if runner == "onnxruntime":
        pair = [get_runner("onnxruntime", onnx=onnx, threads=threads, spinning=spinning) for _ in range(2)]
    else:
        from simplehand_deploy.model import create_model

        model = create_model("tiny", seed=0)
        pair = [get_runner("torch", model=model, threads=threads, device="cpu") for _ in range(2)]
    for r in pair:
        r.open()
    out: dict = {"setting": setting, "cpu_threads": pair[0].threads(), "batches": {}}
    try:
        for b in batches:
            a, bb = measure_pair(pair[0], pair[1], b, rounds=rounds, duration=duration, warmup=0.5)
            lat = timed_rows(a, bb, b, 0.10)[0]
            out["batches"][str(b)] = {
                "p50_ms": float(np.median(lat.baseline_blocks)), "sample_cov": lat.baseline_cov,
                "ratio_cov": lat.ratio_cov, "ratio": lat.ratio, "ci_low": lat.ratio_ci_low,
                "ci_high": lat.ratio_ci_high, "verdict": lat.verdict, "cpu_other_pct": lat.cpu_other_pct}
    finally:
        for r in pair:
            r.close()
    return out


def _spawn(setting: str, onnx: Path, args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    if setting == "torch-default-nospin":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        env.pop("OMP_WAIT_POLICY", None)
    cmd = [sys.executable, __file__, "--worker", setting, "--onnx", str(onnx), "--batch-sizes", args.batch_sizes,
           "--rounds", str(args.rounds), "--duration", str(args.duration)]
    load = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"cpu_threads: worker {setting} failed: {proc.stderr.strip()[-400:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "load_1min": round(load, 2)}


def summarise(runs: list[dict], batches: list[str]) -> list[dict]:
    """Per setting and batch size: run-to-run spread of p50 and the medians of the within-job spreads."""
    import numpy as np

    rows = []
    for setting in dict.fromkeys(r["setting"] for r in runs):
        mine = [r for r in runs if r["setting"] == setting]
        for b in batches:
            p50 = np.array([r["batches"][b]["p50_ms"] for r in mine])
            width = [(r["batches"][b]["ci_high"] - r["batches"][b]["ci_low"]) / 2 for r in mine]
            rows.append({
                "setting": setting, "cpu_threads": mine[0]["cpu_threads"], "batch_size": int(b), "runs": len(mine),
                "p50_min_ms": float(p50.min()), "p50_max_ms": float(p50.max()),
                "run_max_over_min": float(p50.max() / p50.min()), "run_cov": float(p50.std() / p50.mean()),
                "sample_cov_median": float(np.median([r["batches"][b]["sample_cov"] for r in mine])),
                "ratio_cov_median": float(np.median([r["batches"][b]["ratio_cov"] for r in mine])),
                "ci_halfwidth_median": float(np.median(width)),
                "identical_failed": sum(r["batches"][b]["verdict"] == "regression" for r in mine),
                "cpu_other_pct_median": float(np.median([r["batches"][b]["cpu_other_pct"] or 0 for r in mine]))})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=4, help="fresh processes per setting")
    ap.add_argument("--rounds", type=int, default=4, help="ABBA blocks per batch size in each run")
    ap.add_argument("--duration", type=float, default=0.5, help="seconds per sample")
    ap.add_argument("--batch-sizes", default="1,4")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {', '.join(SETTINGS)}")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--onnx", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    batches = [int(b) for b in args.batch_sizes.split(",")]
    if args.worker:
        print(json.dumps(worker(args.worker, args.onnx, batches, args.rounds, args.duration)))
        return 0
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        sys.exit(f"cpu_threads: unknown setting(s) {unknown}; choose from {', '.join(SETTINGS)}")
    from simplehand_deploy.bench.results import markdown_rows
    from simplehand_deploy.env import fingerprint, write_env_json

    env = fingerprint()
    out = (args.out or Path("benchmarks") / "results" / f"{env['run_id']}-cpu-threads").resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(tmp) / "tiny-fp32.onnx"
        proc = subprocess.run([sys.executable, "-m", "simplehand_deploy", "export", "--config", "tiny", "--out",
                               str(onnx), "--quiet"], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"cpu_threads: export failed: {proc.stderr.strip()[-400:]}")
        for i in range(args.runs):
            order = settings[i % len(settings):] + settings[: i % len(settings)]
            for setting in order:
                r = _spawn(setting, onnx, args)
                runs.append({"run": i, **r})
                print(f"run {i} {setting:21s} threads {r['cpu_threads']} load {r['load_1min']:.2f}  " + "  ".join(
                    f"b{b}: p50 {v['p50_ms']:.2f} ms, sample CoV {v['sample_cov']:.1%}, ratio CoV "
                    f"{v['ratio_cov']:.1%}, interval {v['ci_low']:.3f}..{v['ci_high']:.3f}"
                    for b, v in r["batches"].items()), flush=True)
    rows = summarise(runs, [str(b) for b in batches])
    command = " ".join(["python benchmarks/cpu_threads.py", *sys.argv[1:]])
    record = {"command": command, "runs_per_setting": args.runs, "rounds": args.rounds, "duration_s": args.duration,
              "batch_sizes": batches, "seconds": round(time.time() - t0), "summary": rows, "runs": runs}
    (out / "cpu_threads.json").write_text(json.dumps(record, indent=1) + "\n")
    write_env_json(out, env)
    table = markdown_rows(
        ("setting", "threads", "batch", "p50 min..max ms (runs)", "run-to-run max/min", "run-to-run CoV",
         "within-job sample CoV", "identical-pair ratio CoV", "95% interval half-width", "identical failed",
         "other CPU %"),
        ((r["setting"], r["cpu_threads"], r["batch_size"], f"{r['p50_min_ms']:.2f}..{r['p50_max_ms']:.2f} "
          f"({r['runs']})", f"{r['run_max_over_min']:.2f}", f"{r['run_cov']:.1%}", f"{r['sample_cov_median']:.1%}",
          f"{r['ratio_cov_median']:.1%}", f"{r['ci_halfwidth_median']:.1%}", r["identical_failed"],
          f"{r['cpu_other_pct_median']:.0f}") for r in rows))
    (out / "cpu_threads.md").write_text(
        f"# CPU threads ({env['device_name']}, {env['cpu_count']} CPUs)\n\n`{command}`: each run a fresh process "
        f"timing two copies of the tiny model in {args.rounds} ABBA blocks of {args.duration:g} s samples per batch "
        "size (as `simplehand-bench compare` does); settings interleaved. Within-job columns are medians over "
        "runs.\n\n" + table)
    print(table)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
