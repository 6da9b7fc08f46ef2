"""FP16 / INT8 drift of a *trained* tiny model on held-out synthetic crops (ONNX Runtime on CPU).

    python benchmarks/precision_drift.py [--steps 300] [--work runs/precision-drift] [--method minmax]

Targets (issue 5): FP16 mean vertex drift < 0.05 mm, INT8 < 1 mm, INT8 PA-MPVPE within 10% of FP32.
INT8 runs as fake quantisation (TensorRT's Q/DQ semantics); see notes/cpu-precision.md. Three INT8
graphs are measured: the default `dense` placement, `--placement all` (every weighted layer outside
the always-float parts), and `all` with sensitivity repair (`--max-drift-mm`, default 1.0; the
budget is met on calibration crops, the figures printed are on held-out crops).
Run with OMP_NUM_THREADS=1 on a shared machine: oversubscribed torch threads slow training ~10x.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--work", type=Path, default=Path("runs/precision-drift"))
    ap.add_argument("--method", default="minmax")
    ap.add_argument("--max-drift-mm", type=float, default=1.0, help="budget of the sensitivity-repaired INT8 graph")
    args = ap.parse_args()
    from simplehand_deploy.calibration import ensure_calibration_set
    from simplehand_deploy.checkpoint import load_checkpoint
    from simplehand_deploy.drift import measure_drift
    from simplehand_deploy.export import export_onnx, read_sidecar
    from simplehand_deploy.precision import convert_fp16, quantize_int8
    from simplehand_deploy.testing import quick_tiny_checkpoint

    w = args.work
    ckpt = quick_tiny_checkpoint(w / "train", steps=args.steps)
    model, info = load_checkpoint(ckpt)
    calib = ensure_calibration_set(w / "calib", synthetic=True, num=32, seed=1, progress=False)
    held_out = ensure_calibration_set(w / "heldout", synthetic=True, num=32, seed=777, progress=False)
    fp32 = export_onnx(model, w / "tiny-fp32.onnx", info=info, progress=False)
    fp16 = convert_fp16(fp32, w / "tiny-fp16.onnx")
    int8 = quantize_int8(fp32, calib, w / "tiny-int8.onnx", method=args.method, progress=False)
    int8_all = quantize_int8(fp32, calib, w / "tiny-int8-all.onnx", method=args.method, progress=False,
                             placement="all")
    repaired = quantize_int8(fp32, calib, w / "tiny-int8-repaired.onnx", method=args.method, progress=False,
                             placement="all", max_drift_mm=args.max_drift_mm)
    model, _ = load_checkpoint(ckpt)
    df = measure_drift([fp32, fp16, int8, int8_all, repaired], held_out, model=model)
    rows = dict(zip(("fp32", "fp16", "int8", "int8-all", "int8-all-repaired"), df.iter_rows(named=True),
                    strict=True))
    print(f"trained tiny ({args.steps} steps), held-out synthetic crops: {rows['fp32']['num_samples']}, "
          f"INT8 calibration: {args.method}, 32 crops")
    for p, r in rows.items():
        print(f"  {p:17s}: vertex drift mean {r['vertex_drift_mean_mm']:.4f} mm, "
              f"p99 {r['vertex_drift_p99_mm']:.4f} mm, "
              f"max {r['vertex_drift_max_mm']:.4f} mm; uv drift mean {r['uv_drift_mean_px']:.4f} px; "
              f"PA-MPVPE {r['pa_mpvpe_mm']:.2f} mm, PA-MPJPE {r.get('pa_mpjpe_mm', float('nan')):.2f} mm")
    for name, path in (("int8", int8), ("int8-all", int8_all), ("int8-all-repaired", repaired)):
        side = read_sidecar(path)["int8"]
        print(f"  {name:17s}: placement {side['placement']}, {side['int8_mac_share']:.1%} of weighted-layer MACs "
              f"in INT8 (tiny)")
    rep = read_sidecar(repaired)["int8"]["sensitivity_repair"]
    print(f"  sensitivity repair: {len(rep['excluded_groups'])} of {len(rep.get('group_sensitivity_mm', []))} layer "
          f"groups kept float, {rep['layers_int8']} of {rep['layers_weighted']} weighted layers still INT8; "
          f"CPU fake-quant ms fp32 {rep.get('cpu_ms_fp32', float('nan')):.1f}, "
          f"all-int8 {rep['cpu_ms_all_int8']:.1f}, "
          f"repaired {rep.get('cpu_ms_repaired', float('nan')):.1f} (simulation)")
    pa32 = rows["fp32"]["pa_mpvpe_mm"]
    checks = {"FP16 mean drift < 0.05 mm": rows["fp16"]["vertex_drift_mean_mm"] < 0.05}
    for p in ("int8", "int8-all", "int8-all-repaired"):
        checks[f"{p} mean drift < 1 mm"] = rows[p]["vertex_drift_mean_mm"] < 1.0
        checks[f"{p} PA-MPVPE within 10% of FP32"] = abs(rows[p]["pa_mpvpe_mm"] - pa32) <= 0.1 * pa32
    for name, ok in checks.items():
        print(f"  [{'met' if ok else 'NOT met'}] {name}")


if __name__ == "__main__":
    main()
