"""Orchestration behind `simplehand-bench`: resolve runners, sweep batch sizes, attach env, write results.

A runner that fails (at construction or mid-sweep) becomes a status row, never a crash: a sweep
over a fleet of artifacts should report what it could measure and say what it could not. A runner
that cannot run on this machine at all (TensorRT absent, no CUDA) is one row with status
`skipped: <reason>` and a null batch_size, not an error per batch size.

Each runner is opened once, measured at every batch size, and closed (its memory freed) before the
next one opens. Speed-ups are against *fused* torch eager at the same batch size on the same device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import UsageError
from .results import TENSORRT, conform

CPU_BATCHES = (1, 2, 4, 8)
GPU_BATCHES = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class Spec:
    """A runner to build lazily: (runner name, precision label, artifact path, factory)."""

    runner: str
    precision: str
    artifact: str
    make: Callable[[], Any]


def parse_batches(text: str | None, on_gpu: bool) -> list[int]:
    if not text:
        return list(GPU_BATCHES if on_gpu else CPU_BATCHES)
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--batch-sizes {text!r}: expected a comma list of integers, e.g. 1,2,4,8") from None
    bad = [v for v in values if v <= 0]
    if bad or not values:
        raise UsageError(f"--batch-sizes {text!r}: batch sizes must be positive integers")
    return values


def parse_runners(text: str | None) -> list[str]:
    from ..runners import KNOWN

    names = [r.strip() for r in (text or "torch,onnxruntime,tensorrt").split(",") if r.strip()]
    unknown = [r for r in names if r not in KNOWN]
    if unknown:
        raise UsageError(f"--runners: unknown runner(s) {', '.join(unknown)}; choose from {', '.join(KNOWN)}")
    return names


def find_artifacts(engines_dir: Path, config: str, weights: str) -> tuple[list[Path], list[Path]]:
    """ONNX artifacts for this config+weights, and every TensorRT plan, found in `engines_dir`."""
    if not engines_dir.is_dir():
        return [], []
    onnx = sorted(engines_dir.glob(f"simplehand-{config}-{weights}-*.onnx"))
    plans = sorted(engines_dir.glob("*.plan"))
    return onnx, plans


def build_specs(runners: Sequence[str], *, model: Any, info: Any, onnx: Sequence[Path], plans: Sequence[Path],
                engines_dir: Path, quiet: bool, threads: int | None = None, check_plans: bool = True,
                buffers: str = "auto") -> list[Spec]:
    """Runner specs; TensorRT plans go through `select_plans` (`check_plans=False`: plans the user named
    are not checked against the current ONNX artifacts, only against this machine) and run on the
    `buffers` backend."""
    from ..runners import get_runner

    names = {"torch": "torch_eager", "torch_unfused": "torch_unfused", "torch_compile": "torch_compile"}
    for p in [*onnx, *plans]:
        if not Path(p).is_file():
            raise UsageError(f"artifact {p}: no such file")
    specs: list[Spec] = []
    for name in runners:
        if name in names:
            specs.append(Spec(names[name], "fp32", "", partial(get_runner, name, model=model, threads=threads)))
        elif name == "onnxruntime":
            paths = list(onnx)
            if not paths:
                paths = [_export_default(model, info, engines_dir, quiet)]
            for p in paths:
                specs.append(Spec("onnxruntime", _precision_of(p), str(p),
                                  partial(get_runner, "onnxruntime", onnx=p, threads=threads)))
        elif name == "tensorrt":
            for p, precision, reason in select_plans(plans, onnx if check_plans else None):
                if reason is None:
                    specs.append(Spec("tensorrt", precision, str(p),
                                      partial(get_runner, "tensorrt", plan=p, buffers=buffers)))
                else:
                    specs.append(Spec("tensorrt", precision, str(p), partial(_unavailable, reason)))
            if not plans:
                specs.append(Spec("tensorrt", "", "", _no_plans))
    return specs


def select_plans(plans: Sequence[Path], onnx: Sequence[Path] | None) -> list[tuple[Path, str, str | None]]:
    """(plan, precision, None | why it is skipped) for each plan: only plans whose sidecar matches a current
    ONNX artifact (by sha256) and this machine (TensorRT version, GPU, SM, SM count, memory, board) run."""
    from .._deps import tensorrt_or_none
    from ..artifact import EngineArtifact
    from ..fileio import sha256_file
    from ..trt.cache import machine_key_fields, plan_skip_reason

    machine: dict[str, Any] = {}
    trt = tensorrt_or_none()
    if trt is not None and plans:
        from ..env import require_cuda_device

        try:
            machine = machine_key_fields(str(trt.__version__), require_cuda_device())
        except UsageError:
            machine = {}  # no GPU: opening the runner says so
    shas = {sha256_file(p) for p in onnx} if onnx is not None else None
    out = []
    for p in plans:
        art = EngineArtifact.read_or_none(p)
        precision = str(art.precision or "") if art is not None else ""
        out.append((Path(p), precision, plan_skip_reason(art, onnx_shas=shas, machine=machine)))
    return out


def _unavailable(reason: str) -> Any:
    from ..runners import Unavailable

    raise Unavailable(reason)


def trtexec_lines(df: pl.DataFrame) -> list[str]:
    """The equivalent trtexec command of each measured TensorRT row (printed under the table)."""
    if "trtexec_command" not in df.columns:
        return []
    rows = df.filter(pl.col("trtexec_command").is_not_null() & (pl.col("status") == "ok"))
    return [f"{r['precision']} b{r['batch_size']}: {r['trtexec_command']}" for r in rows.iter_rows(named=True)]


def _no_plans() -> Any:
    from .._deps import tensorrt_or_none
    from ..runners import Unavailable

    why = "TensorRT is not installed" if tensorrt_or_none() is None else "no .plan in engines/ (run `make engine`)"
    raise Unavailable(why)


def _precision_of(path: Path) -> str:
    for p in ("fp32", "fp16", "int8"):
        if str(path).endswith(f"-{p}.onnx"):
            return p
    from ..ort import graph_kind

    return graph_kind(path)


def _export_default(model: Any, info: Any, engines_dir: Path, quiet: bool) -> Path:
    """No ONNX artifact for this config/weights yet: export the FP32 one (cached in engines/)."""
    import copy

    from ..export import artifact_name, export_onnx

    path = engines_dir / artifact_name(info.config, info.short, "fp32")
    if not path.is_file():
        export_onnx(copy.deepcopy(model), path, info=info, progress=not quiet)
    return path


def _row(spec: Spec, runner: Any | None, batch: int | None, measurement: str, status: str, common: dict) -> dict:
    desc = runner.describe() if runner is not None else {}
    threads = getattr(runner, "threads", None)
    return {"runner": spec.runner, "precision": getattr(runner, "precision", spec.precision) or spec.precision,
            "batch_size": batch, "measurement": measurement, "status": status, "artifact": spec.artifact,
            "artifact_sha256": desc.get("artifact_sha256", ""), "fused": desc.get("fused"),
            "timing_scope": desc.get("timing_scope", ""), "cuda_graphs": desc.get("cuda_graphs", False),
            "cpu_threads": threads() if callable(threads) else None,
            **{k: desc[k] for k in TENSORRT if k in desc}, **common}


def _error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"error: {type(exc).__name__}: {text[0][:160] if text else ''}"


def _skipped(spec: Spec, measurement: str, exc: BaseException, common: dict) -> dict:
    """The one row of a runner that cannot run on this machine: `skipped: <reason>`, no batch size."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return _row(spec, None, None, measurement, f"skipped: {reason}", common)


