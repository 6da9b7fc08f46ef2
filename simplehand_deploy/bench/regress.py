"""Regression gate: compare a benchmark run against a device baseline and say what got worse.

A CI gate is only useful if it is quiet when nothing changed and loud when something did. A latency
row regresses when its p50 latency (or its throughput, i.e. mean latency) is worse than the tolerance
*and* the difference is statistically significant given the uncertainty of the two *estimates* —
not the spread of single samples (a 30% per-iteration CoV says little about how well 800 samples pin
down a median). The uncertainty comes from the per-iteration samples each results.parquet keeps
(`latency_samples_ms`, in run order), by batch means: each run is cut into contiguous batches at least
two autocorrelation times long (a busy neighbour slows many consecutive iterations, so the samples are
not independent), and the spread of the batch medians (means, for throughput) gives a one-sided 95%
bound of the relative change. "Significant" means that bound lies beyond zero. Results without samples
(older folders, CSV/JSON files) fall back to the summary columns: the standard error of a median of
`iterations` independent samples with CoV `latency_cov`.

One run cannot see how much the *next* run of the same command will differ: on a shared VM the
neighbours, clocks and cache pressure change over tens of seconds, and a 4-second run can sit entirely
in a slow or a fast spell. A baseline pooled from several runs (`simplehand-bench baseline --from A
--from B ...`, `bench.baseline.pool_runs`) records that run-to-run spread per row
(`latency_p50_run_cov`, `throughput_run_cov`, `baseline_runs`), and such rows are judged by it instead
(`runs_change`): the new run is one more draw from the distribution the baseline's runs came from.

Accuracy drift is deterministic for a given artifact, so it is gated on an absolute tolerance in
millimetres. Rows the baseline has and the current run lacks are regressions too: a runner that
silently stopped running must not pass. A runner that cannot run on this machine (status
`skipped: ...`, one row without a batch size) is never compared and never fails the gate; the
baseline rows of such a runner are reported as not measured.

Rows are matched by (runner, precision, batch_size, measurement) on the same device. Comparing two
different devices, TensorRT versions, CPU models or CPU thread counts is refused (UsageError, exit 2)
unless the caller says the change is intended, because latency across different hardware or thread
counts is not a regression signal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from xml.etree import ElementTree as ET

import numpy as np

from ..errors import UsageError

if TYPE_CHECKING:
    import polars as pl
    from rich.table import Table

KEY_COLUMNS = ("runner", "precision", "batch_size", "measurement")
# Fingerprint fields that must agree for latency comparisons to mean anything.
ENV_GUARD_COLUMNS = ("device_name", "tensorrt_version")
# Latency-row metrics: (column, higher_is_better).
LATENCY_METRICS = (("latency_p50_ms", False), ("throughput_img_s", True))
# Accuracy-row metrics gated on an absolute increase in millimetres (lower is better).
DRIFT_METRICS = (
    "vertex_drift_mean_mm",
    "vertex_drift_p99_mm",
    "joint_drift_mean_mm",
    "pa_mpvpe_mm",
    "pa_mpjpe_mm",
)
# Significance of a latency change: one-sided confidence level of the bound on the relative change.
CONFIDENCE = 0.95
MIN_BATCHES, MAX_BATCHES = 5, 20  # batch-means standard error: contiguous batches per run
SAMPLES = "latency_samples_ms"
# baselines pooled from several runs: the column holding each metric's run-to-run spread (bench.baseline.pool_runs)
RUN_SPREAD = {"latency_p50_ms": "latency_p50_run_cov", "throughput_img_s": "throughput_run_cov"}
OTHER_LOAD_NOTE_PCT = 10.0  # cpu_other_pct from which a latency row's verdict carries a note

Verdict = Literal["ok", "improved", "regression", "missing", "error", "new", "skipped", "not measured"]
FAILING: frozenset[str] = frozenset({"regression", "missing", "error"})


@dataclass(frozen=True)
class Check:
    """One metric of one row: what the baseline said, what the run said, and the bar it had to clear."""

    metric: str
    baseline: float
    current: float
    change: float  # relative (latency/throughput, + = worse) or absolute mm (drift, + = worse)
    threshold: float
    relative: bool
    failed: bool
    ci_low: float | None = None  # one-sided confidence bounds of `change` (relative checks with an uncertainty)
    ci_high: float | None = None
    method: str = ""  # how the uncertainty was estimated: "batch means (...)", "summary columns (...)", ""

    @property
    def significant_better(self) -> bool:
        return self.ci_high is None or self.ci_high < 0

    def describe(self) -> str:
        if self.relative:
            ci = ""
            if self.ci_low is not None and self.ci_high is not None:
                ci = (f", {CONFIDENCE:.0%} bounds {self.ci_low:+.1%}..{self.ci_high:+.1%} by {self.method}")
            return (f"{self.metric} {self.baseline:.4g} -> {self.current:.4g} ({self.change:+.1%} worse, "
                    f"limit {self.threshold:.1%}{ci})")
        return (f"{self.metric} {self.baseline:.4g} -> {self.current:.4g} ({self.change:+.4g} mm, "
                f"limit {self.threshold:.4g} mm)")


@dataclass(frozen=True)
class RowVerdict:
    """The verdict for one (runner, precision, batch, measurement) row."""

    runner: str
    precision: str
    batch_size: int | None
    measurement: str
    verdict: Verdict
    checks: tuple[Check, ...] = ()
    note: str = ""

    @property
    def name(self) -> str:
        """A stable row name used in every rendering (table, markdown, JUnit testcase)."""
        batch = "-" if self.batch_size is None else self.batch_size
        return f"{self.runner}/{self.precision}/b{batch}/{self.measurement}"

    @property
    def failed(self) -> bool:
        return self.verdict in FAILING

    def message(self) -> str:
        parts = [c.describe() for c in self.checks if c.failed] if self.failed else []
        if self.note:
            parts.append(self.note)
        return "; ".join(parts)


@dataclass(frozen=True)
class RegressionReport:
    """Everything a gate needs: per-row verdicts, the two environments, and the tolerances used."""

    rows: tuple[RowVerdict, ...]
    baseline_env: dict[str, str] = field(default_factory=dict)
    current_env: dict[str, str] = field(default_factory=dict)
    latency_tol: float = 0.10
    drift_tol_mm: float = 0.05
    env_notes: tuple[str, ...] = ()

    @property
    def failures(self) -> tuple[RowVerdict, ...]:
        return tuple(r for r in self.rows if r.failed)

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        return verdict_summary([r.verdict for r in self.rows], failed=bool(self.failures))


def verdict_summary(verdicts: Sequence[str], failed: bool) -> str:
    """One line for a gate's rows (stored-baseline `regress` and `compare` alike): PASS/FAIL and the verdict counts."""
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v] = counts.get(v, 0) + 1
    text = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    return f"{'FAIL' if failed else 'PASS'}: {len(verdicts)} rows ({text or 'none'})"

