"""Does the regression gate have teeth on this machine? Quiet on identical runs, loud under real load.

    python benchmarks/gate_check.py [--protocols stored,pooled,compare] [--pairs 10] [--busy-pairs 2]
                                    [--duration 4] [--batch-sizes 1,4] [--compare-pairs 20]
                                    [--compare-busy-pairs 10] [--compare-slow-pairs 10] [--slowdowns 1.5,1.2]
                                    [--out benchmarks/results/<run-id>-gate-check]

Three protocols, each selectable (`--protocols compare` alone is the quick one), each with its own exit
status in gate_check.json (the script exits 1 when any selected one misses its expectations):

- `stored`: a single-run baseline judged by `simplehand-bench regress` (below);
- `pooled`: the same runs, each judged against a baseline pooled from the runs before it;
- `compare`: `simplehand-bench compare` A/B in one job (see `compare_protocol`).

A preset of `simplehand-bench`, run as a new user would, each command in its own process:

    simplehand-bench latency --config tiny --runners onnxruntime --batch-sizes 1,4 --duration 4 --out A
    simplehand-bench latency ... --out B            # the same run again (identical pair)
    simplehand-bench regress --baseline A --current B          # defaults: --latency-tol 10%

Expectations of `stored`: at least 9 of `--pairs` identical pairs pass (exit 0); every pair whose second
run is made while two busy-loop processes compete for the cores fails (exit 1). The verdicts are
printed; the folder gets gate_check.{json,md}, env.json and every run's results.parquet/env.json (the
samples the gate judged). Exit status 1 when either expectation is missed. The 1-minute load average
before each run is recorded: other work on the machine is part of what the gate has to live with (a
run slowed by someone else's load *is* slower: no statistic on one pair can tell that apart from a
regression). `--max-load L` waits (up to `--max-wait` seconds) for the load average to drop to L
before each pair, for a quiet-machine figure. `pooled` expects the same shares.

`compare` runs `simplehand-bench compare --baseline A --current B --batch-sizes 1 --rounds 8 --duration 0.25`
(`--compare-*` options) on the tiny FP32 graph A against: a byte-identical copy (`--compare-pairs`, at
least 95% must pass), the copy with `--busy` busy loops running during the whole compare
(`--compare-busy-pairs`, at least 90% must pass: contention hits both sides), and copies made slower by
side branches the graph must compute (`--slowdowns 1.5,1.2`, `--compare-slow-pairs` each; the true ratio
is measured first, by a compare at its defaults of batch sizes 1,4, whose wall time is reported too):
every pair of the largest slowdown must fail (exit 1), at least 80% of the others and of the largest
slowdown under busy loops. It reports the within-job spread and the smallest slowdown
detected in 8 of 10. Each compare's rows (every block) are kept under compare/.
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


def stored_protocols(args: argparse.Namespace, work: Path, out: Path, protocols: set[str]) -> tuple[dict, str]:
    """Protocols 1 and 2 (stored and pooled baselines): their record, markdown section and exit statuses."""
    from simplehand_deploy.bench.results import markdown_rows

    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    record: dict = {"latency_args": f"--config {args.config} --runners onnxruntime --batch-sizes {args.batch_sizes} "
                                    f"--duration {args.duration:g}", "regress_args": "defaults (--latency-tol 10%)",
                    "identical": [], "busy": [], "pool_runs": args.pool_runs, "pooled_identical": [],
                    "pooled_busy": []}
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
    for entry in record["identical"] + record["busy"] if "pooled" in protocols else ():
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
    p_need = -(-9 * len(p_id) // 10)
    record.update({"pooled_identical_passed": p_pass, "pooled_identical_total": len(p_id),
                   "pooled_busy_failed": p_caught, "pooled_busy_total": len(p_busy)})
    pooled_summary = (f"pooled baselines ({args.pool_runs} runs, `simplehand-bench baseline --from` x"
                      f"{args.pool_runs}): quiet runs {p_pass}/{len(p_id)} passed; busy runs {p_caught}/{len(p_busy)}"
                      " failed with exit 1")
    record["exit"] = {}
    if "stored" in protocols:
        record["exit"]["stored"] = 0 if ok_identical and ok_busy else 1
        print(summary)
    if "pooled" in protocols:
        record["exit"]["pooled"] = 0 if p_pass >= p_need and p_caught == len(p_busy) else 1
        print(pooled_summary)
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
    md = ""
    if "stored" in protocols:
        md += (f"## Protocol 1: a stored single-run baseline\n\n`simplehand-bench latency {record['latency_args']}` "
               f"twice, then `simplehand-bench regress` at its defaults.\n\n{summary}\n\n`cpu_other_pct`: the share "
               "of the CPUs other processes on this machine used while the run was timed (the largest of its rows); "
               "load: the 1-minute load average before the run.\n\n" + table + "\n")
    if "pooled" in protocols:
        md += ("## Protocol 2: baselines pooled from several runs\n\nEach run judged against a baseline pooled "
               f"from the {args.pool_runs} quiet runs before it (`simplehand-bench baseline --from R1 ... --from "
               f"R{args.pool_runs}`; `regress` at its defaults then bounds the new run by the run-to-run spread those "
               f"runs showed). {pooled_summary}.\n\n" + pooled_table + "\n")
    return record, md


def _compare(work: Path, a: Path, b: Path, out: Path, args: argparse.Namespace, *, busy: int = 0,
             rounds: int | None = None, duration: float | None = None, batch_sizes: str | None = None) -> dict:
    """One `simplehand-bench compare` in its own process (with `busy` busy loops running all along)."""
    cmd = ["compare", "--baseline", str(a), "--current", str(b), "--batch-sizes",
           batch_sizes or args.compare_batch_sizes,
           "--rounds", str(rounds or args.compare_rounds), "--duration", str(duration or args.compare_duration),
           "--out", str(out), "--json", "--quiet"]
    if args.compare_threads:
        cmd += ["--threads", str(args.compare_threads)]
    if args.compare_no_spin:
        cmd += ["--no-spin"]
    load = os.getloadavg()[0]
    hogs = [subprocess.Popen(BUSY) for _ in range(busy)]
    t0 = time.time()
    try:
        time.sleep(0.5 if hogs else 0)
        proc = _bench(cmd, work)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    if proc.returncode not in (0, 1):
        sys.exit(f"gate_check: simplehand-bench compare failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    rows = json.loads(proc.stdout)
    lat = {str(r["batch_size"]): r for r in rows if r["metric"] == "latency_p50_ms"}
    for f in out.iterdir():  # keep the rows (every block) and the environment
        if f.name not in ("compare.json", "env.json"):
            f.unlink()
    return {"folder": out.name, "exit": proc.returncode, "load_1min": round(load, 2),
            "wall_s": round(time.time() - t0, 1),
            "ratio": {b: round(r["ratio"], 4) for b, r in lat.items()},
            "ci": {b: [round(r["ratio_ci_low"], 4), round(r["ratio_ci_high"], 4)] for b, r in lat.items()},
            "ratio_cov": {b: r["ratio_cov"] for b, r in lat.items()},
            "sample_cov": {b: r["baseline_cov"] for b, r in lat.items()},
            "cpu_other_pct": max((r["cpu_other_pct"] or 0 for r in rows if r["ratio"] is not None), default=None),
            "failed_rows": [f"b{r['batch_size']}/{r['metric']}" for r in rows if r["verdict"] == "regression"]}


def compare_protocol(args: argparse.Namespace, work: Path, out: Path) -> tuple[dict, str]:
    """Protocol 3: `simplehand-bench compare` on identical pairs, under busy loops, and on real slowdowns.

    A is the tiny FP32 graph; identical pairs compare it with a byte-identical copy at another path.
    Slowdowns are copies with side branches the graph must compute (`testing.slowed_copy`): the number
    of branches for each target ratio comes from a probe, and each slowed copy's true ratio is measured
    first, by one longer compare. Kinds are interleaved, so a slow spell of the machine lands on all.
    """
    import numpy as np

    from simplehand_deploy.bench.results import markdown_rows
    from simplehand_deploy.testing import slowed_copy

    folder = out / "compare"
    folder.mkdir(parents=True, exist_ok=True)
    a = work / "engines" / "gate-a.onnx"
    proc = subprocess.run([sys.executable, "-m", "simplehand_deploy", "export", "--config", args.config, "--out",
                           str(a), "--quiet"], capture_output=True, text=True, cwd=work)
    if proc.returncode != 0:
        sys.exit(f"gate_check: export failed: {proc.stderr.strip()[-400:]}")
    copy = work / "engines" / "gate-a-copy.onnx"
    shutil.copy(a, copy)
    probe_units = 8
    probe = _compare(work, a, slowed_copy(a, work / "engines" / "probe.onnx", probe_units), folder / "probe", args,
                     rounds=4)
    per_unit = float(np.mean([r - 1 for r in probe["ratio"].values()])) / probe_units
    slow: dict[str, dict] = {}
    for target in args.slowdowns:
        units = max(1, round((target - 1) / max(per_unit, 1e-6)))
        path = slowed_copy(a, work / "engines" / f"slow-{target:g}.onnx", units)
        true = _compare(work, a, path, folder / f"true-ratio-{target:g}", args, rounds=args.true_rounds,
                        duration=args.true_duration, batch_sizes=args.true_batch_sizes)
        slow[f"{target:g}"] = {"units": units, "path": path, "true": true}
        print(f"slowdown ~{target:g}x: {units} side branches, true ratio ({args.true_rounds} blocks x "
              f"{args.true_duration:g} s, {true['wall_s']:.0f} s) "
              + ", ".join(f"b{b} {v:.3f} ({true['ci'][b][0]:.3f}..{true['ci'][b][1]:.3f})"
                          for b, v in true["ratio"].items()), flush=True)
    top = f"{max(args.slowdowns):g}"
    kinds = [("identical", copy, 0, args.compare_pairs), ("identical-busy", copy, args.busy, args.compare_busy_pairs)]
    for target in slow:
        kinds.append((f"slow-{target}", slow[target]["path"], 0, args.compare_slow_pairs))
    kinds.append((f"slow-{top}-busy", slow[top]["path"], args.busy, args.compare_busy_pairs))
    jobs = sorted(((j + 0.5) / n, name, b, busy) for name, b, busy, n in kinds for j in range(n))
    entries = []
    for i, (_, name, b, busy) in enumerate(jobs):
        e = {"job": i, "kind": name, **_compare(work, a, b, folder / f"{i:02d}-{name}", args, busy=busy)}
        entries.append(e)
        print(f"compare {i:2d} ({name:15s}) load {e['load_1min']:.2f} other CPU {e['cpu_other_pct']:.0f}%  "
              + ", ".join(f"b{k} {v:.3f} ({e['ci'][k][0]:.3f}..{e['ci'][k][1]:.3f})" for k, v in e["ratio"].items())
              + f"  -> exit {e['exit']} {' '.join(e['failed_rows'])}", flush=True)

    def count(kind: str, code: int) -> tuple[int, int]:
        mine = [e for e in entries if e["kind"] == kind]
        return sum(e["exit"] == code for e in mine), len(mine)

    expect = {"identical": (0, 0.95), "identical-busy": (0, 0.9), f"slow-{top}": (1, 1.0),
              f"slow-{top}-busy": (1, 0.8)}
    for target in slow:
        expect.setdefault(f"slow-{target}", (1, 0.8))
    lines, met = [], True
    for kind, (code, share) in expect.items():
        got, n = count(kind, code)
        need = -(-round(share * n * 100) // 100)
        ok = got >= need
        met &= ok
        what = "passed" if code == 0 else "failed (exit 1)"
        lines.append(f"{kind}: {got}/{n} {what} (need {need}) -> {'ok' if ok else 'MISSED'}")
    ident = [e for e in entries if e["kind"] == "identical"]
    batches = sorted({b for e in entries for b in e["ratio"]}, key=int)
    cov = {b: {"ratio_cov_median": float(np.median([e["ratio_cov"][b] for e in ident])),
               "sample_cov_median": float(np.median([e["sample_cov"][b] for e in ident])),
               "lower_gap_median": float(np.median([e["ratio"][b] - e["ci"][b][0] for e in ident]))}
           for b in batches} if ident else {}
    detected = [float(t) for t in slow if count(f"slow-{t}", 1)[0] >= -(-8 * count(f"slow-{t}", 1)[1] // 10)]
    smallest = min(detected) if detected else None
    # a slowdown is flagged when the interval's lower end clears 1 + tol: on identical pairs that end sits
    # `lower_gap` below the median ratio, so about 1 + tol + gap is the smallest ratio the protocol can flag
    reach = {b: round(1 + args.compare_tol + c["lower_gap_median"], 3) for b, c in cov.items()}
    true_wall = {t: v["true"]["wall_s"] for t, v in slow.items()}
    record = {"default_compare_wall_s": true_wall,
              "compare_args": f"--batch-sizes {args.compare_batch_sizes} --rounds {args.compare_rounds} --duration "
                              f"{args.compare_duration:g}" + (f" --threads {args.compare_threads}"
                                                              if args.compare_threads else "")
                              + (" --no-spin" if args.compare_no_spin else ""),
              "probe": probe, "per_unit_extra": per_unit,
              "slowdowns": {t: {"units": v["units"], "true": v["true"]} for t, v in slow.items()},
              "entries": entries, "summary": lines, "within_job": cov, "smallest_detected_8_of_10": smallest,
              "smallest_flaggable_estimate": reach, "wall_s_median": float(np.median([e["wall_s"] for e in entries])),
              "exit": 0 if met else 1}
    for line in lines:
        print(line)
    print("within-job CoV (identical pairs, median): " + ", ".join(
        f"b{b}: block ratios {c['ratio_cov_median']:.1%}, samples {c['sample_cov_median']:.1%}" for b, c in cov.items())
        + f"; smallest slowdown failed in >= 8/10: {smallest}; flaggable from about {reach}")
    true_rows = markdown_rows(("target", "side branches", f"true ratio B/A per batch ({args.true_rounds} blocks x "
                                                           f"{args.true_duration:g} s, 95% interval)"),
                              ((t, v["units"], ", ".join(f"b{b} {r:.3f} ({v['true']['ci'][b][0]:.3f}.."
                                                         f"{v['true']['ci'][b][1]:.3f})"
                                                         for b, r in v["true"]["ratio"].items()))
                               for t, v in slow.items()))
    table = markdown_rows(
        ("job", "kind", "load 1 min", "other CPU %", "ratio B/A (95% interval)", "block-ratio CoV", "exit",
         "failed rows"),
        ((e["job"], e["kind"], e["load_1min"], f"{e['cpu_other_pct']:.0f}",
          ", ".join(f"b{b} {r:.3f} ({e['ci'][b][0]:.3f}..{e['ci'][b][1]:.3f})" for b, r in e["ratio"].items()),
          ", ".join(f"b{b} {c:.1%}" for b, c in e["ratio_cov"].items()), e["exit"], " ".join(e["failed_rows"]))
         for e in entries))
    md = (f"## Protocol 3: A/B in one job (`simplehand-bench compare {record['compare_args']}`)\n\n"
          + "\n".join(f"- {ln}" for ln in lines) + "\n\nWithin-job spread on identical pairs (median): "
          + ", ".join(f"b{b}: block ratios CoV {c['ratio_cov_median']:.1%}, samples CoV {c['sample_cov_median']:.1%}"
                      for b, c in cov.items())
          + f". Smallest slowdown failed in at least 8 of 10: {smallest}x; from the identical pairs' intervals a "
          f"slowdown is flaggable from about {reach}. Median wall time per compare: {record['wall_s_median']:.0f} "
          f"s; a compare at its defaults (8 blocks x 1 s) of batch sizes {args.true_batch_sizes} (the true-ratio "
          f"runs) took {', '.join(f'{w:.0f}' for w in true_wall.values())} s.\n\nSlowed copies (busy kinds run "
          f"{args.busy} busy loops during the whole compare):\n\n" + true_rows
          + "\n" + table)
    return record, md


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocols", default="stored,pooled,compare", help="comma list of stored, pooled, compare")
    ap.add_argument("--pairs", type=int, default=10, help="identical pairs (expect >= 90%% to pass)")
    ap.add_argument("--busy-pairs", type=int, default=2, help="pairs whose second run competes with 2 busy loops")
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--batch-sizes", default="1,4")
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--busy", type=int, default=2, help="busy-loop processes during the loaded runs")
    ap.add_argument("--max-load", type=float, default=None, help="wait for this 1-min load average before each pair")
    ap.add_argument("--max-wait", type=float, default=300.0, help="longest wait per pair (s)")
    ap.add_argument("--pool-runs", type=int, default=5, help="protocol 2: baselines pooled from this many runs")
    ap.add_argument("--compare-pairs", type=int, default=20, help="compare: identical pairs (expect >= 95%% pass)")
    ap.add_argument("--compare-busy-pairs", type=int, default=10,
                    help="compare: identical pairs (expect >= 90%% pass) and largest-slowdown pairs (expect >= 80%% "
                         "fail) with --busy busy loops running during the whole compare")
    ap.add_argument("--compare-slow-pairs", type=int, default=10, help="compare: pairs per slowdown")
    ap.add_argument("--slowdowns", type=lambda t: [float(v) for v in t.split(",")], default=[1.5, 1.2],
                    help="target ratios of the slowed copies")
    ap.add_argument("--compare-batch-sizes", default="1")
    ap.add_argument("--compare-rounds", type=int, default=8, help="compare --rounds (with short samples the two "
                    "sides of a block are timed close together)")
    ap.add_argument("--compare-duration", type=float, default=0.25, help="compare --duration")
    ap.add_argument("--compare-threads", type=int, default=None, help="compare --threads (default: ORT's)")
    ap.add_argument("--true-rounds", type=int, default=8, help="compare: blocks of the true-ratio measurement")
    ap.add_argument("--true-duration", type=float, default=1.0, help="compare: sample seconds of that measurement")
    ap.add_argument("--true-batch-sizes", default="1,4",
                    help="compare: batch sizes of that measurement (at compare's defaults: its wall time is the "
                         "time a default compare of two batch sizes takes)")
    ap.add_argument("--compare-no-spin", action="store_true", help="compare --no-spin")
    ap.add_argument("--compare-tol", type=float, default=0.10, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    protocols = {p.strip() for p in args.protocols.split(",") if p.strip()}
    if not protocols or protocols - {"stored", "pooled", "compare"}:
        ap.error(f"--protocols {args.protocols!r}: choose from stored, pooled, compare")
    from simplehand_deploy.env import fingerprint, write_env_json

    env = fingerprint()
    # absolute: every simplehand-bench run works in a temporary folder (its own engines/)
    out = (args.out or Path("benchmarks") / "results" / f"{env['run_id']}-gate-check").resolve()
    out.mkdir(parents=True, exist_ok=True)
    record: dict = {"command": " ".join(["python benchmarks/gate_check.py", *sys.argv[1:]]),
                    "protocols": sorted(protocols), "exit": {}}
    md = ""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)  # engines/ (the exported tiny graph) lives here, made by the first run
        if protocols & {"stored", "pooled"}:
            stored, text = stored_protocols(args, work, out, protocols)
            record["exit"].update(stored.pop("exit"))
            record.update(stored)
            md += text
        if "compare" in protocols:
            cmp_record, text = compare_protocol(args, work, out)
            record["exit"]["compare"] = cmp_record.pop("exit")
            record["compare"] = cmp_record
            md += text
    (out / "gate_check.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    write_env_json(out, env)
    status = ", ".join(f"{p} exit {c}" for p, c in sorted(record["exit"].items()))
    (out / "gate_check.md").write_text(
        f"# Regression gate check ({env['device_name']}, {env['cpu_count']} CPUs)\n\n`{record['command']}`: "
        f"{status}.\n\n" + md)
    print(status)
    print(f"results: {out}")
    return 1 if any(record["exit"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
