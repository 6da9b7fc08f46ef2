"""Our INT8 against NVIDIA's own quantiser (ModelOpt 0.47 ONNX PTQ): same graph, same crops, same held-out set.

    python benchmarks/int8_peers.py [--work runs/int8-peers] [--out benchmarks/results] [--threads 1]
                                    [--calib-nums 16,32,64,128,256] [--no-sweep] [--fastvit-checkpoint W]
                                    [--qat-steps 600] [--qat-lr 1e-4] [--modelopt-from RESULTS_DIR]

The recipe (`testing.INT8_RECIPE`): `tiny` trained with `train --config tiny --synthetic --steps 300 --seed 1
--rotation 0`, calibration crops `calib-set --synthetic --num 32 --seed 1`, held-out crops `calib-set
--synthetic --num 64 --seed 777` (never used for calibration). Variants, all from the same FP32 ONNX:
ours (`--quantizer ort`, default target) with placement `dense` (the default), `all`, and `all` with
sensitivity repair (`--max-drift-mm`), all with `--method` (default minmax), and `dense` / `all` with
entropy (ModelOpt's default calibration; informative, the goal is about our defaults); ModelOpt with
`max` and `entropy` calibration, FP32 and FP16 remainder, `--calibration_eps cpu`; plus one diagnostic
row outside the goal, ModelOpt told to keep float what our `dense` placement keeps float (same
placement, other quantiser). Per variant: held-out vertex
drift vs PyTorch FP32 eager (mean, p99 mm; per hand region), uv drift (px), PA-MPVPE vs labels, INT8
MAC share and Q/DQ count read from the graph (`precision.macs`, one definition for both quantisers), and
fake-quant CPU time at batch 1
(ONNX Runtime, `--threads`; a simulation figure, not TensorRT speed). Then a calibration-size sweep:
held-out drift of ours and ModelOpt for 16..256 calibration crops.

Writes `<out>/<run-id>-int8-peers/`: results.{parquet,csv,json,md} + env.json (measurement `peers` for the
main table, `calib_sweep` for the sweep), peers.md (the table in benchmarks/README.md), preset.json (recipe, verdict),
drift_vs_mac_share.png, drift_vs_calib_num.png and drift maps of ours and the best ModelOpt variant.
Creates the ModelOpt venv (`make modelopt`) when it is missing.

QAT rows (`simplehand-deploy qat`, one fine-tune per placement `all`, `dense`, `matched`, both targets;
fine-tuning crops `calib-set --synthetic --num 2048 --seed 5`, validation = their last 10%) sit beside
PTQ and ModelOpt on the same held-out crops. Every main-table drift carries a bootstrap 95% interval over
the held-out crops (columns vertex_drift_mean_ci95_{lo,hi}_mm). `--modelopt-from` takes the ModelOpt rows
from a committed results folder instead of running ModelOpt, and refuses when they were measured on other
weights.

Exit 1 when both goals are missed. The QAT goal: a QAT artifact whose INT8 MAC share is at least the
highest ModelOpt share minus 1.5 points has at most half the best ModelOpt drift, and every QAT `dense`
artifact is at most 1.0 mm. The post-training goal (earlier): our default or `all` placement must have at most half the
held-out mean vertex drift of the best ModelOpt variant, with an INT8 MAC share at least the highest
ModelOpt share minus one point. Run with the machine otherwise quiet for the CPU times.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simplehand_deploy.testing import INT8_RECIPE  # noqa: E402  (after the sys.path line)

RECIPE = INT8_RECIPE
# Ours for the goal: the default placement, `all`, and `all` with `int8 --scale-search` (minmax and entropy).
OURS_GOAL = ("ours dense", "ours all", "ours all scale-search", "ours all entropy scale-search")
QAT_PLACEMENTS = ("all", "dense", "matched")
# The QAT goal: a QAT artifact with an INT8 MAC share >= the highest ModelOpt share - 1.5 points and <= half the
# best ModelOpt drift, and QAT `dense` <= 1 mm.
QAT_SHARE_SLACK = 0.015
QAT_DENSE_MM = 1.0
BOOTSTRAP = 2000


def _ensure_modelopt() -> str:
    from simplehand_deploy.precision.modelopt import modelopt_available

    ok, where = modelopt_available()
    if not ok:
        print(f"ModelOpt venv missing ({where}); running `make modelopt` (multi-GB, once)", file=sys.stderr)
        subprocess.run(["make", "-C", str(ROOT), "modelopt"], check=True)
        ok, where = modelopt_available()
        if not ok:
            raise SystemExit(f"error: ModelOpt venv still unusable after `make modelopt`: {where}")
    return where


def _remainder(path: Path) -> str:
    """'fp16' when the graph holds float16 tensors outside Q/DQ (read from the graph), else 'fp32'."""
    import onnx

    m = onnx.load(str(path))
    half = onnx.TensorProto.FLOAT16
    if any(t.data_type == half for t in m.graph.initializer):
        return "fp16"
    for n in m.graph.node:
        if n.op_type == "Cast" and any(a.name == "to" and a.i == half for a in n.attribute):
            return "fp16"
    return "fp32"


def _cpu_ms(path: Path, image: Any, threads: int, duration: float) -> float:
    from simplehand_deploy.ort import make_session
    from simplehand_deploy.timing import stats, time_host

    sess = make_session(path, threads=threads)
    feed = {"image": image}
    return stats(time_host(lambda: sess.run(None, feed), duration=duration, iterations=10, warmup=0.3))[
        "latency_p50_ms"]


def _variants(method: str, max_drift_mm: float, qat: bool = True, modelopt: bool = True) -> list[dict[str, Any]]:
    ours = [("ours dense", {"placement": "dense"}), ("ours all", {"placement": "all"}),
            ("ours matched", {"placement": "matched"}),
            ("ours all+repair", {"placement": "all", "max_drift_mm": max_drift_mm}),
            ("ours all scale-search", {"placement": "all", "scale_search": True})]
    rows = [{"variant": n, "quantizer": "ort", "method": method, **kw} for n, kw in ours]
    if method != "entropy":  # ours with ModelOpt's default calibration too
        rows += [{"variant": f"ours {p} entropy", "quantizer": "ort", "method": "entropy", "placement": p}
                 for p in ("dense", "all")]
        rows.append({"variant": "ours all entropy scale-search", "quantizer": "ort", "method": "entropy",
                     "placement": "all", "scale_search": True})
    # Diagnostic (MAC share): ModelOpt's extra layer, the vertex head's token upsample, quantised too,
    # with the activation-by-activation attention MatMuls of the token regressor kept float; scale search on.
    rows.append({"variant": "ours all+upsample, attention float, scale-search", "quantizer": "ort",
                 "method": "entropy", "placement": "all", "scale_search": True, "int8_upsample": True,
                 "exclude_attention": True, "diagnostic": True})
    if qat:  # one fine-tune per placement exports both targets (`simplehand-deploy qat`)
        rows += [{"variant": f"qat {p} {t}", "quantizer": "qat", "method": "minmax", "placement": p, "target": t}
                 for p in QAT_PLACEMENTS for t in ("trt10", "trt8")]
    if not modelopt:
        return rows
    for m, mo_name in (("minmax", "max"), ("entropy", "entropy")):
        for high in ("fp32", "fp16"):
            rows.append({"variant": f"modelopt {mo_name} {high}", "quantizer": "modelopt", "method": m,
                         "high_precision": high})
    # Diagnostic, never part of the goal: ModelOpt told to keep float what our `dense` placement keeps float.
    # Same placement, other quantiser: separates what placement does from what calibration does.
    rows.append({"variant": "modelopt entropy fp16, dense exclusions", "quantizer": "modelopt", "method": "entropy",
                 "high_precision": "fp16", "exclude_dense": True, "diagnostic": True})
    return rows


def _dense_exclusions(fp32: Path) -> list[str]:
    """The weighted nodes our `dense` placement keeps float (`precision.qdq.float_nodes`, the one definition)."""
    from simplehand_deploy.export import load_onnx
    from simplehand_deploy.precision.graph import INT8_OPS
    from simplehand_deploy.precision.qdq import float_nodes

    g = load_onnx(fp32).graph
    return sorted(float_nodes(g, "dense") & {n.name for n in g.node if n.op_type in INT8_OPS})


def _attention_matmuls(fp32: Path) -> list[str]:
    """The token regressor's MatMuls that multiply two activations (attention scores and attention x values)."""
    from simplehand_deploy.export import load_onnx
    from simplehand_deploy.precision.graph import activation_matmuls, sensitive_nodes

    g = load_onnx(fp32).graph
    return sorted(activation_matmuls(g, sensitive_nodes(g)["token_regressor"]))