# ---------------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------------


def parse_tolerance(text: str | float) -> float:
    """`10%`, `0.1` and `10` (read as a percentage, since a 1000% latency gate is never meant) -> 0.1."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UsageError(f"--latency-tol: {text!r} is not a number; use e.g. 10% or 0.1") from None
    if not raw.endswith("%") and value >= 1.0:
        value /= 100.0
    if not (0.0 <= value < 10.0) or math.isnan(value):
        raise UsageError(f"--latency-tol: {text!r} is out of range; use e.g. 10% or 0.1")
    return value


# ---------------------------------------------------------------------------------------------
# the statistic: uncertainty of a median/mean estimate from autocorrelated samples
# ---------------------------------------------------------------------------------------------


def autocorrelation_time(samples: Any) -> float:
    """Integrated autocorrelation time: 1 + 2 * (sum of autocorrelations up to the first lag where they drop to <= 0).

    Independent samples give 1; a series whose neighbours move together (a busy neighbour process slows many
    consecutive iterations) gives more: n samples then hold about n / tau independent ones.
    """
    x = np.asarray(samples, dtype=np.float64)
    n = len(x)
    if n < 4:
        return 1.0
    x = x - x.mean()
    var = float(x @ x)
    if var <= 0:
        return 1.0
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(x, size)
    acf = np.fft.irfft(f * np.conj(f), size)[:n] / var
    tau = 1.0
    for rho in acf[1 : n // 2]:
        if rho <= 0:
            break
        tau += 2.0 * float(rho)
    return tau


def batch_count(samples: Any) -> int:
    """Contiguous batches to cut a run into: each at least 2 autocorrelation times long, MIN_BATCHES..MAX_BATCHES."""
    n = len(samples)
    if n < 2 * MIN_BATCHES:
        return max(2, min(n, MIN_BATCHES))
    return int(np.clip(n // math.ceil(2 * autocorrelation_time(samples)), MIN_BATCHES, MAX_BATCHES))


def _batch_log_stats(x: np.ndarray, stat: Any) -> tuple[float, int]:
    """(variance of the mean of log batch statistics, number of batches)."""
    k = batch_count(x)
    values = np.log([stat(part) for part in np.array_split(x, k)])
    return float(values.var(ddof=1) / k), k


def samples_change(base: Any, cur: Any, *, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Relative change (current / baseline - 1; + = slower) of the median and of the mean, with one-sided bounds.

    Batch means: each run (in run order) is cut into contiguous batches at least two autocorrelation times
    long, so that batch statistics are nearly independent even when consecutive samples are not; the spread
    of the log batch medians (means) gives the standard error of the run's log median (mean), and a Welch t
    quantile with the batches' degrees of freedom gives the bound. Returns {median: (change, low, high),
    mean: (change, low, high), batches: (kb, kc)}; low: the change is at least this, high: at most this,
    each at `confidence`. (A circular block bootstrap was tried first: on AR(1) noise with phi = 0.95 it
    called 25% of identical-distribution pairs significant at a nominal 5%; batch means with a t quantile
    stay near 5%. tests/test_regress.py holds the synthetic checks.)
    """
    from scipy.stats import t as student_t

    b, c = np.asarray(base, dtype=np.float64), np.asarray(cur, dtype=np.float64)
    if len(b) < 2 or len(c) < 2:
        raise ValueError("need at least 2 samples per run")
    out: dict[str, Any] = {}
    for key, stat in (("median", np.median), ("mean", np.mean)):
        (vb, kb), (vc, kc) = _batch_log_stats(b, stat), _batch_log_stats(c, stat)
        d = math.log(stat(c) / stat(b))
        se = math.sqrt(vb + vc)
        if se > 0:
            df = (vb + vc) ** 2 / (vb**2 / (kb - 1) + vc**2 / (kc - 1))
            q = float(student_t.ppf(confidence, df))
        else:
            q = 0.0
        out[key] = (math.expm1(d), math.expm1(d - q * se), math.expm1(d + q * se))
        out["batches"] = (kb, kc)
    return out


