"""Regression gate: compare a benchmark run against a device baseline and say what got worse.

A CI gate is only useful if it is quiet when nothing changed and loud when something did. Latency on a
real device wobbles from run to run, so a latency or throughput change counts as a regression only
when it is beyond the tolerance *and* beyond the noise both runs measured (their coefficients of
variation). Accuracy drift is deterministic for a given artifact, so it is gated on an absolute
tolerance in millimetres. Rows the baseline has and the current run lacks are regressions too: a
runner that silently stopped running must not pass.

Rows are matched by (runner, precision, batch_size, measurement) on the same device. Comparing two
different devices or TensorRT versions is refused (UsageError, exit 2) unless the caller says the
change is intended, because latency across different hardware is not a regression signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from xml.etree import ElementTree as ET

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
NOISE_K = 3.0

Verdict = Literal["ok", "improved", "regression", "missing", "error", "new", "skipped"]
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

    def describe(self) -> str:
        if self.relative:
            return (f"{self.metric} {self.baseline:.4g} -> {self.current:.4g} ({self.change:+.1%} worse, "
                    f"limit {self.threshold:.1%})")
        return (f"{self.metric} {self.baseline:.4g} -> {self.current:.4g} ({self.change:+.4g} mm, "
                f"limit {self.threshold:.4g} mm)")


@dataclass(frozen=True)
class RowVerdict:
    """The verdict for one (runner, precision, batch, measurement) row."""

    runner: str
    precision: str
    batch_size: int
    measurement: str
    verdict: Verdict
    checks: tuple[Check, ...] = ()
    note: str = ""

    @property
    def name(self) -> str:
        """A stable row name used in every rendering (table, markdown, JUnit testcase)."""
        return f"{self.runner}/{self.precision}/b{self.batch_size}/{self.measurement}"

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
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
        text = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        return f"{'FAIL' if self.failures else 'PASS'}: {len(self.rows)} rows ({text or 'none'})"

    def to_frame(self) -> pl.DataFrame:
        """One row per verdict (units in the message, not the columns) for machines and CI artifacts."""
        import polars as pl

        return pl.DataFrame(
            {
                "row": [r.name for r in self.rows],
                "runner": [r.runner for r in self.rows],
                "precision": [r.precision for r in self.rows],
                "batch_size": [r.batch_size for r in self.rows],
                "measurement": [r.measurement for r in self.rows],
                "verdict": [r.verdict for r in self.rows],
                "message": [r.message() for r in self.rows],
            },
            schema={"row": pl.Utf8, "runner": pl.Utf8, "precision": pl.Utf8, "batch_size": pl.Int64,
                    "measurement": pl.Utf8, "verdict": pl.Utf8, "message": pl.Utf8},
        )


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


def _env_of(df: pl.DataFrame, label: str) -> dict[str, str]:
    """The run's fingerprint (first row); UsageError when one frame mixes devices, which a gate cannot judge."""
    env: dict[str, str] = {}
    for col in ("device_name", "device_slug", "tensorrt_version", "cuda_version", "driver_version", "host",
                "run_id", "jetson_model", "jetson_power_mode", "onnxruntime_version", "torch_version"):
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
    for col in ("cuda_version", "driver_version", "jetson_power_mode"):
        b, c = base.get(col, ""), cur.get(col, "")
        if b != c:
            notes.append(f"{col} differs: baseline {b or '(none)'!r}, current {c or '(none)'!r}")
    return tuple(notes)


def _num(row: dict, col: str) -> float | None:
    v = row.get(col)
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def _latency_checks(base: dict, cur: dict, tol: float) -> tuple[Check, ...]:
    cov_b, cov_c = _num(base, "latency_cov") or 0.0, _num(cur, "latency_cov") or 0.0
    threshold = max(tol, NOISE_K * math.hypot(cov_b, cov_c))
    checks = []
    for col, higher_is_better in LATENCY_METRICS:
        b, c = _num(base, col), _num(cur, col)
        if b is None or c is None or b <= 0 or c <= 0:
            continue
        worse = (b / c - 1.0) if higher_is_better else (c / b - 1.0)
        checks.append(Check(col, b, c, worse, threshold, True, worse > threshold))
    return tuple(checks)