def _selected(name: str, variants: str | None) -> bool:
    """--variants: keep a variant named exactly, or starting with an item that ends in '*' ('qat all*')."""
    if not variants:
        return True
    items = [x.strip() for x in variants.split(",") if x.strip()]
    return any(name == x or (x.endswith("*") and name.startswith(x[:-1])) for x in items)


def _qat_paths(work: Path, tag: str, placement: str) -> dict[str, Path]:
    out = work / f"{tag}-qat-{placement}.onnx"
    return {"trt10": out, "trt8": out.with_suffix(".trt8.onnx")}


def _qat(v: dict[str, Any], qat: dict[str, Any], calib: Path, work: Path, tag: str) -> float | None:
    """Fine-tune once per placement (both targets); None when both artifacts are already there from this run or a
    reusable earlier one (same teacher, data and recipe)."""
    from simplehand_deploy.artifact import OnnxArtifact
    from simplehand_deploy.fileio import sha256_file
    from simplehand_deploy.precision.qat import QatConfig, run_qat

    paths = _qat_paths(work, tag, v["placement"])
    teacher = sha256_file(qat["checkpoint"])

    def fresh(p: Path) -> bool:
        art = OnnxArtifact.read_or_none(p) if p.is_file() else None
        rec = (art.int8.extra or {}).get("qat") if art is not None and art.int8 is not None else None
        return bool(rec) and rec["teacher_sha256"] == teacher and rec["steps"] == qat["steps"] and (
            art.onnx_sha256 == sha256_file(p)) and rec["lr"] == qat["lr"] and (
            p in qat["made"] or qat["reuse"])

    if all(fresh(p) for p in paths.values()):
        return None
    t0 = time.perf_counter()
    result = run_qat(QatConfig(checkpoint=qat["checkpoint"], config="tiny", calib=calib, data=qat["data"],
                               out=paths["trt10"], placement=v["placement"], steps=qat["steps"], lr=qat["lr"],
                               progress=False),
                     on_eval=lambda h: print(f"  qat {v['placement']}: {h}", file=sys.stderr, flush=True))
    print("  " + " | ".join(result.lines()), file=sys.stderr)
    qat["made"] |= set(paths.values())
    return time.perf_counter() - t0