def summary_change(b: float, c: float, cov_b: float | None, cov_c: float | None, n_b: int | None, n_c: int | None,
                   *, median: bool = True, confidence: float = CONFIDENCE) -> tuple[float, float | None, float | None]:
    """Fallback without samples: relative change with bounds from the summary columns (independent samples).

    Standard error of a median of n samples with coefficient of variation v, relative to the estimate:
    sqrt(pi/2) * v / sqrt(n) (a mean: v / sqrt(n)). Without CoV or iteration counts: no bounds (None).
    """
    change = c / b - 1.0
    if cov_b is None or cov_c is None or not n_b or not n_c:
        return change, None, None
    k = math.sqrt(math.pi / 2) if median else 1.0
    se = (1.0 + change) * math.hypot(k * cov_b / math.sqrt(n_b), k * cov_c / math.sqrt(n_c))
    from statistics import NormalDist

    z = NormalDist().inv_cdf(confidence)
    return change, change - z * se, change + z * se


# ---------------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------------


def _env_of(df: pl.DataFrame, label: str) -> dict[str, str]:
    """The run's fingerprint (first row); UsageError when one frame mixes devices, which a gate cannot judge."""
    env: dict[str, str] = {}
    for col in ("device_name", "device_slug", "tensorrt_version", "cuda_version", "driver_version", "host",
                "run_id", "jetson_model", "jetson_power_mode", "onnxruntime_version", "torch_version", "cpu_model",
                "cpu_count"):
        if col not in df.columns:
            continue
        values = sorted({str(v) for v in df[col].to_list() if v is not None})
        if col == "device_name" and len(values) > 1:
            raise UsageError(f"{label}: holds results from {len(values)} devices ({', '.join(values)}); "
                             "compare one device at a time (use `simplehand-bench report` to merge devices)")
        env[col] = values[0] if values else ""
    return env


