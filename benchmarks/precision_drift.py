"""FP16 / INT8 drift of a *trained* tiny model on held-out synthetic crops (ONNX Runtime on CPU).

    python benchmarks/precision_drift.py [--steps 300] [--work runs/precision-drift] [--method minmax]

Targets (issue 5): FP16 mean vertex drift < 0.05 mm, INT8 < 1 mm, INT8 PA-MPVPE within 10% of FP32.
INT8 runs as fake quantisation (TensorRT's Q/DQ semantics); see notes/cpu-precision.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--work", type=Path, default=Path("runs/precision-drift"))
    ap.add_argument("--method", default="minmax")
    ap.add_argument("--max-drift-mm", type=float, default=None, help="also run the sensitivity repair")
    args = ap.parse_args()
    from simplehand_deploy.calibration import ensure_calibration_set
    from simplehand_deploy.checkpoint import load_checkpoint
    from simplehand_deploy.drift import measure_drift
    from simplehand_deploy.export import export_onnx
    from simplehand_deploy.precision import convert_fp16, quantize_int8
    from simplehand_deploy.train import quick_tiny_checkpoint

    w = args.work
    ckpt = quick_tiny_checkpoint(w / "train", steps=args.steps)
    model, info = load_checkpoint(ckpt)
    calib = ensure_calibration_set(w / "calib", synthetic=True, num=32, seed=1, progress=False)
    held_out = ensure_calibration_set(w / "heldout", synthetic=True, num=32, seed=777, progress=False)
    fp32 = export_onnx(model, w / "tiny-fp32.onnx", info=info, progress=False)
    fp16 = convert_fp16(fp32, w / "tiny-fp16.onnx")
    int8 = quantize_int8(fp32, calib, w / "tiny-int8.onnx", method=args.method, progress=False,
                         max_drift_mm=args.max_drift_mm)
    model, _ = load_checkpoint(ckpt)
    df = measure_drift([fp32, fp16, int8], held_out, model=model)
    rows = {r["precision"]: r for r in df.iter_rows(named=True)}
    print(f"trained tiny ({args.steps} steps), held-out synthetic crops: {rows['fp32']['num_samples']}")
    for p in ("fp32", "fp16", "int8"):
        r = rows[p]
        print(f"  {p}: vertex drift mean {r['vertex_drift_mean_mm']:.4f} mm, p99 {r['vertex_drift_p99_mm']:.4f} mm, "
              f"max {r['vertex_drift_max_mm']:.4f} mm; uv drift mean {r['uv_drift_mean_px']:.4f} px; "
              f"PA-MPVPE {r['pa_mpvpe_mm']:.2f} mm")
    pa32, pa8 = rows["fp32"]["pa_mpvpe_mm"], rows["int8"]["pa_mpvpe_mm"]
    checks = {
        "FP16 mean drift < 0.05 mm": rows["fp16"]["vertex_drift_mean_mm"] < 0.05,
        "INT8 mean drift < 1 mm": rows["int8"]["vertex_drift_mean_mm"] < 1.0,
        "INT8 PA-MPVPE within 10% of FP32": abs(pa8 - pa32) <= 0.1 * pa32,
    }
    for name, ok in checks.items():
        print(f"  [{'met' if ok else 'NOT met'}] {name}")


if __name__ == "__main__":
    main()