def _quantise(v: dict[str, Any], fp32: Path, calib: Path, out: Path) -> float:
    from simplehand_deploy.precision import quantize_int8
    from simplehand_deploy.precision.modelopt import quantize_modelopt

    t0 = time.perf_counter()
    if v["quantizer"] == "modelopt":
        quantize_modelopt(fp32, calib, out, method=v["method"], high_precision=v["high_precision"],
                          calibration_eps=["cpu"], exclude=_dense_exclusions(fp32) if v.get("exclude_dense") else None,
                          progress=False)
    else:
        quantize_int8(fp32, calib, out, method=v["method"], placement=v["placement"],
                      max_drift_mm=v.get("max_drift_mm"), scale_search=bool(v.get("scale_search")),
                      int8_upsample=bool(v.get("int8_upsample")),
                      exclude=_attention_matmuls(fp32) if v.get("exclude_attention") else None, progress=False)
    return time.perf_counter() - t0


def _reusable(out: Path, fp32: Path, calib: Path) -> bool:
    """--reuse: a graph this preset already made from the same FP32 graph and calibration set."""
    from simplehand_deploy.artifact import OnnxArtifact
    from simplehand_deploy.calibration import load_calibration_set
    from simplehand_deploy.fileio import sha256_file

    art = OnnxArtifact.read_or_none(out) if out.is_file() else None
    if art is None or art.int8 is None:
        return False
    crops = (art.int8.calibration or {}).get("fingerprint")
    return (art.source_sha256 == sha256_file(fp32) and art.onnx_sha256 == sha256_file(out)
            and crops == load_calibration_set(calib).fingerprint)


def _measure(paths: dict[str, Path], held_out: Path, model: Any) -> tuple[dict[str, dict], dict[str, Any]]:
    from simplehand_deploy.drift import measure_drift

    per_vertex: dict[str, Any] = {}
    df = measure_drift(list(paths.values()), held_out, model=model, per_vertex=per_vertex)
    rows = dict(zip(paths, df.iter_rows(named=True), strict=True))
    return rows, {name: per_vertex[str(p)] for name, p in paths.items()}