def _check_env(base: dict[str, str], cur: dict[str, str], allow_env_change: bool) -> tuple[str, ...]:
    notes = []
    for col in ENV_GUARD_COLUMNS:
        b, c = base.get(col, ""), cur.get(col, "")
        if b != c:
            what = f"{col} differs: baseline {b or '(none)'!r}, current {c or '(none)'!r}"
            if not allow_env_change:
                raise UsageError(f"{what}; latency across different devices or TensorRT versions is not a "
                                 "regression signal: compare against this device's baseline, or pass "
                                 "--allow-env-change if the change is intended")
            notes.append(what)
    b, c = base.get("cpu_model", ""), cur.get("cpu_model", "")
    if b and c and b != c:  # results older than the column carry none: nothing to compare
        what = f"cpu_model differs: baseline {b!r}, current {c!r}"
        if not allow_env_change:
            raise UsageError(f"{what}; latency on another CPU is not a regression signal: compare against a "
                             "baseline from this CPU, or pass --allow-env-change if the change is intended")
        notes.append(what)
    for col in ("cuda_version", "driver_version", "jetson_power_mode", "cpu_count"):
        b, c = base.get(col, ""), cur.get(col, "")
        if b != c:
            notes.append(f"{col} differs: baseline {b or '(none)'!r}, current {c or '(none)'!r}")
    return tuple(notes)


def _check_threads(pairs: list[tuple[tuple, dict, dict]], allow_env_change: bool) -> tuple[str, ...]:
    """cpu_threads must agree on every matched row where both runs recorded it."""
    diffs = []
    for key, b, c in pairs:
        tb, tc = b.get("cpu_threads"), c.get("cpu_threads")
        if tb is not None and tc is not None and int(tb) != int(tc):
            diffs.append((key, int(tb), int(tc)))
    if not diffs:
        return ()
    key, tb, tc = diffs[0]
    what = (f"cpu_threads differs: baseline {tb}, current {tc} (row {'/'.join(map(str, key))}"
            f"{f' and {len(diffs) - 1} more' if len(diffs) > 1 else ''})")
    if not allow_env_change:
        raise UsageError(f"{what}; latency at another thread count is not a regression signal: re-run with "
                         f"--threads {tb}, or pass --allow-env-change if the change is intended")
    return (what,)


def _num(row: dict, col: str) -> float | None:
    v = row.get(col)
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def _samples(row: dict) -> np.ndarray | None:
    v = row.get(SAMPLES)
    if v is None:
        return None
    x = np.asarray([t for t in v if t is not None], dtype=np.float64)
    x = x[np.isfinite(x) & (x > 0)]
    return x if len(x) >= 2 else None


