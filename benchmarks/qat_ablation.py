"""What the QAT recipe's knobs do on the recipe checkpoint, and where the INT8 error of `tiny` comes from.

    python benchmarks/qat_ablation.py [--work runs/int8-peers] [--steps 300] [--variants NAME,...] [--out DIR]

Same recipe as benchmarks/int8_peers.py (`testing.INT8_RECIPE`: `tiny` trained with `train --config tiny
--synthetic --steps 300 --seed 1 --rotation 0`, calibration `calib-set --synthetic --num 32 --seed 1`, fine-tuning
crops `--num 2048 --seed 5` with their last 10% for validation, held-out `--num 64 --seed 777`); a finished
training run in `--work` is reused. Per variant, one fine-tune of the PyTorch fake-quant model
(`precision.qat.fine_tune`, trt8 semantics: FP32 remainder, no export) from the calibrated scales, then on the
held-out crops (never seen by calibration, training or early stopping):

* vertex drift (mm) and uv drift (px) of the fake-quant model vs the FP32 teacher, before and after fine-tuning;
* the same vertex drift with the teacher's uv fed to the quantised vertex head (the keypoint head still runs,
  its output is replaced): how much of the vertex drift is the 2-D keypoints moving the grid samples.

Variants vary one knob of the default recipe (`qat` defaults: lr 1e-4, activation-scale lr x100, QDrop 0.5,
minmax initial scales, no feature distillation, seed 0): another seed (the run-to-run spread the
other rows must beat), the earlier x10 scale lr, QDrop off, block-output distillation; `dense` with the defaults.
`--time-qat` also times one `simplehand-deploy qat --placement all` at its defaults (600 steps, export of both
targets) with every core.

Then post-training placements near ModelOpt's INT8 MAC share (`all`, `all` with the vertex upsample INT8, and that
with the stage 0-2 RepMixer token mixers float: the only way to keep them float within the share budget), and the
FP16 diagnostic behind the trt10 parity gap: ONNX Runtime's FP16 graph (`convert_fp16`, optimisations
off) against its FP32 graph, against itself with optimisations on, and against a PyTorch simulation of the FP16
remainder (every op outside the FP32 island rounded to FP16, fp32 arithmetic on FP16 values), on 16 held-out
crops, no INT8 anywhere.

Writes `<out>/<run-id>-qat-ablation/`: results.{parquet,csv,json,md} + env.json, ablation.md (the table in
docs/precision.md), preset.json (recipe, seconds). Run it alone: each variant is a few minutes on 2 cores.
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

DEFAULTS: dict[str, Any] = {"placement": "all", "method": "minmax", "lr": 1e-4, "scale_lr_factor": 100.0,
                            "qdrop": 0.5, "feature_weight": 0.0, "seed": 0}
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("all", {}),
    ("all seed 1", {"seed": 1}),
    ("all scale lr x10", {"scale_lr_factor": 10.0}),
    ("all QDrop off", {"qdrop": 0.0}),
    ("all block-output distillation", {"feature_weight": 1.0}),
    ("dense", {"placement": "dense"}),
]


# -- the FP16 remainder, simulated in PyTorch (a diagnostic: it does not reproduce ONNX Runtime's FP16) ----------

def fp16_simulation(net: Any) -> Any:
    """A TorchFunctionMode rounding every op's float32 output (and float inputs) to FP16 outside the FP32 island:
    LayerNorm, Softmax, GridSample and the pooled mean by name; the keypoint head and the last token upsample whole;
    the grid coordinates in the mesh head; each attention's q/k scaling and score MatMul."""
    import torch
    from torch.overrides import TorchFunctionMode

    views = {"reshape", "view", "transpose", "permute", "flatten", "squeeze", "unsqueeze", "__getitem__", "unbind",
             "contiguous", "expand", "chunk", "split", "t", "clone", "detach", "to", "float", "__get__", "size",
             "dim", "numel"}
    island_calls = {"layer_norm", "softmax", "grid_sample", "mean"}
    island_modules = ("keypoints_2d_head", "mesh_head.upsample_3")
    mesh_head_island = {"mul", "__mul__", "sub", "__sub__", "rsub", "__rsub__", "clamp", "grid_sample"}

    def half(x: Any) -> Any:
        return x.clamp(-65504, 65504).half().float() if isinstance(x, torch.Tensor) and x.dtype == torch.float32 else x

    class Fp16(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[tuple[str, Any, list[int]]] = []
            self.hooks = []
            for name, mod in net.named_modules():
                self.hooks.append(mod.register_forward_pre_hook(self._enter(name, mod)))
                self.hooks.append(mod.register_forward_hook(self._leave))

        def _enter(self, name: str, mod: Any) -> Any:
            def hook(*_: Any) -> None:
                self.stack.append((name, mod, [0]))
            return hook

        def _leave(self, *_: Any) -> None:
            self.stack.pop()

        def island(self, name: str) -> bool:
            if name in island_calls:
                return True
            if not self.stack:
                return False
            path, mod, matmuls = self.stack[-1]
            if any(path == m or path.startswith(m + ".") for m in island_modules):
                return True
            if path == "mesh_head":
                return name in mesh_head_island
            if type(mod).__name__ in ("Attention", "PackedAttention"):
                if name in ("mul", "__mul__"):
                    return True
                if name in ("matmul", "__matmul__"):
                    matmuls[0] += 1
                    return matmuls[0] == 1  # q @ k^T; attention @ v is FP16
            return False

        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            name = getattr(func, "__name__", "")
            if name in views or self.island(name):
                return func(*args, **(kwargs or {}))
            return half(func(*[half(a) for a in args], **(kwargs or {})))

        def close(self) -> None:
            for h in self.hooks:
                h.remove()

    return Fp16()


def fp16_diagnostic(teacher: Any, fp32: Path, calib: Path, held_out: Path, work: Path) -> dict[str, float]:
    import tempfile

    from simplehand_deploy.calibration import load_calibration_set
    from simplehand_deploy.drift import vertex_drift_mm
    from simplehand_deploy.ort import make_session, run
    from simplehand_deploy.precision.fp16 import convert_fp16
    from simplehand_deploy.precision.qat import build_qat_model
    from simplehand_deploy.predict import run_model

    images = load_calibration_set(held_out).images[:16]
    fp16 = convert_fp16(fp32, work / "ablation-fp16.onnx").path
    g32 = run(make_session(fp32), images)
    g16 = run(make_session(fp16, fake_quant=True), images)  # optimisations off, as every parity figure
    g16_opt = run(make_session(fp16, fake_quant=False), images)
    with tempfile.TemporaryDirectory(dir=work) as tmp:  # the fake-quant twin, quantisers off: the graph's attention
        model = build_qat_model(teacher, fp32, calib, Path(tmp), placement="dense", exclude=(), method="minmax",
                                progress=False)
    model.quantise = False
    eager = run_model(model, images)
    mode = fp16_simulation(model.net)
    try:
        with mode:
            sim = run_model(model, images)
    finally:
        mode.close()

    def mm(a: dict[str, Any], b: dict[str, Any]) -> float:
        return float(vertex_drift_mm(a, b).mean())

    return {"ort_fp16_vs_ort_fp32_mm": mm(g32, g16), "ort_fp16_optimised_vs_not_mm": mm(g16, g16_opt),
            "torch_fp32_vs_ort_fp16_mm": mm(g16, eager), "torch_fp16_simulation_vs_ort_fp16_mm": mm(g16, sim),
            "torch_fp16_simulation_vs_torch_fp32_mm": mm(eager, sim), "crops": len(images)}


# -- the share budget: what keeping the RepMixer token mixers float costs and buys (post-training) -------------

TOKEN_MIXERS = tuple(f"/stages.{i}/blocks/blocks.0/token_mixer/reparam_conv/Conv" for i in (0, 1, 2))
PLACEMENTS: list[tuple[str, dict[str, Any]]] = [
    ("all", {"placement": "all"}),
    ("all + vertex upsample INT8", {"placement": "all", "int8_upsample": True}),
    ("all + vertex upsample INT8, stage 0-2 token mixers float",
     {"placement": "all", "int8_upsample": True, "exclude": list(TOKEN_MIXERS)}),
]


def placement_rows(fp32: Path, calib: Path, held_out: Path, work: Path) -> list[dict[str, Any]]:
    """Post-training drift (ONNX Runtime, optimisations off) and INT8 MAC share of placements near ModelOpt's share."""
    import tempfile

    from simplehand_deploy.calibration import load_calibration_set
    from simplehand_deploy.drift import vertex_drift_mm
    from simplehand_deploy.ort import make_session, run
    from simplehand_deploy.precision.qdq import quantize_int8

    images = load_calibration_set(held_out).images
    ref = run(make_session(fp32), images)
    rows = []
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for name, kw in PLACEMENTS:
            art = quantize_int8(fp32, calib, Path(tmp) / "p.onnx", method="minmax", target="trt8", progress=False,
                                **kw)
            assert art.int8 is not None
            rows.append({"placement": name, "int8_mac_share": art.int8.int8_mac_share,
                         "ptq_vertex_drift_mean_mm": float(vertex_drift_mm(ref, run(make_session(art.path),
                                                                                          images)).mean())})
    return rows


def time_qat(ckpt: Path, calib: Path, data: Path, work: Path) -> dict[str, Any]:
    """Wall time of one `qat --placement all` at the command's defaults (every core, as the command runs)."""
    import os
    import tempfile

    import torch

    from simplehand_deploy.precision.qat import QatConfig, run_qat

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            t0 = time.perf_counter()
            result = run_qat(QatConfig(checkpoint=ckpt, config="tiny", calib=calib, data=data,
                                       out=Path(tmp) / "qat-all.onnx", placement="all", progress=False))
            seconds = time.perf_counter() - t0
    finally:
        used = torch.get_num_threads()
        torch.set_num_threads(threads)
    r = result.record
    return {"seconds": seconds, "threads": used, "steps": r["steps_run"], "val_start_mm": r["val_start_mm"],
            "val_best_mm": r["val_best_mm"], "best_step": r["best_step"]}


# -- one variant ---------------------------------------------------------------------------------------------------

def with_teacher_uv(qm: Any, teacher_uv: Any, images: Any, batch: int = 32) -> Any:
    """Vertices of the fake-quant model when its vertex head reads the teacher's uv (the keypoint head still runs,
    so every weighted call pairs with its graph node as usual)."""
    import numpy as np
    import torch

    head = qm.net.keypoints_2d_head
    original = head.forward
    out = []
    try:
        for i in range(0, len(images), batch):
            uv = torch.from_numpy(np.ascontiguousarray(teacher_uv[i: i + batch]))
            head.forward = lambda x, uv=uv: uv.reshape(x.shape[0], -1) + 0 * original(x)
            with torch.no_grad():
                out.append(qm(torch.from_numpy(np.ascontiguousarray(images[i: i + batch])))[1].numpy())
    finally:
        head.forward = original
    return np.concatenate(out)


def measure(qm: Any, teacher_out: dict[str, Any], images: Any) -> dict[str, float]:
    from simplehand_deploy.drift import drift_row, vertex_drift_mm
    from simplehand_deploy.predict import run_model

    row = drift_row(teacher_out, run_model(qm, images))
    verts = with_teacher_uv(qm, teacher_out["uv"], images)
    return {"vertex_drift_mean_mm": row["vertex_drift_mean_mm"], "uv_drift_mean_px": row["uv_drift_mean_px"],
            "vertex_drift_teacher_uv_mean_mm": float(vertex_drift_mm(teacher_out, {"vertices": verts}).mean())}


def run_variant(name: str, knobs: dict[str, Any], teacher: Any, fp32: Path, calib: Path, data: Any, held: Any,
                t_held: dict[str, Any], steps: int, work: Path) -> dict[str, Any]:
    import tempfile

    from simplehand_deploy.precision.qat import VAL_FRACTION, build_qat_model, fine_tune

    k = {**DEFAULTS, **knobs}
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        qm = build_qat_model(teacher, fp32, calib, Path(tmp), placement=k["placement"], exclude=(), method=k["method"],
                             progress=False)
    before = measure(qm, t_held, held)
    n_val = max(1, round(len(data) * VAL_FRACTION))
    t0 = time.perf_counter()
    fit = fine_tune(qm, teacher, data[:-n_val], data[-n_val:], steps=steps, lr=k["lr"], batch_size=16,
                    seed=k["seed"], qdrop=k["qdrop"], eval_every=50, feature_weight=k["feature_weight"],
                    scale_lr_factor=k["scale_lr_factor"],
                    on_eval=lambda h: print(f"  {name}: {h}", file=sys.stderr, flush=True))
    seconds = time.perf_counter() - t0
    after = measure(qm, t_held, held)
    return {"variant": name, **k, "steps": steps, "best_step": fit["best_step"],
            "val_drift_start_mm": fit["val_start_mm"], "val_drift_best_mm": fit["val_best_mm"],
            **{f"ptq_{key}": v for key, v in before.items()}, **{f"qat_{key}": v for key, v in after.items()},
            "fine_tune_s": seconds}


def ablation_md(rows: list[dict[str, Any]], fp16: dict[str, float] | None,
                placements: list[dict[str, Any]] | None = None) -> str:
    from simplehand_deploy.bench.results import markdown_rows

    header = ["variant", "steps (best)", "PTQ drift (mm)", "QAT drift (mm)", "PTQ uv (px)", "QAT uv (px)",
              "PTQ drift, teacher uv (mm)", "QAT drift, teacher uv (mm)", "fine-tune (s)"]
    body = [[r["variant"], f"{r['steps']} ({r['best_step']})", f"{r['ptq_vertex_drift_mean_mm']:.2f}",
             f"{r['qat_vertex_drift_mean_mm']:.2f}", f"{r['ptq_uv_drift_mean_px']:.2f}",
             f"{r['qat_uv_drift_mean_px']:.2f}", f"{r['ptq_vertex_drift_teacher_uv_mean_mm']:.2f}",
             f"{r['qat_vertex_drift_teacher_uv_mean_mm']:.2f}", f"{r['fine_tune_s']:.0f}"] for r in rows]
    md = markdown_rows(header, body)
    if placements:
        md += "\nPost-training placements near ModelOpt's INT8 MAC share (trt8, minmax):\n\n" + markdown_rows(
            ["placement", "INT8 MAC share", "PTQ drift (mm)"],
            [[p["placement"], f"{p['int8_mac_share']:.1%}", f"{p['ptq_vertex_drift_mean_mm']:.2f}"]
             for p in placements])
    if fp16:
        md += ("\nFP16 remainder, no INT8, {crops} held-out crops (mean vertex distance, mm): ORT FP16 vs ORT FP32 "
               "{ort_fp16_vs_ort_fp32_mm:.3f}; ORT FP16 optimisations on vs off {ort_fp16_optimised_vs_not_mm:.3f}; "
               "PyTorch FP32 vs ORT FP16 {torch_fp32_vs_ort_fp16_mm:.3f}; PyTorch FP16 simulation vs ORT FP16 "
               "{torch_fp16_simulation_vs_ort_fp16_mm:.3f} (vs PyTorch FP32 "
               "{torch_fp16_simulation_vs_torch_fp32_mm:.3f}).\n").format(**fp16)
    return md


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "int8-peers", help="checkpoint, sets, graphs")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--steps", type=int, default=300, help="fine-tuning steps per variant")
    ap.add_argument("--variants", default="", help="comma-separated variant names (default: all)")
    ap.add_argument("--no-fp16", action="store_true", help="skip the FP16 diagnostic")
    ap.add_argument("--time-qat", action="store_true", help="also time one `qat --placement all` at its defaults")
    args = ap.parse_args(argv)
    import polars as pl

    from simplehand_deploy.bench.results import write_results
    from simplehand_deploy.calibration import ensure_calibration_set, load_calibration_set
    from simplehand_deploy.checkpoint import load_checkpoint
    from simplehand_deploy.env import fingerprint
    from simplehand_deploy.export import export_onnx
    from simplehand_deploy.fileio import sha256_file
    from simplehand_deploy.predict import run_model
    from simplehand_deploy.testing import INT8_RECIPE, int8_recipe_checkpoint

    wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in wanted if v not in dict(VARIANTS)]
    if unknown:
        raise SystemExit(f"error: --variants {unknown[0]!r}: choose from {', '.join(n for n, _ in VARIANTS)}")
    if args.steps < 1:
        raise SystemExit(f"error: --steps {args.steps}: give at least 1")
    t_start = time.time()
    args.work.mkdir(parents=True, exist_ok=True)
    env = fingerprint()
    ckpt = int8_recipe_checkpoint(args.work)
    calib = ensure_calibration_set(args.work / "calib-32", synthetic=True, num=32, seed=1, progress=False)
    held_out = ensure_calibration_set(args.work / "held-out", synthetic=True, num=64, seed=777, progress=False)
    data_dir = ensure_calibration_set(args.work / "qat-data-2048", synthetic=True, num=2048, seed=5, progress=False)
    model, info = load_checkpoint(ckpt, "tiny")
    fp32 = export_onnx(model, args.work / "ablation-tiny-fp32.onnx", info=info, progress=False).path
    teacher, _ = load_checkpoint(ckpt, "tiny", fused=True)
    for p in teacher.parameters():
        p.requires_grad_(False)
    held = load_calibration_set(held_out).images
    data = load_calibration_set(data_dir).images
    t_held = run_model(teacher, held)
    rows = []
    for name, knobs in VARIANTS:
        if wanted and name not in wanted:
            continue
        print(f"{name}", file=sys.stderr, flush=True)
        rows.append(run_variant(name, knobs, teacher, fp32, calib, data, held, t_held, args.steps, args.work))
    fp16 = None if args.no_fp16 else fp16_diagnostic(teacher, fp32, calib, held_out, args.work)
    placements = placement_rows(fp32, calib, held_out, args.work)
    timed = time_qat(ckpt, calib, data_dir, args.work) if args.time_qat else None
    common = {"config": "tiny", "weights": info.short, "measurement": "qat_ablation", **env}
    df = pl.DataFrame([{**common, **r} for r in rows])
    folder = args.out / f"{env['run_id']}-qat-ablation"
    write_results(df, folder, env={**env, "graphs_sha256": {fp32.name: sha256_file(fp32)},
                                   "checkpoint_sha256": sha256_file(ckpt)})
    md = (f"tiny ({info.short}), {len(held)} held-out crops, {args.steps} fine-tuning steps per variant, "
          f"{env['cpu_model']}\n\n" + ablation_md(rows, fp16, placements))
    if timed:
        md += (f"\n`simplehand-deploy qat --placement all` at its defaults ({timed['steps']} steps, both targets "
               f"exported), {timed['threads']} threads: {timed['seconds']:.0f} s wall; validation drift "
               f"{timed['val_start_mm']:.2f} -> {timed['val_best_mm']:.2f} mm.\n")
    (folder / "ablation.md").write_text(md)
    command = " ".join(["python benchmarks/qat_ablation.py", *(argv if argv is not None else sys.argv[1:])])
    (folder / "preset.json").write_text(json.dumps(
        {"command": command, "recipe": INT8_RECIPE, "defaults": DEFAULTS, "variants": dict(VARIANTS),
         "fp16_diagnostic": fp16, "placements": placements, "qat_command": timed,
         "args": {k: str(v) for k, v in vars(args).items()},
         "seconds": round(time.time() - t_start)}, indent=2) + "\n")
    print(md)
    print(f"results: {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
