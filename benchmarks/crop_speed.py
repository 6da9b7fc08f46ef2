"""Crops per second on FreiHAND-layout data (JPEG decode + virtual-camera crop), single process.

    python benchmarks/crop_speed.py [--freihand DIR] [--num 300] [--out DIR]

Without --freihand a synthetic FreiHAND-format folder is generated first (not timed). Not a model
benchmark (no simplehand-bench runner applies): it writes crop_speed.json + env.json into a results
folder (default benchmarks/results/<run-id>-crop-speed/).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--freihand", type=Path)
    ap.add_argument("--num", type=int, default=300)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from simplehand_deploy.data.crop import crop_sample
    from simplehand_deploy.data.freihand import FreiHAND
    from simplehand_deploy.data.synthetic import generate
    from simplehand_deploy.env import fingerprint, write_env_json

    with tempfile.TemporaryDirectory() as tmp:
        root = args.freihand
        if root is None:
            t0 = time.perf_counter()
            root = generate(Path(tmp) / "fh", args.num, seed=0, progress=False)
            print(f"synthetic generation: {args.num / (time.perf_counter() - t0):.1f} samples/s")
        ds = FreiHAND(root, "training")
        n = min(args.num, len(ds))
        t0 = time.perf_counter()
        for i in range(n):
            crop_sample(ds[i], scale_enlarge=1.25)
        dt = time.perf_counter() - t0
    print(f"decode + crop: {n / dt:.1f} crops/s ({1000 * dt / n:.2f} ms/crop, {n} crops, 1 process)")
    env = fingerprint()
    out = args.out or Path("benchmarks") / "results" / f"{env['run_id']}-crop-speed"
    out.mkdir(parents=True, exist_ok=True)
    record = {"command": " ".join(["python benchmarks/crop_speed.py", *sys.argv[1:]]), "crops": n,
              "crops_per_s": n / dt, "ms_per_crop": 1000 * dt / n, "source": str(args.freihand or "synthetic")}
    (out / "crop_speed.json").write_text(json.dumps(record, indent=1) + "\n")
    write_env_json(out, env)
    print(f"results: {out}")


if __name__ == "__main__":
    main()