def _drift_checks(base: dict, cur: dict, tol_mm: float) -> tuple[Check, ...]:
    checks = []
    for col in DRIFT_METRICS:
        b, c = _num(base, col), _num(cur, col)
        if b is None or c is None:
            continue
        checks.append(Check(col, b, c, c - b, tol_mm, False, (c - b) > tol_mm))
    return tuple(checks)


def _judge(base: dict, cur: dict, latency_tol: float, drift_tol_mm: float) -> tuple[Verdict, tuple[Check, ...], str]:
    b_status, c_status = str(base.get("status") or "ok"), str(cur.get("status") or "ok")
    if b_status != "ok":
        return "skipped", (), f"baseline row not ok ({b_status})"
    if c_status != "ok":
        return "error", (), f"current run: {c_status}"
    if cur["measurement"] == "latency":
        checks = _latency_checks(base, cur, latency_tol)
        if any(c.failed for c in checks):
            return "regression", checks, ""
        improved = any(-c.change > c.threshold for c in checks)
        return ("improved" if improved else "ok"), checks, ""
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
        latency_tol: relative latency/throughput tolerance (0.10 = 10 %); the effective bar per row is
            max(latency_tol, 3 x the combined CoV of both runs) so noisy rows do not flap.
        drift_tol_mm: allowed absolute increase of each drift/accuracy metric in millimetres.
        allow_env_change: compare even if device_name or tensorrt_version differ (noted in the report).

    Raises:
        UsageError: a frame lacks key columns, mixes devices, or the environments differ without permission.
    """
    if latency_tol < 0 or drift_tol_mm < 0:
        raise UsageError("tolerances must be >= 0")
    base_env, cur_env = _env_of(baseline, "baseline"), _env_of(current, "current")
    notes = _check_env(base_env, cur_env, allow_env_change)
    base_rows, cur_rows = _index(baseline, "baseline"), _index(current, "current")
    verdicts = []
    for key in sorted(set(base_rows) | set(cur_rows), key=lambda k: tuple(str(x).zfill(6) for x in k)):
        runner, precision, batch, measurement = key
        ident = (str(runner), str(precision), int(batch), str(measurement))
        if key not in cur_rows:
            verdicts.append(RowVerdict(*ident, verdict="missing", note="in the baseline but not in the current run"))
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
          "new": "yellow", "skipped": "dim"}


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


def to_markdown(report: RegressionReport) -> str:
    """Markdown for a CI step summary ($GITHUB_STEP_SUMMARY): verdict line, environment, the row table."""
    icon = "❌" if report.failures else "✅"
    lines = [f"## {icon} SimpleHand regression gate: {report.summary()}", ""]
    dev = report.current_env.get("device_name", "") or "(unknown device)"
    lines.append(f"Device **{dev}**, TensorRT {report.current_env.get('tensorrt_version') or 'n/a'}; "
                 f"tolerances: latency {report.latency_tol:.0%} (or 3x measured CoV), drift "
                 f"{report.drift_tol_mm:g} mm. Baseline run `{report.baseline_env.get('run_id', '')}`, current run "
                 f"`{report.current_env.get('run_id', '')}`.")
    for note in report.env_notes:
        lines.append(f"\n> environment change allowed: {note}")
    lines += ["", "| row | verdict | metric | baseline | current | change | detail |",
              "|---|---|---|---:|---:|---:|---|"]
    for r in sorted(report.rows, key=lambda r: (not r.failed, r.name)):
        metric, b, c, ch = _primary(r)
        verdict = f"**{r.verdict}**" if r.failed else r.verdict
        detail = r.message().replace("|", "\\|")
        lines.append(f"| `{r.name}` | {verdict} | {metric} | {b} | {c} | {ch} | {detail} |")
    return "\n".join(lines) + "\n"


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
        elif r.verdict == "skipped":
            ET.SubElement(case, "skipped", message=r.note)
        elif r.checks:
            ET.SubElement(case, "system-out").text = "\n".join(c.describe() for c in r.checks)
    suites = ET.Element("testsuites", name=suite_name, tests=suite.get("tests", "0"),
                        failures=suite.get("failures", "0"))
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
