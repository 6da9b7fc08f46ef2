"""Does the regression gate have teeth on this machine? Quiet on identical runs, loud under real load.

    python benchmarks/gate_check.py [--pairs 10] [--busy-pairs 2] [--duration 4] [--batch-sizes 1,4]
                                    [--out benchmarks/results/<run-id>-gate-check]

A preset of `simplehand-bench`, run as a new user would, each command in its own process:

    simplehand-bench latency --config tiny --runners onnxruntime --batch-sizes 1,4 --duration 4 --out A
    simplehand-bench latency ... --out B            # the same run again (identical pair)
    simplehand-bench regress --baseline A --current B          # defaults: --latency-tol 10%

Expectations: at least 9 of `--pairs` identical pairs pass (exit 0); every pair whose second
run is made while two busy-loop processes compete for the cores fails (exit 1). The verdicts are
printed; the folder gets gate_check.{json,md}, env.json and every run's results.parquet/env.json (the
samples the gate judged). Exit status 1 when either expectation is missed. The 1-minute load average
before each run is recorded: other work on the machine is part of what the gate has to live with (a
run slowed by someone else's load *is* slower: no statistic on one pair can tell that apart from a
regression). `--max-load L` waits (up to `--max-wait` seconds) for the load average to drop to L
before each pair, for a quiet-machine figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = [sys.executable, "-c", "import sys; from simplehand_deploy.cli import bench_app; bench_app(sys.argv[1:])"]
BUSY = [sys.executable, "-c", "while True: pass"]


def _bench(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BENCH, *args], cwd=cwd, capture_output=True, text=True)


def _latency(work: Path, out: Path, args: argparse.Namespace) -> dict:
    load = os.getloadavg()[0]
    t0 = time.time()
    proc = _bench(["latency", "--config", args.config, "--runners", "onnxruntime", "--batch-sizes", args.batch_sizes,
                   "--duration", str(args.duration), "--out", str(out), "--quiet"], work)
    if proc.returncode != 0:
        sys.exit(f"gate_check: simplehand-bench latency failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    import polars as pl

    df = pl.read_parquet(out / "results.parquet").filter(pl.col("status") == "ok").sort("batch_size")
    return {"folder": out.name, "load_1min": round(load, 2), "wall_s": round(time.time() - t0, 1),
            "p50_ms": dict(zip(map(str, df["batch_size"]), df["latency_p50_ms"].round(4).to_list(), strict=True)),
            "cpu_threads": sorted(set(df["cpu_threads"].to_list())),
            # other processes' share of the CPUs while the rows were timed (the most of any row): what the machine
            # itself can see of a crowded run; a hypervisor neighbour stays invisible here
            "cpu_other_pct": max((v for v in df["cpu_other_pct"].to_list() if v is not None), default=None)
            if "cpu_other_pct" in df.columns else None}


def _regress(work: Path, base: Path, cur: Path, name: str = "regress.md") -> dict:
    proc = _bench(["regress", "--baseline", str(base), "--current", str(cur), "--markdown", str(cur / name)], work)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    verdict = next((ln for ln in reversed(lines) if ln.startswith(("PASS", "FAIL", "error:"))), lines[-1] if lines
                   else "")
    return {"exit": proc.returncode, "verdict": verdict.strip()}


def _pooled(work: Path, history: list[Path], cur: Path, window: int) -> dict:
    """`baseline --from` the `window` runs before `cur` (pooled: the gate learns the run-to-run spread), then
    `regress` `cur` against it at the defaults."""
    folder = work / f"pooled-{cur.name}"
    sources = [a for run in history[-window:] for a in ("--from", str(run))]
    proc = _bench(["baseline", *sources, "--out", str(folder)], work)
    if proc.returncode != 0:
        sys.exit(f"gate_check: simplehand-bench baseline failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    (baseline,) = folder.glob("*.json")
    verdict = _regress(work, baseline, cur, name=f"regress-pooled{window}.md")
    return {"current": cur.name, "baseline_runs": [r.name for r in history[-window:]], **verdict}


def _wait_quiet(max_load: float | None, max_wait: float) -> float:
    """Seconds waited for the 1-minute load average to reach max_load (0 when not asked)."""
    if max_load is None:
        return 0.0
    t0 = time.time()
    while os.getloadavg()[0] > max_load and time.time() - t0 < max_wait:
        time.sleep(5)
    return round(time.time() - t0, 1)


def _changes(base: dict, cur: dict) -> dict:
    return {b: round(cur["p50_ms"][b] / base["p50_ms"][b] - 1, 4) for b in base["p50_ms"] if b in cur["p50_ms"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=10, help="identical pairs (expect >= 90%% to pass)")
    ap.add_argument("--busy-pairs", type=int, default=2, help="pairs whose second run competes with 2 busy loops")
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--batch-sizes", default="1,4")
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--busy", type=int, default=2, help="busy-loop processes during the loaded runs")
    ap.add_argument("--max-load", type=float, default=None, help="wait for this 1-min load average before each pair")
    ap.add_argument("--max-wait", type=float, default=300.0, help="longest wait per pair (s)")
    ap.add_argument("--pool-runs", type=int, default=5, help="protocol 2: baselines pooled from this many runs")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from simplehand_deploy.bench.results import markdown_rows
    from simplehand_deploy.env import fingerprint, write_env_json

    env = fingerprint()
    # absolute: every simplehand-bench run works in a temporary folder (its own engines/)
    out = (args.out or Path("benchmarks") / "results" / f"{env['run_id']}-gate-check").resolve()
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    record: dict = {"command": " ".join(["python benchmarks/gate_check.py", *sys.argv[1:]]),
                    "latency_args": f"--config {args.config} --runners onnxruntime --batch-sizes {args.batch_sizes} "
                                    f"--duration {args.duration:g}", "regress_args": "defaults (--latency-tol 10%)",
                    "identical": [], "busy": [], "pool_runs": args.pool_runs, "pooled_identical": [],
                    "pooled_busy": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)  # engines/ (the exported tiny graph) lives here, made by the first run
        for i in range(args.pairs + args.busy_pairs):
            loaded = i >= args.pairs
            base, cur = runs / f"pair{i:02d}-baseline", runs / f"pair{i:02d}-{'busy' if loaded else 'current'}"
            waited = _wait_quiet(args.max_load, args.max_wait)
            b = _latency(work, base, args)
            hogs = [subprocess.Popen(BUSY) for _ in range(args.busy)] if loaded else []
            try:
                time.sleep(0.5 if hogs else 0)
                c = _latency(work, cur, args)
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()
            verdict = _regress(work, base, cur)
            entry = {"pair": i, "waited_s": waited, "baseline": b, "current": c, "p50_change": _changes(b, c),
                     **verdict}
            record["busy" if loaded else "identical"].append(entry)
            kind = f"busy x{args.busy}" if loaded else "identical"
            print(f"pair {i:2d} ({kind:9s}) load {b['load_1min']:.2f}/{c['load_1min']:.2f}  other CPU "
                  f"{b['cpu_other_pct']}/{c['cpu_other_pct']}%  p50 change "
                  f"{', '.join(f'b{k} {v:+.1%}' for k, v in entry['p50_change'].items())}  -> exit {verdict['exit']}: "
                  f"{verdict['verdict']}", flush=True)
        # protocol 2: the baseline pooled from the `--pool-runs` runs before each judged run (identical runs judged
        # in time order; each busy run against the quiet runs before it)
        quiet_runs: list[Path] = []
        for entry in record["identical"] + record["busy"]:
            base_dir, cur_dir = runs / entry["baseline"]["folder"], runs / entry["current"]["folder"]
            loaded = entry in record["busy"]
            for run in ([base_dir] if loaded else [base_dir, cur_dir]):
                if len(quiet_runs) >= args.pool_runs:
                    v = _pooled(work, quiet_runs, run, args.pool_runs)
                    record["pooled_identical"].append(v)
                    print(f"pooled baseline ({args.pool_runs} runs) vs {run.name}: exit {v['exit']}: {v['verdict']}",
                          flush=True)
                quiet_runs.append(run)
            if loaded and len(quiet_runs) >= args.pool_runs:
                v = _pooled(work, quiet_runs, cur_dir, args.pool_runs)
                record["pooled_busy"].append(v)
                print(f"pooled baseline ({args.pool_runs} runs) vs {cur_dir.name} (busy): exit {v['exit']}: "
                      f"{v['verdict']}", flush=True)
    for folder in runs.iterdir():  # keep what the gate judged, not the plots and copies
        for f in folder.iterdir():
            if f.name not in ("results.parquet", "env.json") and not f.name.startswith("regress"):
                f.unlink() if f.is_file() else shutil.rmtree(f)
    passed = sum(e["exit"] == 0 for e in record["identical"])
    caught = sum(e["exit"] == 1 for e in record["busy"])
    need = -(-9 * args.pairs // 10)
    ok_identical, ok_busy = passed >= need, caught == len(record["busy"])
    record.update({"identical_passed": passed, "identical_needed": need, "busy_failed": caught,
                   "busy_total": len(record["busy"]), "expectations_met": ok_identical and ok_busy})
    summary = (f"identical pairs: {passed}/{args.pairs} passed (need {need}) -> {'ok' if ok_identical else 'MISSED'}; "
               f"busy pairs: {caught}/{len(record['busy'])} failed with exit 1 -> {'ok' if ok_busy else 'MISSED'}")
    p_id, p_busy = record["pooled_identical"], record["pooled_busy"]
    p_pass, p_caught = sum(v["exit"] == 0 for v in p_id), sum(v["exit"] == 1 for v in p_busy)
    record.update({"pooled_identical_passed": p_pass, "pooled_identical_total": len(p_id),
                   "pooled_busy_failed": p_caught, "pooled_busy_total": len(p_busy)})
    pooled_summary = (f"pooled baselines ({args.pool_runs} runs, `simplehand-bench baseline --from` x"
                      f"{args.pool_runs}): quiet runs {p_pass}/{len(p_id)} passed; busy runs {p_caught}/{len(p_busy)}"
                      " failed with exit 1")
    (out / "gate_check.json").write_text(json.dumps(record, indent=1) + "\n")
    write_env_json(out, env)
    table = markdown_rows(
        ("pair", "kind", "load 1 min (baseline / current)", "cpu_other_pct (baseline / current)", "p50 change", "exit",
         "verdict"),
        ((e["pair"], "busy" if e in record["busy"] else "identical",
          f"{e['baseline']['load_1min']} / {e['current']['load_1min']}",
          f"{e['baseline'].get('cpu_other_pct')} / {e['current'].get('cpu_other_pct')}",
          ", ".join(f"b{k} {v:+.1%}" for k, v in e["p50_change"].items()), e["exit"], e["verdict"])
         for e in record["identical"] + record["busy"]))
    pooled_table = markdown_rows(("run", "kind", "exit", "verdict"),
                                 ((v["current"], "busy" if v in p_busy else "quiet", v["exit"], v["verdict"])
                                  for v in p_id + p_busy))
    (out / "gate_check.md").write_text(
        f"# Regression gate check ({env['device_name']}, {env['cpu_count']} CPUs)\n\n`{record['command']}`: "
        f"`simplehand-bench latency {record['latency_args']}` twice, then `simplehand-bench regress` at its "
        f"defaults.\n\n{summary}\n\n`cpu_other_pct`: the share of the CPUs other processes on this machine used "
        "while the run was timed (the largest of its rows); load: the 1-minute load average before the run.\n\n"
        + table + "\n## Protocol 2: baselines pooled from several runs\n\nEach run judged against a baseline pooled "
        f"from the {args.pool_runs} quiet runs before it (`simplehand-bench baseline --from R1 ... --from "
        f"R{args.pool_runs}`; `regress` at its defaults then bounds the new run by the run-to-run spread those runs "
        f"showed). {pooled_summary}.\n\n" + pooled_table)
    print(summary)
    print(pooled_summary)
    print(f"results: {out}")
    return 0 if ok_identical and ok_busy else 1


if __name__ == "__main__":
    sys.exit(main())
