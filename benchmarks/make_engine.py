"""What `make engine` costs on this machine: wall and CPU time, peak RSS, the export's figures, and the re-run.

    python benchmarks/make_engine.py [--config fastvit_ma36] [--calib-num 64] [--out DIR]

Runs `simplehand-deploy engine` (what `make engine` runs) twice in a fresh work folder, each in its own process:
the first builds every artifact, the second must reuse them all. Records wall time, CPU time (user + sys, less
sensitive than wall time to other load on a shared host), peak RSS, the ONNX export's seconds and parity, the
onnxsim node counts, and the 1-minute load average at the start, then writes make_engine.{json,md} + env.json
into a results folder (default benchmarks/results/<run-id>-make-engine/). Exit 1 when the job fails or the
re-run rebuilds anything (docs/pipeline.md: re-running reuses every valid artifact).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs the CLI in this child process, then reports the child's own resource use (threads included).
_CHILD = """
import json, resource, sys
from simplehand_deploy.cli import deploy_app
code = 0
try:
    deploy_app(sys.argv[2:])
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
ru = resource.getrusage(resource.RUSAGE_SELF)
with open(sys.argv[1], "w") as f:
    json.dump({"exit": code, "cpu_s": ru.ru_utime + ru.ru_stime, "max_rss_kb": ru.ru_maxrss}, f)
"""


def _engine(work: Path, config: str, calib_num: int) -> dict:
    usage = work / "usage.json"
    args = ["engine", "--config", config, "--calib-num", str(calib_num), "--out", str(work / "engines")]
    t0 = time.perf_counter()
    # in the work folder: the job writes calibration/ next to where it runs, as `make engine` does in the repo
    res = subprocess.run([sys.executable, "-c", _CHILD, str(usage), *args], capture_output=True, text=True,
                         cwd=work)
    wall = time.perf_counter() - t0
    got = json.loads(usage.read_text()) if usage.is_file() else {"exit": res.returncode}
    text = res.stdout + res.stderr
    sim = re.search(r"onnxsim (\d+) -> (\d+) nodes", text)
    return {"wall_s": round(wall, 1), "cpu_s": round(got.get("cpu_s", float("nan")), 1),
            "peak_rss_gb": round(got.get("max_rss_kb", 0) / 1024**2, 2), "exit": got["exit"],
            "built": len(re.findall(r"\bbuilt\b", text)), "reused": len(re.findall(r"\breused\b", text)),
            "onnxsim_nodes": [int(sim.group(1)), int(sim.group(2))] if sim else None, "log_tail": text[-1500:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="fastvit_ma36")
    ap.add_argument("--calib-num", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    from simplehand_deploy.bench.results import markdown_rows
    from simplehand_deploy.env import details, write_env_json

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        first = _engine(work, args.config, args.calib_num)
        side = next((work / "engines").glob("*-fp32.json"), None)
        sidecar = json.loads(side.read_text()) if side else {}
        again = _engine(work, args.config, args.calib_num) if first["exit"] == 0 else None
    env = details()
    record = {
        "command": " ".join(["python benchmarks/make_engine.py", *(argv if argv is not None else sys.argv[1:])]),
        "config": args.config, "calib_num": args.calib_num, "load_average_1min_at_start": round(load, 2),
        "first_run": first, "re_run": again,
        "export_s": sidecar.get("seconds"), "parity_max_abs": sidecar.get("parity_max_abs"),
        "weights_kind": sidecar.get("weights_kind"),
    }
    out = args.out or Path("benchmarks") / "results" / f"{env['run_id']}-make-engine"
    out.mkdir(parents=True, exist_ok=True)
    (out / "make_engine.json").write_text(json.dumps(record, indent=1) + "\n")
    write_env_json(out, env)
    kind = sidecar.get("weights_kind")
    lines = [f"# make engine ({args.config}, {args.calib_num} calibration crops, {kind} weights)",
             "", f"`{record['command']}` on {env['cpu_model']} ({env['cpu_count']} CPUs), 1-min load average at "
             f"start {load:.1f}", "",
             markdown_rows(("run", "wall s", "CPU s (user+sys)", "peak RSS GB", "built", "reused", "exit"),
                           ((name, r["wall_s"], r["cpu_s"], r["peak_rss_gb"], r["built"], r["reused"], r["exit"])
                            for name, r in (("first", first), ("re-run", again)) if r)).rstrip("\n")]
    lines += ["", f"export {record['export_s']} s, onnxsim {first['onnxsim_nodes']} nodes, parity (max abs, ORT vs "
              f"PyTorch) {record['parity_max_abs']}"]
    (out / "make_engine.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"results: {out}")
    ok = first["exit"] == 0 and again is not None and again["exit"] == 0 and again["built"] == 0
    if not ok:
        print("FAIL: the job failed or the re-run rebuilt an artifact", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
