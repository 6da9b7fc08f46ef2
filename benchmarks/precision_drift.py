"""FP16 / INT8 drift of a *trained* tiny model on held-out synthetic crops, per INT8 target and placement.

    python benchmarks/precision_drift.py [--checkpoint W] [--work runs/precision-drift] [--out benchmarks/results]
                                         [--methods minmax,entropy] [--max-drift-mm 1.0]

Recipe (`testing.INT8_RECIPE`): `tiny` trained with `train --config tiny --synthetic --steps 300 --seed 1 --rotation 0`
(or `--checkpoint` naming weights made that way; training takes ~30 min on a busy 2-core host),
calibration crops `calib-set --synthetic --num 32 --seed 1`, held-out crops `--num 64 --seed 777`.
Rows: FP16; INT8 `dense` and `all` for each target (trt10: FP16 remainder + FP32 island, opset 19;
trt8: FP32 scales, opset 17) and calibration method; `all` + sensitivity repair (`--max-drift-mm`,
budget checked on the last 25% of the calibration crops). All drift is ONNX Runtime on CPU against
PyTorch FP32 eager on the held-out crops, INT8 as fake quantisation (TensorRT's Q/DQ semantics; see
docs/precision.md); the INT8 MAC share is read from each graph (`precision.int8_mac_share`).

Writes `<out>/<run-id>-precision-drift/`: results.{parquet,csv,json,md} + env.json, drift.md (the table in
benchmarks/README.md) and preset.json. Exit 1 when a drift target (docs/precision.md) is missed: FP16 mean
vertex drift < 0.05 mm; the default INT8 (dense, trt10) PA-MPVPE within 10% of FP32's.
Run with OMP_NUM_THREADS=1 on a shared machine: oversubscribed torch threads slow training ~10x.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simplehand_deploy.testing import INT8_RECIPE  # noqa: E402  (after the sys.path line)

RECIPE = {k: INT8_RECIPE[k] for k in ("train", "calib", "held_out")}
COLUMNS = ("variant", "precision", "int8_target", "placement", "method", "int8_mac_share", "qdq_nodes",
           "vertex_drift_mean_mm", "vertex_drift_p99_mm", "uv_drift_mean_px", "pa_mpvpe_mm", "repair_met")


def variants(methods: list[str], max_drift_mm: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for method in methods:
        for placement in ("dense", "all"):
            for target in ("trt10", "trt8"):
                out.append({"variant": f"int8 {placement} {target} {method}", "placement": placement,
                            "target": target, "method": method})
    out.append({"variant": f"int8 all+repair trt10 {methods[0]}", "placement": "all", "target": "trt10",
                "method": methods[0], "max_drift_mm": max_drift_mm})
    return out


def table_md(rows: list[dict[str, Any]]) -> str:
    from simplehand_deploy.bench.results import markdown_rows

    return markdown_rows(
        ("variant", "target", "placement", "method", "INT8 MAC share", "mean drift (mm)", "p99 (mm)", "uv (px)",
         "PA-MPVPE (mm)"),
        ((r["variant"], r["int8_target"] or "–", r["placement"] or "–", r["method"] or "–",
          "–" if r["int8_mac_share"] is None else format(100 * r["int8_mac_share"], ".1f") + "%",
          f"{r['vertex_drift_mean_mm']:.3f}", f"{r['vertex_drift_p99_mm']:.3f}", f"{r['uv_drift_mean_px']:.3f}",
          f"{r['pa_mpvpe_mm']:.2f}") for r in rows))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=None, help="weights trained with the recipe (else trains)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "precision-drift")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--methods", default="minmax,entropy")
    ap.add_argument("--max-drift-mm", type=float, default=1.0, help="budget of the sensitivity-repaired INT8 graph")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    import polars as pl

    from simplehand_deploy.artifact import OnnxArtifact
    from simplehand_deploy.bench.results import write_results
    from simplehand_deploy.calibration import ensure_calibration_set
    from simplehand_deploy.checkpoint import load_checkpoint
    from simplehand_deploy.drift import measure_drift
    from simplehand_deploy.env import fingerprint, slug
    from simplehand_deploy.export import export_onnx
    from simplehand_deploy.precision import convert_fp16, int8_mac_share, quantize_int8
    from simplehand_deploy.precision.macs import qdq_count
    from simplehand_deploy.testing import int8_recipe_checkpoint

    t0 = time.time()
    w = args.work
    w.mkdir(parents=True, exist_ok=True)
    env = fingerprint()
    ckpt = args.checkpoint or int8_recipe_checkpoint(w, args.steps)
    calib = ensure_calibration_set(w / "calib", synthetic=True, num=32, seed=1, progress=False)
    held_out = ensure_calibration_set(w / "heldout", synthetic=True, num=64, seed=777, progress=False)
    model, info = load_checkpoint(ckpt)
    fp32 = export_onnx(model, w / "tiny-fp32.onnx", info=info, progress=False).path
    paths: dict[str, Path] = {"fp32": fp32, "fp16": convert_fp16(fp32, w / "tiny-fp16.onnx").path}
    specs = {"fp32": {}, "fp16": {}}
    for v in variants(methods, args.max_drift_mm):
        name = v["variant"]
        out = w / f"tiny-{slug(name)}.onnx"
        print(f"quantising {name}", file=sys.stderr, flush=True)
        paths[name] = quantize_int8(fp32, calib, out, method=v["method"], placement=v["placement"],
                                    target=v["target"], max_drift_mm=v.get("max_drift_mm"), progress=False).path
        specs[name] = v
    model, _ = load_checkpoint(ckpt, fused=True)  # the reference: fused eager FP32
    df = measure_drift(list(paths.values()), held_out, model=model)
    rows = []
    for (name, path), r in zip(paths.items(), df.iter_rows(named=True), strict=True):
        v = specs[name]
        recipe = OnnxArtifact.read(path).int8
        rep = recipe.sensitivity_repair if recipe is not None else None
        rows.append({**r, "variant": name, "placement": v.get("placement"), "method": v.get("method"),
                     "int8_mac_share": int8_mac_share(path) if r["precision"] == "int8" else None,
                     "qdq_nodes": qdq_count(path) if r["precision"] == "int8" else 0,
                     "repair_met": None if rep is None else bool(rep.met), "config": info.config,
                     "weights": info.short, "measurement": "precision_drift", **env})
    folder = args.out / f"{env['run_id']}-precision-drift"
    write_results(pl.DataFrame(rows, infer_schema_length=None), folder, env=env)
    by = {r["variant"]: r for r in rows}
    pa = by["fp32"]["pa_mpvpe_mm"]
    default = by[f"int8 dense trt10 {methods[0]}"]
    checks = {"FP16 mean vertex drift < 0.05 mm": by["fp16"]["vertex_drift_mean_mm"] < 0.05,
              "default INT8 (dense, trt10) PA-MPVPE within 10% of FP32": abs(default["pa_mpvpe_mm"] - pa) <= 0.1 * pa}
    md = (f"trained tiny ({info.short}), {len(rows) and by['fp32']['num_samples']} held-out crops (seed 777), "
          f"32 calibration crops (seed 1); ORT CPU, INT8 as fake quantisation\n\n"
          + table_md([by["fp32"] | {"int8_mac_share": None}, *rows[1:]]))
    (folder / "drift.md").write_text(md)
    (folder / "preset.json").write_text(json.dumps(
        {"recipe": RECIPE, "checkpoint": str(ckpt), "weights_sha256": info.sha256, "args": {
            k: str(v) for k, v in vars(args).items()}, "checks": checks, "seconds": round(time.time() - t0)},
        indent=2) + "\n")
    print(md)
    for name, ok in checks.items():
        print(f"  [{'met' if ok else 'NOT met'}] {name}")
    print(f"results: {folder}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