def bootstrap_ci(per_crop: Any, n: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the mean over the held-out crops (percentile method, resampling crops)."""
    import numpy as np

    x = np.asarray(per_crop, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n, len(x)))
    means = x[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _per_crop_drift(paths: dict[str, Path], held_out: Path, model: Any) -> dict[str, Any]:
    """Mean vertex drift (mm) of each crop, per graph, against PyTorch FP32 eager (what the interval resamples)."""
    from simplehand_deploy.calibration import load_calibration_set
    from simplehand_deploy.drift import eager_reference, vertex_drift_mm
    from simplehand_deploy.ort import make_session, run

    images = load_calibration_set(held_out).images
    ref = eager_reference(model, images)
    return {name: vertex_drift_mm(ref, run(make_session(p), images)).mean(axis=1) for name, p in paths.items()}


def run_main_table(args: argparse.Namespace, model: Any, fp32: Path, calib: Path, held_out: Path,
                   common: dict[str, Any], tag: str, qat: dict[str, Any] | None = None
                   ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import numpy as np

    from simplehand_deploy.artifact import OnnxArtifact
    from simplehand_deploy.env import slug
    from simplehand_deploy.precision.macs import int8_mac_share, qdq_count

    paths: dict[str, Path] = {"fp32": fp32}
    info: dict[str, dict[str, Any]] = {"fp32": {"variant": "fp32", "quantizer": "", "method": ""}}
    failed = []
    for v in _variants(args.method, args.max_drift_mm, qat=args.qat_steps > 0 and qat is not None,
                       modelopt=args.modelopt_from is None):
        if not _selected(v["variant"], args.variants):
            continue
        out = args.work / f"{tag}-{slug(v['variant'])}.onnx"
        try:
            if v["quantizer"] == "qat":
                assert qat is not None
                out = _qat_paths(args.work, tag, v["placement"])[v["target"]]
                secs = _qat(v, qat, calib, args.work, tag)
            else:
                secs = None if args.reuse and _reusable(out, fp32, calib) else _quantise(v, fp32, calib, out)
        except Exception as exc:  # a repair that misses its budget, a ModelOpt crash: a row saying so
            print(f"  {v['variant']} failed: {exc}", file=sys.stderr)
            failed.append({**common, "runner": "onnxruntime", "precision": "int8", "measurement": "peers",
                           "status": f"error: {type(exc).__name__}: {exc}"[:300], "variant": v["variant"],
                           "quantizer": v["quantizer"], "method": v["method"]})
            continue
        paths[v["variant"]] = out
        recipe = OnnxArtifact.read(out).int8
        info[v["variant"]] = {**v, "quantize_s": secs, "placement": recipe.placement if recipe else None,
                              "int8_target": recipe.target if recipe else None,
                              "versions": recipe.versions if recipe else None}
        print(f"  quantised {v['variant']} ({'reused' if secs is None else f'{secs:.0f} s'})", file=sys.stderr)
    drift, per_vertex = _measure(paths, held_out, model)
    per_crop = _per_crop_drift(paths, held_out, model)
    image = np.load(held_out / "images.npy")[:1]
    rows = []
    for name, path in paths.items():
        d = drift[name]
        meta = info[name]
        lo, hi = bootstrap_ci(per_crop[name])
        rows.append({**common, "runner": "onnxruntime", "precision": d["precision"], "measurement": "peers",
                     "status": "ok", "artifact": str(path), "variant": name, "quantizer": meta["quantizer"],
                     "method": meta["method"], "placement": meta.get("placement"),
                     "diagnostic": bool(meta.get("diagnostic")),
                     "int8_target": meta.get("int8_target"), "remainder_dtype": _remainder(path),
                     "int8_mac_share": int8_mac_share(path) or 0.0, "qdq_nodes": qdq_count(path),
                     "cpu_fake_quant_ms": _cpu_ms(path, image, args.threads, args.duration),
                     "quantize_s": meta.get("quantize_s"), "calib_num": args.calib_num,
                     "vertex_drift_mean_ci95_lo_mm": lo, "vertex_drift_mean_ci95_hi_mm": hi,
                     **{k: d.get(k) for k in d if k.startswith(("vertex_drift", "uv_drift", "pa_mp", "num_samples",
                                                               "joint_drift", "eager_pa", "f5", "f15"))}})
    return rows + failed, per_vertex


def run_sweep(args: argparse.Namespace, model: Any, fp32: Path, held_out: Path, common: dict[str, Any]
              ) -> list[dict[str, Any]]:
    from simplehand_deploy.calibration import ensure_calibration_set
    from simplehand_deploy.env import slug
    from simplehand_deploy.precision.macs import int8_mac_share

    keep = ("ours dense", "ours all", "modelopt max fp16", "modelopt entropy fp16")
    variants = [v for v in _variants(args.method, args.max_drift_mm) if v["variant"] in keep]
    rows = []
    for n in args.calib_nums:
        calib = ensure_calibration_set(args.work / f"calib-{n}", synthetic=True, num=n, seed=1, progress=False)
        paths = {}
        for v in variants:
            out = args.work / f"sweep{n}-{slug(v['variant'])}.onnx"
            _quantise(v, fp32, calib, out)
            paths[v["variant"]] = out
        drift, _ = _measure(paths, held_out, model)
        for name, path in paths.items():
            d = drift[name]
            rows.append({**common, "runner": "onnxruntime", "precision": "int8", "measurement": "calib_sweep",
                         "status": "ok", "artifact": str(path), "variant": name, "calib_num": n,
                         "int8_mac_share": int8_mac_share(path) or 0.0,
                         **{k: d.get(k) for k in ("num_samples", "vertex_drift_mean_mm", "vertex_drift_p99_mm",
                                                  "uv_drift_mean_px", "pa_mpvpe_mm")}})
        print(f"  calibration sweep: {n} crops done", file=sys.stderr)
    return rows


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The goal on the main table: ours (dense or all) <= half the best ModelOpt drift, share >= top - 1 pt."""
    mo = [r for r in rows if r["quantizer"] == "modelopt" and not r.get("diagnostic")]
    if not mo:
        return {"met": False, "why": "no ModelOpt variant was measured", "ours": {}}
    best = min(mo, key=lambda r: r["vertex_drift_mean_mm"])
    top_share = max(r["int8_mac_share"] for r in mo)
    checks = {}
    for r in rows:
        if r["variant"] in OURS_GOAL:
            checks[r["variant"]] = {
                "vertex_drift_mean_mm": r["vertex_drift_mean_mm"], "int8_mac_share": r["int8_mac_share"],
                "drift_ratio_to_best_modelopt": r["vertex_drift_mean_mm"] / best["vertex_drift_mean_mm"],
                "drift_ok": r["vertex_drift_mean_mm"] <= 0.5 * best["vertex_drift_mean_mm"],
                "share_ok": r["int8_mac_share"] >= top_share - 0.01}
    met = any(c["drift_ok"] and c["share_ok"] for c in checks.values())
    qat = {}
    for r in rows:
        if r["quantizer"] == "qat":
            qat[r["variant"]] = {
                "vertex_drift_mean_mm": r["vertex_drift_mean_mm"], "int8_mac_share": r["int8_mac_share"],
                "drift_ratio_to_best_modelopt": r["vertex_drift_mean_mm"] / best["vertex_drift_mean_mm"],
                "drift_ok": r["vertex_drift_mean_mm"] <= 0.5 * best["vertex_drift_mean_mm"],
                "share_ok": r["int8_mac_share"] >= top_share - QAT_SHARE_SLACK}
    dense = [c["vertex_drift_mean_mm"] for n, c in qat.items() if n.startswith("qat dense")]
    qat_met = (any(c["drift_ok"] and c["share_ok"] for c in qat.values()) and bool(dense)
               and max(dense) <= QAT_DENSE_MM)
    return {"met": met, "best_modelopt": best["variant"], "best_modelopt_drift_mm": best["vertex_drift_mean_mm"],
            "highest_modelopt_share": top_share, "ours": checks, "qat": qat, "qat_met": qat_met,
            "qat_dense_max_mm": max(dense) if dense else None}


def table_md(rows: list[dict[str, Any]]) -> str:
    from simplehand_deploy.bench.results import markdown_rows

    def cells(r: dict[str, Any]) -> tuple[Any, ...]:
        if r["status"] != "ok":
            return (r["variant"], r["status"], *[""] * 8)
        lo, hi = r.get("vertex_drift_mean_ci95_lo_mm"), r.get("vertex_drift_mean_ci95_hi_mm")
        ci = f"{lo:.2f}–{hi:.2f}" if lo is not None and hi is not None else "–"
        cpu = r.get("cpu_fake_quant_ms")
        return (r["variant"] + (" (reused)" if r.get("reused_from") else ""), r["remainder_dtype"],
                f"{100 * r['int8_mac_share']:.1f}%", r["qdq_nodes"], f"{r['vertex_drift_mean_mm']:.3f}", ci,
                f"{r['vertex_drift_p99_mm']:.3f}", f"{r['uv_drift_mean_px']:.3f}", f"{r['pa_mpvpe_mm']:.2f}",
                "–" if cpu is None else f"{cpu:.2f}")

    return markdown_rows(("variant", "remainder", "INT8 MAC share", "Q/DQ nodes", "held-out drift mean (mm)",
                          "95% CI (mm)", "p99 (mm)", "uv (px)", "PA-MPVPE (mm)", "fake-quant CPU p50 (ms)"),
                         map(cells, rows))


def plot_frontier(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for who, marker, color in (("ort", "o", "tab:blue"), ("modelopt", "s", "tab:orange"), ("qat", "^", "tab:green")):
        pts = [r for r in rows if r["quantizer"] == who]
        for diag in (False, True):
            sel = [r for r in pts if bool(r.get("diagnostic")) == diag]
            if not sel:
                continue
            label = {"ort": "ours PTQ (--quantizer ort)", "modelopt": "ModelOpt 0.47 ONNX PTQ",
                     "qat": "ours QAT (simplehand-deploy qat)"}[who]
            ax.scatter([100 * r["int8_mac_share"] for r in sel], [r["vertex_drift_mean_mm"] for r in sel],
                       marker=marker, s=55, color="none" if diag else color, edgecolors=color,
                       label=(f"{label}, our dense exclusions (diagnostic)" if who == "modelopt" else
                              f"{label}, diagnostic") if diag else label)
        stacked = [r for r in pts if who == "modelopt" and not r.get("diagnostic")]
        if stacked:  # ModelOpt's variants share one MAC share: one label block, highest drift first
            stacked.sort(key=lambda r: -r["vertex_drift_mean_mm"])
            top = stacked[0]
            ax.annotate("\n".join(f"{r['variant'].replace('modelopt ', 'MO ')}: {r['vertex_drift_mean_mm']:.2f} mm"
                                   for r in stacked),
                        (100 * top["int8_mac_share"], top["vertex_drift_mean_mm"]), fontsize=7, ha="right", va="top",
                        xytext=(-8, 0), textcoords="offset points")
        for r in pts:
            if r in stacked:
                continue
            ax.annotate(r["variant"].replace("modelopt ", "MO ").replace("ours ", "").replace(", dense exclusions",
                                                                                              " (dense excl.)"),
                        (100 * r["int8_mac_share"], r["vertex_drift_mean_mm"]), fontsize=7, ha="right",
                        xytext=(-6, -10 if r.get("diagnostic") else 4), textcoords="offset points")
    ax.set(xlabel="INT8 share of weighted-layer MACs (%, read from the graph)",
           ylabel="held-out mean vertex drift vs FP32 eager (mm)", title=title)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sweep(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = list(dict.fromkeys(r["variant"] for r in rows))
    nums = sorted({r["calib_num"] for r in rows})
    for name in names:
        pts = sorted((r for r in rows if r["variant"] == name), key=lambda r: r["calib_num"])
        ax.plot([r["calib_num"] for r in pts], [r["vertex_drift_mean_mm"] for r in pts], marker="o",
                ls="-" if name.startswith("ours") else "--", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(nums)
    ax.set_xticklabels([str(n) for n in nums])
    ax.set_xticks([], minor=True)
    ax.set(xlabel="calibration crops", ylabel="held-out mean vertex drift (mm)", title=title)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "int8-peers", help="checkpoint, sets, graphs")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="results root")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--method", default="minmax", help="our calibration method (ModelOpt runs max and entropy)")
    ap.add_argument("--max-drift-mm", type=float, default=1.0, help="budget of ours `all` + sensitivity repair")
    ap.add_argument("--calib-num", type=int, default=32)
    ap.add_argument("--held-out-num", type=int, default=64)
    ap.add_argument("--calib-nums", default="16,32,64,128,256", help="calibration-size sweep")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (torch and ORT) for the CPU times")
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per CPU timing")
    ap.add_argument("--reuse", action="store_true", help="keep graphs made earlier from the same FP32 graph and crops")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="tiny weights to use instead of training the recipe's (recorded in preset.json)")
    ap.add_argument("--fastvit-checkpoint", type=Path, default=None,
                    help="also run the main table on fastvit_ma36 with these weights")
    ap.add_argument("--qat-steps", type=int, default=600, help="QAT fine-tuning steps per placement (0: no QAT rows)")
    ap.add_argument("--qat-lr", type=float, default=1e-4, help="QAT weight learning rate")
    ap.add_argument("--qat-data-num", type=int, default=2048, help="QAT fine-tuning crops (seed 5)")
    ap.add_argument("--variants", default=None,
                    help="comma-separated variants to run (a name, or a prefix ending in '*': 'qat all*'); "
                         "default: all of them")
    ap.add_argument("--modelopt-from", type=Path, default=None,
                    help="a committed int8-peers results folder: take the ModelOpt rows from it instead of running "
                         "ModelOpt (no .venv-modelopt needed); refused unless its FP32 weights are these")
    args = ap.parse_args(argv)
    args.calib_nums = [int(x) for x in args.calib_nums.split(",") if x.strip()]
    import torch

    torch.set_num_threads(args.threads)
    from simplehand_deploy.bench.accuracy import plot_drift_map
    from simplehand_deploy.bench.results import write_results
    from simplehand_deploy.calibration import ensure_calibration_set, load_calibration_set
    from simplehand_deploy.checkpoint import load_checkpoint
    from simplehand_deploy.drift import HandRegions
    from simplehand_deploy.env import fingerprint, slug
    from simplehand_deploy.export import export_onnx
    from simplehand_deploy.testing import int8_recipe_checkpoint

    venv = _ensure_modelopt() if args.modelopt_from is None else f"not used: ModelOpt rows from {args.modelopt_from}"
    args.work.mkdir(parents=True, exist_ok=True)
    env = fingerprint()
    t_start = time.time()
    ckpt = args.checkpoint or int8_recipe_checkpoint(args.work, args.steps)
    qat_data = ensure_calibration_set(args.work / f"qat-data-{args.qat_data_num}", synthetic=True,
                                      num=args.qat_data_num, seed=5, progress=False) if args.qat_steps > 0 else None
    calib = ensure_calibration_set(args.work / f"calib-{args.calib_num}", synthetic=True, num=args.calib_num, seed=1,
                                   progress=False)
    held_out = ensure_calibration_set(args.work / "held-out", synthetic=True, num=args.held_out_num, seed=777,
                                      progress=False)
    models = [("tiny", ckpt)] + ([("fastvit_ma36", args.fastvit_checkpoint)] if args.fastvit_checkpoint else [])
    folder = args.out / f"{env['run_id']}-int8-peers"
    folder.mkdir(parents=True, exist_ok=True)
    all_rows: list[dict[str, Any]] = []
    recipe = {**RECIPE, "train": f"not run: weights from --checkpoint {args.checkpoint}"} if args.checkpoint else RECIPE
    report: dict[str, Any] = {"recipe": recipe, "args": {k: str(v) for k, v in vars(args).items()},
                              "modelopt_venv": venv, "models": {}}
    hand = HandRegions.from_labels(load_calibration_set(held_out).vertices, load_calibration_set(held_out).xyz)
    md = []
    for config, weights in models:
        model, info = load_checkpoint(weights, config)
        fp32 = args.work / f"{config}-fp32.onnx"
        if not (args.reuse and fp32.is_file()):
            fp32 = export_onnx(model, fp32, info=info, progress=False).path
        model, _ = load_checkpoint(weights, config, fused=True)  # the reference: fused eager FP32
        common = {"config": info.config, "weights": info.short, "cpu_threads": args.threads, **env}
        print(f"{config}: main table", file=sys.stderr)
        qat = ({"checkpoint": weights, "data": qat_data, "steps": args.qat_steps, "lr": args.qat_lr, "made": set(),
                "reuse": args.reuse} if config == "tiny" and qat_data is not None else None)
        rows, per_vertex = run_main_table(args, model, fp32, calib, held_out, common, config, qat)
        if args.modelopt_from is not None:
            rows += reused_modelopt_rows(args.modelopt_from, config, info.short)
        all_rows += rows
        quantised = [r for r in rows if r["quantizer"] and r["status"] == "ok"]
        v = verdict(quantised)
        report["models"][config] = v
        title = (f"{config} ({info.short}): held-out drift vs INT8 MAC share\n{args.held_out_num} held-out crops, "
                 f"{args.calib_num} calibration crops, ORT CPU fake-quant")
        plot_frontier(quantised, folder / f"drift_vs_mac_share{'' if config == 'tiny' else '_' + config}.png", title)
        if hand is not None and "why" not in v:
            for name in ("ours dense", "ours all", v["best_modelopt"]):
                if name not in per_vertex:  # a reused row: its per-vertex drift lives in its own folder
                    continue
                plot_drift_map(hand.mean_vertices, per_vertex[name],
                               folder / f"drift_map_{config}_{slug(name)}.png",
                               f"{config}: {name}, held-out mean vertex drift vs FP32 eager", hand.regions)
        if "why" in v:
            raise SystemExit(f"error: {v['why']} (see the status column)")
        weights_note = (f"Weights: `{weights}` (given with --checkpoint; not the recipe's training run).\n\n"
                        if config == "tiny" and args.checkpoint else "")
        md.append(f"### {config} ({info.short})\n\n" + weights_note + table_md(rows) +
                  f"\nGoal (ours default or `all` <= half the best ModelOpt drift, share >= highest ModelOpt share "
                  f"- 1 pt): **{'met' if v['met'] else 'NOT met'}** (best ModelOpt: {v['best_modelopt']}, "
                  f"{v['best_modelopt_drift_mm']:.3f} mm; highest ModelOpt share "
                  f"{100 * v['highest_modelopt_share']:.1f}%)\n" + qat_goal_md(v))
        if config == "tiny" and not args.no_sweep:
            print("tiny: calibration-size sweep", file=sys.stderr)
            sweep = run_sweep(args, model, fp32, held_out, common)
            all_rows += sweep
            plot_sweep(sweep, folder / "drift_vs_calib_num.png",
                       f"tiny: held-out drift vs calibration crops ({args.held_out_num} held-out crops)")
            md.append("### calibration-size sweep (tiny, held-out mean vertex drift, mm)\n\n"
                      + sweep_md(sweep))
    import polars as pl

    write_results(pl.DataFrame(all_rows, infer_schema_length=None), folder, env=env)
    (folder / "peers.md").write_text("\n".join(md))
    report["seconds"] = round(time.time() - t_start)
    (folder / "preset.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print("\n".join(md))
    print(f"results: {folder}")
    met = all(v["met"] or v.get("qat_met") for v in report["models"].values())
    if not met:
        print("goal NOT met (see preset.json)", file=sys.stderr)
    return 0 if met else 1


def qat_goal_md(v: dict[str, Any]) -> str:
    if not v.get("qat"):
        return ""
    return (f"\nQAT goal (a QAT artifact with share >= highest ModelOpt share - {100 * QAT_SHARE_SLACK:.1f} pt and "
            f"<= half the best ModelOpt drift, and QAT `dense` <= {QAT_DENSE_MM} mm): "
            f"**{'met' if v['qat_met'] else 'NOT met'}** (half the best ModelOpt: "
            f"{0.5 * v['best_modelopt_drift_mm']:.3f} mm; QAT dense: {v['qat_dense_max_mm']:.3f} mm)\n")


def reused_modelopt_rows(folder: Path, config: str, weights: str) -> list[dict[str, Any]]:
    """The ModelOpt rows of a committed int8-peers results folder, measured on the same FP32 weights (short sha)
    and held-out crops; refused when the weights differ (drift against other weights means nothing here)."""
    from simplehand_deploy.bench.results import read_results

    df = read_results(folder)
    rows = [r for r in df.to_dicts() if r.get("measurement") == "peers" and r.get("quantizer") == "modelopt"
            and r.get("config") == config and r.get("status") == "ok"]
    if not rows:
        raise SystemExit(f"error: --modelopt-from {folder}: no ModelOpt rows for {config}")
    other = {r["weights"] for r in rows} - {weights}
    if other:
        raise SystemExit(f"error: --modelopt-from {folder}: its rows were measured on weights {sorted(other)}, not "
                         f"{weights}; run ModelOpt here (make modelopt) or train the recipe's checkpoint")
    return [{**r, "reused_from": str(folder)} for r in rows]


def sweep_md(rows: list[dict[str, Any]]) -> str:
    from simplehand_deploy.bench.results import markdown_rows

    nums = sorted({r["calib_num"] for r in rows})
    names = list(dict.fromkeys(r["variant"] for r in rows))
    val = {(r["variant"], r["calib_num"]): r["vertex_drift_mean_mm"] for r in rows}
    return markdown_rows(("variant", *(f"{n} crops" for n in nums)),
                         ((name, *(f"{val[(name, n)]:.3f}" for n in nums)) for name in names))


if __name__ == "__main__":
    sys.exit(main())