def runs_change(worse: float, run_cov: float, runs: int, *, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """One-sided bounds of a single run's relative change against a baseline pooled from `runs` runs.

    `run_cov` is the standard deviation of the log metric across the baseline's runs: how much one run of
    the command moves from the next on this machine, within-run noise included. A new single run is one
    more draw, and the baseline is the mean of `runs` draws, so the log difference has standard error
    run_cov * sqrt(1 + 1/runs); a Student t quantile with runs - 1 degrees of freedom gives the bounds.
    """
    from scipy.stats import t as student_t

    d = math.log1p(worse)
    q = float(student_t.ppf(confidence, runs - 1)) * run_cov * math.sqrt(1.0 + 1.0 / runs)
    return math.expm1(d - q), math.expm1(d + q)


def _latency_checks(base: dict, cur: dict, tol: float) -> tuple[Check, ...]:
    sb, sc = _samples(base), _samples(cur)
    boot = samples_change(sb, sc) if sb is not None and sc is not None else None
    runs = int(_num(base, "baseline_runs") or 0)
    checks = []
    for col, higher_is_better in LATENCY_METRICS:
        b, c = _num(base, col), _num(cur, col)
        if b is None or c is None or b <= 0 or c <= 0:
            continue
        worse = (b / c - 1.0) if higher_is_better else (c / b - 1.0)
        run_cov = _num(base, RUN_SPREAD[col])
        low: float | None
        high: float | None
        if runs >= 2 and run_cov is not None:
            low, high = runs_change(worse, run_cov, runs)
            method = f"run-to-run spread of {runs} baseline runs"
        elif boot is not None:
            # throughput = batch / mean latency: its loss is the mean latency's relative increase
            _, low, high = boot["mean" if higher_is_better else "median"]
            method = f"batch means ({boot['batches'][0]}/{boot['batches'][1]} batches)"
        else:
            base_lat = _num(base, "latency_mean_ms" if higher_is_better else "latency_p50_ms")
            cur_lat = _num(cur, "latency_mean_ms" if higher_is_better else "latency_p50_ms")
            n_b, n_c = _num(base, "iterations"), _num(cur, "iterations")
            if base_lat and cur_lat:
                _, low, high = summary_change(base_lat, cur_lat, _num(base, "latency_cov"), _num(cur, "latency_cov"),
                                              int(n_b or 0), int(n_c or 0), median=not higher_is_better)
                # re-centre the bounds on this metric's own change (the columns may round differently)
                if low is not None and high is not None:
                    shift = worse - (cur_lat / base_lat - 1.0)
                    low, high = low + shift, high + shift
            else:
                low = high = None
            method = "summary columns (independent samples)" if low is not None else ""
        failed = worse > tol and (low is None or low > 0)
        checks.append(Check(col, b, c, worse, tol, True, failed, low, high, method))
    return tuple(checks)


def _drift_checks(base: dict, cur: dict, tol_mm: float) -> tuple[Check, ...]:
    checks = []
    for col in DRIFT_METRICS:
        b, c = _num(base, col), _num(cur, col)
        if b is None or c is None:
            continue
        checks.append(Check(col, b, c, c - b, tol_mm, False, (c - b) > tol_mm))
    return tuple(checks)


def _load_note(base: dict, cur: dict) -> str:
    """Say when other processes on the machine used a notable share of the CPUs while a row was timed.

    The verdict does not change (a run slowed by a crowded machine *is* slower, and a hypervisor's
    neighbours stay invisible to this column anyway), but the reader learns whose time it was.
    """
    ob, oc = _num(base, "cpu_other_pct"), _num(cur, "cpu_other_pct")
    if max(ob or 0.0, oc or 0.0) < OTHER_LOAD_NOTE_PCT:
        return ""
    def fmt(v: float | None) -> str:
        return "not recorded" if v is None else f"{v:.0f}%"
    return (f"other processes used {fmt(oc)} of the CPUs while the current row was timed (baseline {fmt(ob)}): "
            "re-measure on a quiet machine before trusting this row")


def _judge(base: dict, cur: dict, latency_tol: float, drift_tol_mm: float) -> tuple[Verdict, tuple[Check, ...], str]:
    b_status, c_status = str(base.get("status") or "ok"), str(cur.get("status") or "ok")
    if c_status.startswith("skipped"):
        return "skipped", (), f"current run: {c_status}"
    if b_status != "ok":
        return "skipped", (), f"baseline row not ok ({b_status})"
    if c_status != "ok":
        return "error", (), f"current run: {c_status}"
    if cur["measurement"] == "latency":
        checks = _latency_checks(base, cur, latency_tol)
        fb, fc = base.get("fused"), cur.get("fused")
        note = f"fused differs ({fb} -> {fc}): not the same model graph" if None not in (fb, fc) and fb != fc else ""
        note = "; ".join(n for n in (note, _load_note(base, cur)) if n)
        if any(c.failed for c in checks):
            return "regression", checks, note
        improved = any(-c.change > c.threshold and c.significant_better for c in checks)
        return ("improved" if improved else "ok"), checks, note
    checks = _drift_checks(base, cur, drift_tol_mm)
    if any(c.failed for c in checks):
        return "regression", checks, ""
    note = ""
    if base.get("num_samples") != cur.get("num_samples"):
        note = f"num_samples differs ({base.get('num_samples')} -> {cur.get('num_samples')})"
    return "ok", checks, note


def _index(df: pl.DataFrame, label: str) -> dict[tuple, dict]:
    missing = [c for c in (*KEY_COLUMNS, "status") if c not in df.columns]
    if missing:
        raise UsageError(f"{label}: missing column(s) {', '.join(missing)}; is this a simplehand-bench results file?")
    rows: dict[tuple, dict] = {}
    for row in df.iter_rows(named=True):
        key = tuple(row[c] for c in KEY_COLUMNS)
        if key in rows and all(str(r.get("status") or "").startswith("skipped") for r in (row, rows[key])):
            continue  # several plans skipped for the same precision: never compared, one row is enough
        if key in rows:
            raise UsageError(f"{label}: row {'/'.join(map(str, key))} appears twice; pass one run, not a merge")
        rows[key] = row
    return rows


def compare(
    baseline: pl.DataFrame,
    current: pl.DataFrame,
    *,
    latency_tol: float = 0.10,
    drift_tol_mm: float = 0.05,
    allow_env_change: bool = False,
) -> RegressionReport:
    """Judge `current` against `baseline` row by row.

    Args:
        baseline: results frame of the reference run (one device).
        current: results frame of the run under test (one device).
        latency_tol: relative latency/throughput tolerance (0.10 = 10 %); a row regresses when its change
            is beyond it and significant (its one-sided 95% bound, from the samples' batch means or the
            summary columns, lies beyond zero).
        drift_tol_mm: allowed absolute increase of each drift/accuracy metric in millimetres.
        allow_env_change: compare even if device_name, tensorrt_version, cpu_model or cpu_threads differ
            (noted in the report).

    Raises:
        UsageError: a frame lacks key columns, mixes devices, or the environments differ without permission.
    """
    if latency_tol < 0 or drift_tol_mm < 0:
        raise UsageError("tolerances must be >= 0")
    base_env, cur_env = _env_of(baseline, "baseline"), _env_of(current, "current")
    notes = _check_env(base_env, cur_env, allow_env_change)
    base_rows, cur_rows = _index(baseline, "baseline"), _index(current, "current")
    notes += _check_threads([(k, base_rows[k], cur_rows[k]) for k in base_rows if k in cur_rows], allow_env_change)
    # runners that cannot run here now: (runner, measurement) -> the skip reason
    skipped_now = {(k[0], k[3]): str(r["status"]) for k, r in cur_rows.items()
                   if str(r.get("status") or "").startswith("skipped")}
    verdicts = []
    for key in sorted(set(base_rows) | set(cur_rows), key=lambda k: tuple(str(x).zfill(6) for x in k)):
        runner, precision, batch, measurement = key
        ident = (str(runner), str(precision), None if batch is None else int(batch), str(measurement))
        if key not in cur_rows and (runner, measurement) in skipped_now:
            verdicts.append(RowVerdict(*ident, verdict="not measured",
                                       note=f"runner {skipped_now[(runner, measurement)]} in the current run"))
        elif key not in cur_rows and not str(base_rows[key].get("status") or "ok").startswith("skipped"):
            verdicts.append(RowVerdict(*ident, verdict="missing", note="in the baseline but not in the current run"))
        elif key not in cur_rows:
            verdicts.append(RowVerdict(*ident, verdict="skipped", note=f"baseline: {base_rows[key]['status']}"))
        elif key not in base_rows and str(cur_rows[key].get("status") or "").startswith("skipped"):
            verdicts.append(RowVerdict(*ident, verdict="skipped", note=f"current run: {cur_rows[key]['status']}"))
        elif key not in base_rows:
            verdicts.append(RowVerdict(*ident, verdict="new", note="not in the baseline"))
        else:
            verdict, checks, note = _judge(base_rows[key], cur_rows[key], latency_tol, drift_tol_mm)
            verdicts.append(RowVerdict(*ident, verdict=verdict, checks=checks, note=note))
    return RegressionReport(tuple(verdicts), base_env, cur_env, latency_tol, drift_tol_mm, notes)


# ---------------------------------------------------------------------------------------------
# renderers
# ---------------------------------------------------------------------------------------------

_STYLE = {"ok": "green", "improved": "cyan", "regression": "bold red", "missing": "bold red", "error": "bold red",
          "new": "yellow", "skipped": "dim", "not measured": "dim"}


def _primary(r: RowVerdict) -> tuple[str, str, str, str]:
    """(metric, baseline, current, change) of the row's most telling check, formatted for humans."""
    if not r.checks:
        return "", "", "", ""
    c = max(r.checks, key=lambda k: (k.failed, k.change / k.threshold if k.threshold else k.change))
    change = f"{c.change:+.1%}" if c.relative else f"{c.change:+.3f} mm"
    return c.metric, f"{c.baseline:.4g}", f"{c.current:.4g}", change


def render_table(report: RegressionReport) -> Table:
    """A rich table, one line per row, failures first."""
    from rich.table import Table

    table = Table(title=f"regress: {report.summary()}")
    for col in ("row", "verdict", "metric", "baseline", "current", "change", "detail"):
        table.add_column(col, justify="right" if col in ("baseline", "current", "change") else "left")
    for r in sorted(report.rows, key=lambda r: (not r.failed, r.name)):
        metric, b, c, ch = _primary(r)
        table.add_row(r.name, f"[{_STYLE[r.verdict]}]{r.verdict}[/]", metric, b, c, ch, r.message())
    return table


def failure_line(report: RegressionReport) -> str:
    """The one-line error of a failed gate: the summary and each failing row with its verdict."""
    return f"{report.summary()}: " + ", ".join(f"{r.name} ({r.verdict})" for r in report.failures)


def to_markdown(report: RegressionReport) -> str:
    """Markdown for a CI step summary ($GITHUB_STEP_SUMMARY): verdict line, environment, the row table."""
    from .results import markdown_rows

    icon = "❌" if report.failures else "✅"
    lines = [f"## {icon} SimpleHand regression gate: {report.summary()}", ""]
    dev = report.current_env.get("device_name", "") or "(unknown device)"
    lines.append(f"Device **{dev}**, TensorRT {report.current_env.get('tensorrt_version') or 'n/a'}; "
                 f"tolerances: latency {report.latency_tol:.0%} and significant at {CONFIDENCE:.0%} (batch means "
                 f"of the kept samples), drift "
                 f"{report.drift_tol_mm:g} mm. Baseline run `{report.baseline_env.get('run_id', '')}`, current run "
                 f"`{report.current_env.get('run_id', '')}`.")
    for note in report.env_notes:
        lines.append(f"\n> environment change allowed: {note}")
    lines.append("")
    rows = ((f"`{r.name}`", f"**{r.verdict}**" if r.failed else r.verdict, *_primary(r), r.message())
            for r in sorted(report.rows, key=lambda r: (not r.failed, r.name)))
    return "\n".join(lines) + "\n" + markdown_rows(("row", "verdict", "metric", "baseline", "current", "change",
                                                     "detail"), rows)


def to_junit(report: RegressionReport, suite_name: str = "simplehand-regress") -> str:
    """JUnit XML: one testcase per row (classname = device slug), failures carry the reason."""
    slug = report.current_env.get("device_slug", "") or "device"
    graded = [r for r in report.rows if r.verdict != "new"]
    suite = ET.Element("testsuite", name=suite_name, tests=str(len(graded)), failures=str(len(report.failures)),
                       errors="0", skipped=str(sum(r.verdict == "skipped" for r in graded)))
    for r in graded:
        case = ET.SubElement(suite, "testcase", classname=f"regress.{slug}", name=r.name, time="0")
        if r.failed:
            fail = ET.SubElement(case, "failure", message=f"{r.name}: {r.verdict}: {r.message()}", type=r.verdict)
            fail.text = "\n".join(c.describe() for c in r.checks) or r.message()
        elif r.verdict in ("skipped", "not measured"):
            ET.SubElement(case, "skipped", message=f"{r.verdict}: {r.note}")
        elif r.checks:
            ET.SubElement(case, "system-out").text = "\n".join(c.describe() for c in r.checks)
    suites = ET.Element("testsuites", name=suite_name, tests=suite.get("tests", "0"),
                        failures=suite.get("failures", "0"))
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"