def latency_sweep(specs: Sequence[Spec], batches: Sequence[int], *, duration: float, iterations: int, warmup: float,
                  common: dict, progress: bool = True) -> pl.DataFrame:
    from ..progress import track
    from ..runners import Unavailable
    from ..timing import measure

    rows: list[dict] = []
    work = [(s, b) for s in specs for b in batches]
    current: tuple[int, Any] | None = None  # (spec id, open runner): one runner open at a time
    done: dict[int, str] = {}  # spec id -> status for specs that could not be built/opened
    try:
        for spec, batch in track(work, "latency sweep", progress):
            key = id(spec)
            if key in done:
                if done[key] != "skipped":
                    rows.append(_row(spec, None, batch, "latency", done[key], common))
                continue
            if current is None or current[0] != key:
                if current is not None:
                    current[1].close()
                    current = None
                try:
                    runner = spec.make()
                    runner.open()
                except Unavailable as exc:
                    done[key] = "skipped"
                    rows.append(_skipped(spec, "latency", exc, common))
                    continue
                except Exception as exc:  # a runner failing to build: one error row per batch size
                    done[key] = _error(exc)
                    rows.append(_row(spec, None, batch, "latency", done[key], common))
                    continue
                current = (key, runner)
            runner = current[1]
            try:
                timing = measure(runner, batch, duration=duration, iterations=iterations, warmup=warmup)
                rows.append({**_row(spec, runner, batch, "latency", "ok", common), **timing})  # after prepare
            except Exception as exc:  # a runner failing mid-sweep becomes a status row
                rows.append(_row(spec, runner, batch, "latency", _error(exc), common))
    finally:
        if current is not None:
            current[1].close()
    return add_speedup(conform(rows))


def add_speedup(df: pl.DataFrame) -> pl.DataFrame:
    """speedup_vs_eager = p50 of *fused* torch eager / p50 of the row, at the same batch size and device."""
    on = ["batch_size", "device_name"]
    eager = (df.filter((pl.col("runner") == "torch_eager") & (pl.col("fused") == True) &  # noqa: E712
                       (pl.col("status") == "ok") & (pl.col("measurement") == "latency"))
             .group_by(on).agg(pl.col("latency_p50_ms").first().alias("_eager")))
    if not len(eager):
        return df
    cols = df.columns
    return (df.join(eager, on=on, how="left")
            .with_columns((pl.col("_eager") / pl.col("latency_p50_ms")).alias("speedup_vs_eager"))
            .select(cols))


