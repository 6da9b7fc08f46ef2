"""A/B in one job: is artifact B slower than artifact A on this machine, now?

A stored baseline is measured minutes or months before the run it judges, and on a shared or virtual
machine the speed of the box itself moves in between: no statistic on two separate runs can tell that
from a regression. Here both artifacts stay open in one process and are timed in alternation, in ABBA
blocks (A, B, B, A: a linear drift of the machine inside a block hits both sides equally). Each block
gives one ratio B/A of the sides' p50 latency (and of their throughput); the verdict is the median of
the per-block ratios with a percentile-bootstrap 95% interval over blocks (fixed seed: the same samples
always give the same verdict). A latency row fails when the whole interval lies above `1 + tol`, a
throughput row when it lies below `1 - tol`. Contention from other processes slows both sides of a
block alike, so it widens the interval without moving it.

The statistics are pure functions over arrays (`abba_schedule`, `block_ratios`, `bootstrap_median`,
`judge`); `measure_pair` times two open runners; `run_compare` checks the pair, measures, writes the
results folder and returns a frozen `CompareReport`; the renderers (`render_table`, `to_markdown`,
`to_junit`, `failure_line`) only read that value.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from xml.etree import ElementTree as ET

import numpy as np

from ..errors import UsageError

if TYPE_CHECKING:
    import polars as pl
    from rich.table import Table

DEFAULT_ROUNDS = 8
DEFAULT_DURATION = 1.0
DEFAULT_BATCHES = "1,4"
DEFAULT_WARMUP = 0.5
BOOTSTRAP_RESAMPLES = 4000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
MIN_ITERATIONS = 3  # per sample, however short --duration is
PLAN_SUFFIXES = (".plan", ".engine")
# (metric, unit, higher_is_better): the timed rows of each batch size
TIMED_METRICS = (("latency_p50_ms", "ms", False), ("throughput_img_s", "img/s", True))

Verdict = Literal["ok", "improved", "regression"]


# ---------------------------------------------------------------------------------------------
# statistics (pure)
# ---------------------------------------------------------------------------------------------


def abba_schedule(rounds: int) -> tuple[tuple[int, str], ...]:
    """(block, side) in run order: A B B A per block, `rounds` blocks, so each side gets 2 * rounds samples."""
    if rounds < 1:
        raise UsageError(f"--rounds {rounds}: need at least 1 ABBA block (default {DEFAULT_ROUNDS})")
    return tuple((k, side) for k in range(rounds) for side in ("A", "B", "B", "A"))


def block_ratios(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """Per-block ratio B/A of one statistic (each side's value in the same block)."""
    av, bv = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if av.shape != bv.shape or av.ndim != 1 or len(av) == 0:
        raise ValueError(f"need one value per block on each side, got {av.shape} and {bv.shape}")
    if (av <= 0).any() or (bv <= 0).any():
        raise ValueError("block values must be positive")
    return bv / av


def bootstrap_median(ratios: Sequence[float] | np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(median, low, high): the median of the per-block ratios and its percentile-bootstrap interval.

    Blocks are resampled with replacement (a block, not a sample, is the unit: its two sides were
    timed under the same conditions); the interval is the central `confidence` share of the resampled
    medians. The generator is seeded, so identical ratios always give an identical interval.
    """
    r = np.asarray(ratios, dtype=np.float64)
    if r.ndim != 1 or len(r) == 0 or not np.isfinite(r).all():
        raise ValueError("need at least one finite ratio")
    rng = np.random.default_rng(seed)
    medians = np.median(r[rng.integers(0, len(r), size=(resamples, len(r)))], axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(medians, [tail, 1.0 - tail])
    return float(np.median(r)), float(low), float(high)


def judge(low: float, high: float, tol: float, *, higher_is_better: bool) -> Verdict:
    """A latency ratio regresses when its whole interval lies above 1 + tol; a throughput ratio when below 1 - tol.

    The mirror image is an improvement; anything else (the interval reaches into the tolerance band) is ok.
    """
    if higher_is_better:
        return "regression" if high < 1.0 - tol else "improved" if low > 1.0 + tol else "ok"
    return "regression" if low > 1.0 + tol else "improved" if high < 1.0 - tol else "ok"


def cov(values: Sequence[float]) -> float | None:
    """Coefficient of variation (population std / mean) of a job's values; None for fewer than two."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.std() / v.mean()) if len(v) >= 2 and v.mean() > 0 else None


# ---------------------------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SideSamples:
    """One side's samples at one batch size, in run order: per sample its p50, throughput and other-CPU share."""

    block: tuple[int, ...]
    p50_ms: tuple[float, ...]
    throughput_img_s: tuple[float, ...]
    cpu_other_pct: tuple[float | None, ...]
    iterations: tuple[int, ...]
    latencies_ms: tuple[tuple[float, ...], ...]  # every timed iteration of each sample

    def per_block(self, metric: str) -> list[float]:
        """The side's value of `metric` in each block: p50 of the block's pooled iterations, or mean throughput."""
        out = []
        for k in sorted(set(self.block)):
            idx = [i for i, b in enumerate(self.block) if b == k]
            if metric == "latency_p50_ms":
                out.append(float(np.median(np.concatenate([self.latencies_ms[i] for i in idx]))))
            else:
                out.append(float(np.mean([self.throughput_img_s[i] for i in idx])))
        return out


@dataclass(frozen=True)
class CompareRow:
    """One verdict: a timed metric at one batch size (a ratio B/A), or a drift metric (a difference in mm)."""

    metric: str
    unit: str
    batch_size: int | None
    baseline_value: float
    current_value: float
    verdict: Verdict
    ratio: float | None = None  # median of the per-block ratios B/A (timed rows)
    ratio_ci_low: float | None = None
    ratio_ci_high: float | None = None
    limit_ratio: float | None = None  # 1 + tol (latency) or 1 - tol (throughput)
    change_mm: float | None = None  # current - baseline (drift rows)
    limit_mm: float | None = None
    baseline_blocks: tuple[float, ...] = ()
    current_blocks: tuple[float, ...] = ()
    block_ratios: tuple[float, ...] = ()
    baseline_sample_p50_ms: tuple[float, ...] = ()
    current_sample_p50_ms: tuple[float, ...] = ()
    cpu_other_pct: float | None = None  # mean over the row's samples
    cpu_other_max_pct: float | None = None

    @property
    def name(self) -> str:
        return f"b{self.batch_size}/{self.metric}" if self.batch_size is not None else f"drift/{self.metric}"

    @property
    def failed(self) -> bool:
        return self.verdict == "regression"

    @property
    def ratio_cov(self) -> float | None:
        """Within-job spread of the per-block ratios (what the interval has to absorb)."""
        return cov(self.block_ratios)

    @property
    def baseline_cov(self) -> float | None:
        return cov(self.baseline_sample_p50_ms)

    @property
    def current_cov(self) -> float | None:
        return cov(self.current_sample_p50_ms)

    def describe(self) -> str:
        if self.ratio is None:
            return (f"{self.metric} {self.baseline_value:.4g} -> {self.current_value:.4g} mm "
                    f"({(self.change_mm or 0):+.4g} mm, limit +{self.limit_mm:g} mm)")
        side = "above" if self.limit_ratio is not None and self.limit_ratio >= 1 else "below"
        return (f"{self.metric} {self.baseline_value:.4g} -> {self.current_value:.4g} {self.unit}: ratio B/A "
                f"{self.ratio:.3f}, {CONFIDENCE:.0%} interval {self.ratio_ci_low:.3f}..{self.ratio_ci_high:.3f} "
                f"over {len(self.block_ratios)} blocks (fails when entirely {side} {self.limit_ratio:.3f})")

    def record(self) -> dict[str, Any]:
        """The row as the results folder and --json hold it (lists in run order)."""
        return {"metric": self.metric, "unit": self.unit, "batch_size": self.batch_size, "verdict": self.verdict,
                "baseline_value": self.baseline_value, "current_value": self.current_value, "ratio": self.ratio,
                "ratio_ci_low": self.ratio_ci_low, "ratio_ci_high": self.ratio_ci_high,
                "limit_ratio": self.limit_ratio, "change_mm": self.change_mm, "limit_mm": self.limit_mm,
                "ratio_cov": self.ratio_cov, "baseline_cov": self.baseline_cov, "current_cov": self.current_cov,
                "cpu_other_pct": self.cpu_other_pct, "cpu_other_max_pct": self.cpu_other_max_pct,
                "baseline_blocks": list(self.baseline_blocks), "current_blocks": list(self.current_blocks),
                "block_ratios": list(self.block_ratios),
                "baseline_sample_p50_ms": list(self.baseline_sample_p50_ms),
                "current_sample_p50_ms": list(self.current_sample_p50_ms)}


@dataclass(frozen=True)
class CompareReport:
    """What one `compare` job measured and decided."""

    rows: tuple[CompareRow, ...]
    baseline: str
    current: str
    runner: str
    rounds: int
    duration_s: float
    latency_tol: float
    drift_tol_mm: float
    cpu_threads: int | None = None
    seconds: float = 0.0
    spinning: bool = True
    env: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None

    @property
    def failures(self) -> tuple[CompareRow, ...]:
        return tuple(r for r in self.rows if r.failed)

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        from .regress import verdict_summary

        return verdict_summary([r.verdict for r in self.rows], failed=bool(self.failures))

    def records(self) -> list[dict[str, Any]]:
        common = {"runner": self.runner, "baseline": self.baseline, "current": self.current, "rounds": self.rounds,
                  "duration_s": self.duration_s, "cpu_threads": self.cpu_threads, "spinning": self.spinning,
                  **{k: self.env.get(k, "") for k in ("device_name", "cpu_model", "run_id")}}
        return [{**common, **r.record()} for r in self.rows]


def timed_rows(a: SideSamples, b: SideSamples, batch: int, tol: float) -> list[CompareRow]:
    """The latency and throughput rows of one batch size from both sides' samples."""
    others = [v for v in (*a.cpu_other_pct, *b.cpu_other_pct) if v is not None]
    rows = []
    for metric, unit, higher in TIMED_METRICS:
        va, vb = a.per_block(metric), b.per_block(metric)
        ratios = block_ratios(va, vb)
        ratio, low, high = bootstrap_median(ratios)
        rows.append(CompareRow(
            metric, unit, batch, float(np.median(va)), float(np.median(vb)), judge(low, high, tol,
                                                                                   higher_is_better=higher),
            ratio=ratio, ratio_ci_low=low, ratio_ci_high=high, limit_ratio=1.0 - tol if higher else 1.0 + tol,
            baseline_blocks=tuple(va), current_blocks=tuple(vb), block_ratios=tuple(float(x) for x in ratios),
            baseline_sample_p50_ms=a.p50_ms, current_sample_p50_ms=b.p50_ms,
            cpu_other_pct=float(np.mean(others)) if others else None,
            cpu_other_max_pct=float(np.max(others)) if others else None))
    return rows


def drift_rows(base: dict[str, Any], cur: dict[str, Any], tol_mm: float) -> list[CompareRow]:
    """Drift metrics of both sides against the same eager model: a row fails when B drifts more than tol_mm more."""
    from .regress import DRIFT_METRICS

    rows = []
    for metric in DRIFT_METRICS:
        vb, vc = base.get(metric), cur.get(metric)
        if vb is None or vc is None or math.isnan(float(vb)) or math.isnan(float(vc)):
            continue
        change = float(vc) - float(vb)
        rows.append(CompareRow(metric, "mm", None, float(vb), float(vc),
                               "regression" if change > tol_mm else "ok", change_mm=change, limit_mm=tol_mm))
    return rows


# ---------------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------------


def measure_pair(ra: Any, rb: Any, batch: int, *, rounds: int = DEFAULT_ROUNDS, duration: float = DEFAULT_DURATION,
                 warmup: float = DEFAULT_WARMUP, progress: bool = False) -> tuple[SideSamples, SideSamples]:
    """Time two open runners at one batch size in ABBA blocks; each sample is `duration` seconds of one side."""
    from ..progress import track
    from ..timing import measure

    sides = {"A": ra, "B": rb}
    for r in sides.values():
        measure(r, batch, duration=0.0, iterations=1, warmup=warmup)  # staged inputs, caches, thread pools
    got: dict[str, list[tuple[int, dict]]] = {"A": [], "B": []}
    for k, side in track(abba_schedule(rounds), f"compare b{batch}", progress):
        got[side].append((k, measure(sides[side], batch, duration=duration, iterations=MIN_ITERATIONS, warmup=0.0)))

    def pack(items: list[tuple[int, dict]]) -> SideSamples:
        return SideSamples(block=tuple(k for k, _ in items),
                           p50_ms=tuple(float(m["latency_p50_ms"]) for _, m in items),
                           throughput_img_s=tuple(float(m["throughput_img_s"]) for _, m in items),
                           cpu_other_pct=tuple(m.get("cpu_other_pct") for _, m in items),
                           iterations=tuple(int(m["iterations"]) for _, m in items),
                           latencies_ms=tuple(tuple(m["latency_samples_ms"]) for _, m in items))

    return pack(got["A"]), pack(got["B"])


# ---------------------------------------------------------------------------------------------
# what may be compared
# ---------------------------------------------------------------------------------------------


def onnx_contract(path: Path, label: str) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """{name: (input|output, element type, non-batch dims)} of an ONNX graph's I/O."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UsageError(f"--{label} {path}: not a readable ONNX model ({type(exc).__name__}); pass an .onnx "
                         "artifact or a TensorRT .plan") from None
    inits = {i.name for i in model.graph.initializer}
    out = {}
    for kind, values in (("input", [v for v in model.graph.input if v.name not in inits]),
                         ("output", list(model.graph.output))):
        for v in values:
            t = v.type.tensor_type
            dims = tuple(str(d.dim_value) if d.HasField("dim_value") else d.dim_param or "?"
                         for d in t.shape.dim)[1:]
            out[v.name] = (kind, onnx.TensorProto.DataType.Name(t.elem_type).lower(), dims)
    return out


def contract_difference(a: dict[str, tuple], b: dict[str, tuple]) -> str | None:
    """The first way two I/O contracts differ, in words; None when they agree."""
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        return f"I/O names differ (baseline only: {only_a or '-'}, current only: {only_b or '-'})"
    for name in sorted(a):
        (ka, ta, da), (kb, tb, db) = a[name], b[name]
        if ka != kb:
            return f"{name!r} is an {ka} of the baseline but an {kb} of the current"
        if ta != tb:
            return f"{name!r} dtype differs: baseline {ta}, current {tb}"
        if da != db:
            return f"{name!r} non-batch shape differs: baseline {list(da)}, current {list(db)}"
    return None


def plan_refusal(baseline: Path, current: Path) -> str | None:
    """Why two plans cannot be compared here (sidecars: missing, built for other TensorRT/GPUs), else None."""
    from ..artifact import EngineArtifact
    from ..trt.cache import plan_skip_reason
    from .sweep import select_plans

    arts = {}
    for label, p in (("baseline", baseline), ("current", current)):
        reason = select_plans([p], None)[0][2]  # this machine, when TensorRT and a GPU are here
        if reason is not None:
            return f"--{label} {p}: {reason}"
        arts[label] = EngineArtifact.read(p)
    machine = dict(arts["baseline"].key_inputs or {})
    reason = plan_skip_reason(arts["current"], onnx_shas=None, machine=machine)
    if reason is not None:
        return f"--current {current}: {reason.replace('this machine', 'the baseline')}"
    return None


# ---------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompareConfig:
    """`simplehand-bench compare`: the pair, how long to time it, what fails it; every default is the command's."""

    baseline: Path
    current: Path
    runner: str | None = None  # None: onnxruntime for .onnx, tensorrt for plans
    batch_sizes: str = DEFAULT_BATCHES
    threads: int | None = None  # None: the library's own (the same for both sides)
    spinning: bool = True  # False: ONNX Runtime's idle pool threads sleep (session.intra_op.allow_spinning=0)
    rounds: int = DEFAULT_ROUNDS
    duration: float = DEFAULT_DURATION
    warmup: float = DEFAULT_WARMUP
    latency_tol: float = 0.10
    drift_tol_mm: float = 0.05
    calib: Path | None = None
    checkpoint: Path | None = None
    config: str | None = None
    out: Path | None = None  # None: benchmarks/results/<run-id>-compare/
    markdown: Path | None = None  # CI step summary
    junit: Path | None = None
    quiet: bool = False

    @classmethod
    def from_cli(cls, **options: Any) -> CompareConfig:
        """None means the default; the tolerance is parsed as `regress` does; bad options raise before any work."""
        from .regress import parse_tolerance

        given = {k: v for k, v in options.items() if v is not None}
        if "latency_tol" in given:
            given["latency_tol"] = parse_tolerance(given["latency_tol"])
        cfg = cls(**given)
        cfg.check()
        return cfg

    @property
    def kind(self) -> str:
        return "plan" if self.baseline.suffix in PLAN_SUFFIXES else "onnx"

    def resolved_runner(self) -> str:
        return self.runner or ("tensorrt" if self.kind == "plan" else "onnxruntime")

    def check(self) -> None:
        """Refuse what cannot be a fair A/B: a missing file, two kinds of artifact, a runner that cannot run them."""
        for label, p in (("baseline", self.baseline), ("current", self.current)):
            if not Path(p).is_file():
                raise UsageError(f"--{label} {p}: no such file; pass an ONNX artifact or a TensorRT plan")
        kinds = {("plan" if Path(p).suffix in PLAN_SUFFIXES else "onnx") for p in (self.baseline, self.current)}
        if len(kinds) > 1:
            raise UsageError(f"--baseline {self.baseline} and --current {self.current}: one ONNX graph and one "
                             "TensorRT plan; compare two of the same kind")
        runner = self.resolved_runner()
        wanted = "tensorrt" if self.kind == "plan" else "onnxruntime"
        if runner != wanted:
            raise UsageError(f"--runner {runner}: cannot run {'plans' if self.kind == 'plan' else 'ONNX graphs'}; "
                             f"use --runner {wanted}")
        if self.rounds < 1 or self.duration <= 0 or self.warmup < 0:
            raise UsageError("--rounds must be >= 1, --duration > 0 and --warmup >= 0")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads {self.threads}: must be >= 1 (omit it for the library's default)")
        if not self.spinning and runner != "onnxruntime":
            raise UsageError("--no-spin sets ONNX Runtime's session.intra_op.allow_spinning=0: it does not apply to "
                             f"{runner}")
        if self.drift_tol_mm < 0:
            raise UsageError("--drift-tol-mm must be >= 0")
        if self.calib is None and (self.checkpoint is not None or self.config is not None):
            raise UsageError("--checkpoint/--config choose the eager model drift is measured against: add --calib DIR")


def check_pair(cfg: CompareConfig) -> None:
    """Refuse (UsageError) two artifacts that are not the same model's contract, or plans built elsewhere."""
    if cfg.kind == "plan":
        reason = plan_refusal(cfg.baseline, cfg.current)
        if reason:
            raise UsageError(f"{reason}; compare plans built by this TensorRT on this GPU (make engine)")
        return
    diff = contract_difference(onnx_contract(cfg.baseline, "baseline"), onnx_contract(cfg.current, "current"))
    if diff:
        raise UsageError(f"--baseline {cfg.baseline} vs --current {cfg.current}: not the same model contract: {diff}")


def _open_pair(cfg: CompareConfig) -> tuple[Any, Any]:
    from ..runners import get_runner

    def make(p: Path) -> Any:
        if cfg.kind == "plan":
            return get_runner("tensorrt", plan=p)
        return get_runner("onnxruntime", onnx=p, threads=cfg.threads, spinning=cfg.spinning)

    ra, rb = make(cfg.baseline), make(cfg.current)
    ra.open()
    try:
        rb.open()
    except BaseException:
        ra.close()
        raise
    return ra, rb


def _plan_io(runner: Any) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """A TensorRT engine's I/O in `onnx_contract`'s shape (needs TensorRT: only called on open plans)."""
    eng = runner.engine.engine
    trt = runner.engine.trt
    out = {}
    for i in range(eng.num_io_tensors):
        n = eng.get_tensor_name(i)
        kind = "input" if eng.get_tensor_mode(n) == trt.TensorIOMode.INPUT else "output"
        out[n] = (kind, str(eng.get_tensor_dtype(n)).lower(), tuple(str(d) for d in eng.get_tensor_shape(n))[1:])
    return out


def _drift(cfg: CompareConfig, ra: Any, rb: Any) -> list[CompareRow]:
    from ..calibration import load_calibration_set
    from ..checkpoint import load_announced
    from ..config import DEFAULT_CONFIG
    from ..drift import HandRegions, accuracy_row, eager_reference, set_regressor
    from .accuracy import infer_all

    if cfg.calib is None:
        return []
    model, _ = load_announced(cfg.checkpoint, cfg.config or DEFAULT_CONFIG, announce=not cfg.quiet)
    cal = load_calibration_set(cfg.calib)
    regressor = set_regressor(cal, None)
    hand = HandRegions.from_labels(cal.vertices, cal.xyz)
    ref = eager_reference(model, cal.images)
    labels = {"uv": cal.uv, "xyz": cal.xyz, "vertices": cal.vertices}
    regions = hand.regions if hand else None
    rows = [accuracy_row(ref, infer_all(r, cal.images), labels, regressor, regions) for r in (ra, rb)]
    return drift_rows(rows[0], rows[1], cfg.drift_tol_mm)


def run_compare(cfg: CompareConfig) -> CompareReport:
    """Check the pair, time both sides interleaved at every batch size, compare drift if asked, write the folder."""
    import time

    from ..env import fingerprint
    from .sweep import parse_batches

    cfg.check()
    batches = parse_batches(cfg.batch_sizes, cfg.kind == "plan")
    check_pair(cfg)
    t0 = time.perf_counter()
    ra, rb = _open_pair(cfg)
    try:
        if cfg.kind == "plan":
            diff = contract_difference(_plan_io(ra), _plan_io(rb))
            if diff:
                raise UsageError(f"--baseline {cfg.baseline} vs --current {cfg.current}: not the same model "
                                 f"contract: {diff}")
        rows: list[CompareRow] = []
        for batch in batches:
            a, b = measure_pair(ra, rb, batch, rounds=cfg.rounds, duration=cfg.duration, warmup=cfg.warmup,
                                progress=not cfg.quiet)
            rows += timed_rows(a, b, batch, cfg.latency_tol)
        rows += _drift(cfg, ra, rb)
        threads = ra.threads() if callable(getattr(ra, "threads", None)) else None
    finally:
        ra.close()
        rb.close()
    env = fingerprint()
    report = CompareReport(tuple(rows), str(cfg.baseline), str(cfg.current), cfg.resolved_runner(), cfg.rounds,
                           cfg.duration, cfg.latency_tol, cfg.drift_tol_mm, threads,
                           round(time.perf_counter() - t0, 1), cfg.spinning, env)
    folder = write_folder(report, cfg.out or Path("benchmarks") / "results" / f"{env['run_id']}-compare")
    report = dataclasses.replace(report, folder=folder)
    write_reports(report, markdown=cfg.markdown, junit=cfg.junit)
    return report


def to_frame(report: CompareReport) -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(report.records(), infer_schema_length=None)


def write_reports(report: CompareReport, *, markdown: Path | None = None, junit: Path | None = None) -> None:
    """The markdown summary and JUnit XML a CI job asked for (each atomically)."""
    from ..fileio import atomic_path

    for path, text in ((markdown, to_markdown), (junit, to_junit)):
        if path is not None:
            with atomic_path(path) as tmp:
                tmp.write_text(text(report))


def write_folder(report: CompareReport, out: Path) -> Path:
    """compare.{parquet,json,md} + env.json, each file atomically (only our own file names are written)."""
    from ..env import write_env_json
    from ..fileio import atomic_path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df = to_frame(report)
    meta = {"baseline": report.baseline, "current": report.current, "runner": report.runner,
            "rounds": report.rounds, "duration_s": report.duration_s, "cpu_threads": report.cpu_threads,
            "spinning": report.spinning,
            "latency_tol": report.latency_tol, "drift_tol_mm": report.drift_tol_mm, "seconds": report.seconds,
            "summary": report.summary(), "command": " ".join(["simplehand-bench", *sys.argv[1:]])
            if Path(sys.argv[0]).name.startswith("simplehand-bench") else ""}
    writers = {"compare.parquet": lambda p: df.write_parquet(p),
               "compare.json": lambda p: p.write_text(json.dumps({**meta, "rows": report.records()}, indent=1,
                                                                 default=str) + "\n"),
               "compare.md": lambda p: p.write_text(to_markdown(report))}
    for name, write in writers.items():
        with atomic_path(out / name) as tmp:
            write(tmp)
    write_env_json(out, report.env)
    return out


# ---------------------------------------------------------------------------------------------
# renderers
# ---------------------------------------------------------------------------------------------

_STYLE = {"ok": "green", "improved": "cyan", "regression": "bold red"}
_HEADER = ("row", "verdict", "baseline", "current", "B/A (95% interval)", "ratio CoV", "other CPU %")


def _cells(r: CompareRow) -> tuple[str, ...]:
    if r.ratio is None:
        return (r.name, r.verdict, f"{r.baseline_value:.4g} mm", f"{r.current_value:.4g} mm",
                f"{(r.change_mm or 0):+.4g} mm (limit +{r.limit_mm:g})", "", "")
    rc = r.ratio_cov
    return (r.name, r.verdict, f"{r.baseline_value:.4g} {r.unit}", f"{r.current_value:.4g} {r.unit}",
            f"{r.ratio:.3f} ({r.ratio_ci_low:.3f}..{r.ratio_ci_high:.3f}; limit {r.limit_ratio:.2f})",
            "" if rc is None else f"{rc:.1%}", "" if r.cpu_other_pct is None else f"{r.cpu_other_pct:.0f}")


def _threads(report: CompareReport) -> str:
    return f"{report.cpu_threads or 'default'}" + ("" if report.spinning else " (no spinning)")


def _title(report: CompareReport) -> str:
    return (f"compare: {report.summary()} ({report.runner}, {report.rounds} ABBA blocks x {report.duration_s:g} s, "
            f"threads {_threads(report)}, {report.seconds:.0f} s)")


def render_table(report: CompareReport) -> Table:
    """A rich table, failures first."""
    from rich.table import Table

    table = Table(title=_title(report))
    for col in _HEADER:
        table.add_column(col, justify="left" if col in ("row", "verdict") else "right")
    for r in sorted(report.rows, key=lambda r: not r.failed):
        cells = list(_cells(r))
        cells[1] = f"[{_STYLE[r.verdict]}]{r.verdict}[/]"
        table.add_row(*cells)
    return table


def failure_line(report: CompareReport) -> str:
    return f"{report.summary()}: " + "; ".join(r.describe() for r in report.failures)


def to_markdown(report: CompareReport) -> str:
    """Markdown for a CI step summary: verdict, what was compared, the row table."""
    from .results import markdown_rows

    icon = "❌" if report.failures else "✅"
    lines = [f"## {icon} SimpleHand A/B compare: {report.summary()}", "",
             f"Baseline `{report.baseline}` (A) vs current `{report.current}` (B) on "
             f"**{report.env.get('device_name', '') or 'this machine'}**, {report.runner}, interleaved in "
             f"{report.rounds} ABBA blocks of {report.duration_s:g} s samples, CPU threads "
             f"{_threads(report)}. A latency row fails when the {CONFIDENCE:.0%} bootstrap interval of "
             f"the median per-block ratio B/A lies entirely above {1 + report.latency_tol:.2f} (throughput: below "
             f"{1 - report.latency_tol:.2f}); drift rows when B drifts more than {report.drift_tol_mm:g} mm more "
             "than A.", ""]
    rows = (_cells(r) for r in sorted(report.rows, key=lambda r: not r.failed))
    return "\n".join(lines) + "\n" + markdown_rows(_HEADER, rows)


def to_junit(report: CompareReport, suite_name: str = "simplehand-compare") -> str:
    """JUnit XML: one testcase per row, failures carry the reason."""
    slug = report.env.get("device_slug", "") or "device"
    suite = ET.Element("testsuite", name=suite_name, tests=str(len(report.rows)), failures=str(len(report.failures)),
                       errors="0", skipped="0")
    for r in report.rows:
        case = ET.SubElement(suite, "testcase", classname=f"compare.{slug}", name=r.name, time="0")
        if r.failed:
            ET.SubElement(case, "failure", message=f"{r.name}: {r.verdict}", type=r.verdict).text = r.describe()
        else:
            ET.SubElement(case, "system-out").text = r.describe()
    suites = ET.Element("testsuites", name=suite_name, tests=suite.get("tests", "0"),
                        failures=suite.get("failures", "0"))
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