def accuracy_run(specs: Sequence[Spec], *, model: Any, calib: Path, common: dict, regressor: Any = None,
                 progress: bool = True, drift_maps: Any = None) -> pl.DataFrame:
    """Accuracy rows (`drift.accuracy_row`); `drift_maps` (a bench.accuracy.DriftMaps) collects per-vertex drift."""
    from ..calibration import load_calibration_set
    from ..drift import HandRegions, eager_reference, set_regressor
    from ..progress import track
    from .accuracy import accuracy_row, infer_all

    cal = load_calibration_set(calib)
    regressor = set_regressor(cal, regressor)
    hand = HandRegions.from_labels(cal.vertices, cal.xyz)
    if drift_maps is not None:
        drift_maps.hand = hand
    ref = eager_reference(model, cal.images)
    labels = {"uv": cal.uv, "xyz": cal.xyz, "vertices": cal.vertices}
    from ..runners import Unavailable

    rows = []
    for spec in track(list(specs), "accuracy", progress):
        try:
            with spec.make() as runner:
                out = infer_all(runner, cal.images)
                row = {**_row(spec, runner, None, "accuracy", "ok", common),
                       **accuracy_row(ref, out, labels, regressor, hand.regions if hand else None)}
                rows.append(row)
                if drift_maps is not None:
                    drift_maps.add(row["runner"], row["precision"], ref, out)
        except Unavailable as exc:
            rows.append(_skipped(spec, "accuracy", exc, common))
        except Exception as exc:
            rows.append(_row(spec, None, None, "accuracy", _error(exc), common))
    return conform(rows)


def default_out(fingerprint: dict) -> Path:
    return Path("benchmarks") / "results" / fingerprint["run_id"]


def finish(df: pl.DataFrame, out: Path | None, env: dict, *, plots: bool = True) -> Path:
    from .plots import plot_results
    from .results import write_results

    path = write_results(df, out or default_out(env), env=env)
    if plots:
        plot_results(df, path)
    return path


def render(df: pl.DataFrame, title: str) -> Any:
    """Rich table; speed-ups over eager in green (>1) or red (<1), failed rows in red."""
    from rich.markup import escape
    from rich.table import Table

    lat = "latency" in df["measurement"].to_list()
    cols = (["latency_p50_ms", "latency_p99_ms", "latency_cov", "throughput_img_s", "speedup_vs_eager"] if lat else
            ["vertex_drift_mean_mm", "vertex_drift_p99_mm", "vertex_drift_max_mm", "uv_drift_mean_px", "pa_mpvpe_mm"])
    table = Table(title=title)
    for c in ("runner", "precision", "artifact", "batch", *cols):
        table.add_column(c, justify="left" if c in ("runner", "precision", "artifact") else "right")
    for r in df.iter_rows(named=True):
        if r["status"] != "ok":
            color = "dim" if str(r["status"]).startswith("skipped") else "red"
            table.add_row(r["runner"], r["precision"] or "", Path(r["artifact"] or "").name,
                          str(r["batch_size"] or ""), f"[{color}]{escape(r['status'])}[/]", *[""] * (len(cols) - 1))
            continue
        cells = []
        for c in cols:
            v = r.get(c)
            text = "" if v is None else f"{v:.3g}" if c != "latency_cov" else f"{100 * v:.1f}%"
            if c == "speedup_vs_eager" and v is not None:
                text = f"[{'green' if v >= 1 else 'red'}]{v:.2f}x[/]"
            if c == "latency_cov" and r.get("cov_warning"):
                text = f"[yellow]{text}[/]"
            cells.append(text)
        table.add_row(r["runner"], r["precision"], escape(Path(r["artifact"] or "").name),
                      str(r["batch_size"] or ""), *cells)
    return table


def cov_warnings(df: pl.DataFrame) -> str:
    """One printed line naming the rows whose CoV is above trtexec's 2.5% (the `cov_warning` column); '' if none."""
    from ..timing import COV_WARN

    if "cov_warning" not in df.columns:
        return ""
    hit = df.filter(pl.col("cov_warning") == True)  # noqa: E712
    if not len(hit):
        return ""
    names = ", ".join(f"{r['runner']}/{r['precision']}/b{r['batch_size']} {100 * (r['latency_cov'] or 0):.0f}%"
                      for r in hit.iter_rows(named=True))
    return (f"warning: latency CoV above {100 * COV_WARN:.1f}% (trtexec's bar) in {len(hit)} row(s): {names}; "
            "the host is noisy (other load, frequency scaling, too many threads): p50 holds up, mean/p99 less so")
