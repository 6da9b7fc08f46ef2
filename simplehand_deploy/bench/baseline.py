"""Device baselines and finding results on disk.

A baseline is a reviewed, committed copy of one device's results: `benchmarks/baselines/<slug>.json`
(human-diffable in a pull request, the source of truth) plus `<slug>.parquet` (exact dtypes, for
tools). Gates compare each new run against the baseline of the device it ran on, so the file name is
the device slug from the results' fingerprint.

`load_frame` is the one place that turns whatever path a user gives (a results folder, one of its
files, the results root, a baselines folder, a baseline file) into a results frame, so every
command accepts the same spellings.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..fileio import atomic_path, utc_now

if TYPE_CHECKING:
    import polars as pl

BASELINE_KIND = "simplehand-baseline"
BASELINE_VERSION = 1
DEFAULT_BASELINE_DIR = Path("benchmarks/baselines")
_RESULT_FILES = ("results.parquet", "results.json", "results.csv")
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def _is_run_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in _RESULT_FILES)


def _read_results(path: Path) -> pl.DataFrame:
    """A results folder/file; env columns the rows lack (older runs) are filled from the folder's env.json."""
    import polars as pl

    from .results import RESULT_COLUMNS, read_results

    df = read_results(path)
    env_file = (path if path.is_dir() else path.parent) / "env.json"
    if not env_file.is_file() or df.height == 0:
        return df
    try:
        env = json.loads(env_file.read_text())
    except (OSError, ValueError):
        return df
    fills = []
    for key, value in env.items() if isinstance(env, dict) else ():
        if key in df.columns and df[key].null_count() == df.height and value not in (None, ""):
            fills.append(pl.lit(value).cast(RESULT_COLUMNS.get(key, pl.Utf8), strict=False).alias(key))
    return df.with_columns(fills) if fills else df


def latest_run(root: Path, slug: str | None = None) -> Path:
    """The newest run folder under `root` (names start with a UTC timestamp), optionally for one device slug."""
    runs = sorted(p for p in root.iterdir() if p.is_dir() and _is_run_dir(p) and not p.name.startswith("."))
    if slug:
        runs = [p for p in runs if p.name.endswith(f"-{slug}")]
    if not runs:
        which = f" for device {slug!r}" if slug else ""
        raise UsageError(f"{root}: no results folders{which}; run `simplehand-bench run` first")
    return runs[-1]


def baseline_path(slug: str, directory: Path = DEFAULT_BASELINE_DIR) -> Path:
    return Path(directory) / f"{slug}.json"


def device_slug(df: pl.DataFrame) -> str | None:
    """The device a results frame was measured on (its first row's slug); None without one."""
    if "device_slug" not in df.columns or df.height == 0:
        return None
    return str(df["device_slug"][0]) or None


def _frame_slug(df: pl.DataFrame) -> str:
    if "device_slug" not in df.columns or df.height == 0:
        return ""
    values = sorted({str(v) for v in df["device_slug"].to_list() if v})
    return values[0] if len(values) == 1 else ""


def load_frame(path: Path, *, slug: str | None = None, label: str = "results") -> tuple[pl.DataFrame, Path]:
    """Read results or a baseline from any path a user might give; returns (frame, the file/folder read).

    Args:
        path: a run folder or one of its results.* files; the results root (newest run is taken);
            a baselines folder (`<slug>.json` is taken); a baseline .json/.parquet file.
        slug: device slug used to pick from a results root or a baselines folder.
        label: how to name the input in error messages (e.g. "--baseline").
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{label} {path}: does not exist; pass a results folder, one of its results.* files, "
                         "or a baseline file")
    if path.is_dir():
        if _is_run_dir(path):
            return _read_results(path), path
        subdirs = [p for p in path.iterdir() if p.is_dir() and _is_run_dir(p)]
        if subdirs:
            run = latest_run(path, slug)
            return _read_results(run), run
        baselines = sorted(path.glob("*.json"))
        if not baselines:
            raise UsageError(f"{label} {path}: holds neither results nor baselines")
        if slug:
            chosen = baseline_path(slug, path)
            if not chosen.is_file():
                names = ", ".join(p.stem for p in baselines)
                raise UsageError(f"{label} {path}: no baseline for device {slug!r} (have: {names}); create one "
                                 "with `simplehand-bench baseline --from RESULTS`")
        elif len(baselines) == 1:
            chosen = baselines[0]
        else:
            raise UsageError(f"{label} {path}: several baselines; name one file or give the current run first")
        return read_baseline(chosen), chosen
    if path.suffix == ".json" and _looks_like_baseline(path):
        return read_baseline(path), path
    if path.suffix == ".parquet" and path.name not in _RESULT_FILES:
        import polars as pl

        from .results import validate

        df = pl.read_parquet(path)
        validate(df)
        return df, path
    return _read_results(path), path


def _looks_like_baseline(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("kind") == BASELINE_KIND


def read_baseline(path: Path) -> pl.DataFrame:
    """A baseline JSON back to a results frame with the schema's dtypes."""
    import polars as pl

    from .results import RESULT_COLUMNS, validate

    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not readable as a baseline JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("kind") != BASELINE_KIND or not isinstance(doc.get("rows"), list):
        raise UsageError(f"{path}: not a {BASELINE_KIND} file; create one with `simplehand-bench baseline --from R`")
    if doc.get("version") != BASELINE_VERSION:
        raise UsageError(f"{path}: baseline version {doc.get('version')!r}, this tool reads {BASELINE_VERSION}")
    rows: list[dict[str, Any]] = doc["rows"]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    schema = {c: RESULT_COLUMNS.get(c, pl.Utf8) for c in columns}
    df = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    validate(df)
    return _with_parquet_samples(df, Path(path).with_suffix(".parquet"))


def _with_parquet_samples(df: pl.DataFrame, parquet: Path) -> pl.DataFrame:
    """The per-iteration samples live in the baseline's .parquet (the JSON stays diffable); attach them.

    Only when the parquet holds the same rows in the same order (same key columns): a stale or edited
    pair of files falls back to the JSON's summary columns, which the gate also accepts.
    """
    import polars as pl

    from .regress import KEY_COLUMNS, SAMPLES

    if SAMPLES in df.columns or not parquet.is_file():
        return df
    try:
        side = pl.read_parquet(parquet, columns=[*KEY_COLUMNS, SAMPLES])
    except Exception:
        return df
    keys = list(KEY_COLUMNS)
    if side.height != df.height or not side.select(keys).equals(df.select(keys).cast(side.select(keys).schema)):
        return df
    return df.with_columns(side[SAMPLES])


def _json_value(v: Any) -> Any:
    """NaN/inf are not JSON: store them as null (the schema treats null as "not measured")."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def write_baseline(results: pl.DataFrame, out_dir: Path = DEFAULT_BASELINE_DIR, *, source: str = "") -> Path:
    """Write `<out_dir>/<device_slug>.json` and `.parquet` from one device's results; returns the JSON path.

    Rows that failed (status != ok) are kept: a baseline records what the device could do, and a gate
    then tolerates a runner that was already failing but flags one that newly fails.
    """
    from .results import SAMPLES, validate

    validate(results)
    if results.height == 0:
        raise UsageError("--from: the results hold no rows; nothing to make a baseline of")
    slug = _frame_slug(results)
    if not slug:
        raise UsageError("--from: results must come from exactly one device (one device_slug); got "
                         f"{sorted({str(v) for v in results['device_slug'].to_list()})}")
    if not _SLUG_RE.match(slug):
        raise UsageError(f"--from: device_slug {slug!r} is not lowercase [a-z0-9-]")
    out_dir = Path(out_dir)
    env_cols = [c for c in ("device_name", "device_slug", "host", "os", "arch", "torch_version",
                            "onnxruntime_version", "tensorrt_version", "cuda_version", "driver_version",
                            "jetson_model", "jetson_power_mode", "toolkit_version", "run_id", "timestamp")
                if c in results.columns]
    first = results.row(0, named=True)
    doc = {
        "kind": BASELINE_KIND,
        "version": BASELINE_VERSION,
        "device_slug": slug,
        "device_name": str(first.get("device_name") or ""),
        "created": utc_now(),
        "source": source,
        "env": {c: first.get(c) for c in env_cols},
        # per-iteration samples only in the .parquet: the JSON is reviewed in pull requests
        "rows": [{k: _json_value(v) for k, v in row.items() if k != SAMPLES} for row in results.to_dicts()],
    }
    json_path = out_dir / f"{slug}.json"
    with atomic_path(out_dir / f"{slug}.parquet") as tmp:
        results.write_parquet(tmp)
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1, default=str, allow_nan=False) + "\n")
    return json_path


def pool_runs(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Several runs of one device -> one baseline frame that knows how much a run moves between repeats.

    A single run's samples say how well *that run* pins down its median; they cannot see how much the
    next run of the same command will differ (a shared VM's neighbours, frequency and cache pressure
    change over tens of seconds). A baseline recorded from n runs can: every latency row that is ok in
    all runs gets the geometric mean of the runs' `latency_p50_ms` / `latency_mean_ms` /
    `throughput_img_s`, `baseline_runs` = n, and the standard deviation of the log values across runs
    (`latency_p50_run_cov`, `throughput_run_cov`: relative, like `latency_cov`), from which the gate
    bounds a new single run's change. Samples are dropped (they belong to single runs). Every other row
    (accuracy, skipped, errors, latency rows not ok in every run) is the first run's.
    """
    import polars as pl

    from .regress import KEY_COLUMNS, RUN_SPREAD, SAMPLES
    from .results import conform

    if len(frames) < 2:
        return frames[0]
    slugs = {_frame_slug(f) for f in frames}
    if len(slugs) != 1 or "" in slugs:
        raise UsageError(f"--from: the runs must come from one device; got device slugs {sorted(slugs)}")
    keys = list(KEY_COLUMNS)
    first = frames[0]

    def ok_latency(df: pl.DataFrame) -> pl.DataFrame:
        return df.filter((pl.col("measurement") == "latency") & (pl.col("status") == "ok"))

    stacked = pl.concat([ok_latency(conform(f)).select([*keys, "latency_p50_ms", "latency_mean_ms",
                                                         "throughput_img_s"]) for f in frames], how="vertical")
    n = len(frames)
    logs = [pl.col(c).log() for c in ("latency_p50_ms", "latency_mean_ms", "throughput_img_s")]
    pooled = (stacked.group_by(keys, maintain_order=True)
              .agg(pl.len().alias("_n"), *[x.mean().exp().alias(c) for x, c in zip(logs, ("latency_p50_ms",
                   "latency_mean_ms", "throughput_img_s"), strict=True)],
                   logs[0].std(ddof=1).alias(RUN_SPREAD["latency_p50_ms"]),
                   logs[2].std(ddof=1).alias(RUN_SPREAD["throughput_img_s"]))
              .filter(pl.col("_n") == n).drop("_n")
              .with_columns(pl.lit(n, pl.Int64).alias("baseline_runs")))
    base = conform(first)
    replaced = [c for c in pooled.columns if c not in keys]
    merged = (base.drop([c for c in replaced if c in base.columns])
              .join(pooled, on=keys, how="left", nulls_equal=True)
              .with_columns(pl.when(pl.col("baseline_runs").is_not_null()).then(pl.lit(None))
                            .otherwise(pl.col(SAMPLES)).alias(SAMPLES)))
    return merged.select([*base.columns, *[c for c in merged.columns if c not in base.columns]])


@dataclass(frozen=True)
class Gate:
    """`simplehand-bench regress`: the report and which files were compared."""

    report: Any
    baseline: Path
    current: Path


@dataclass(frozen=True)
class GateConfig:
    """`simplehand-bench regress`: what to compare, how strictly, and which reports to write."""

    baseline: Path
    current: Path
    latency_tol: str | float = "10%"
    drift_tol_mm: float = 0.05
    allow_env_change: bool = False
    device: str | None = None  # device slug to pick from a results root (default: the current run's)
    junit: Path | None = None
    markdown: Path | None = None

    @classmethod
    def from_cli(cls, **options: Any) -> GateConfig:
        return cls(**{k: v for k, v in options.items() if v is not None})


def gate(cfg: GateConfig) -> Gate:
    """Load both sides (the baseline for the current run's device), compare, write JUnit / markdown if asked."""
    from .regress import compare, parse_tolerance, to_junit, to_markdown

    tol = parse_tolerance(cfg.latency_tol)
    cur_df, cur_path = load_frame(cfg.current, slug=cfg.device, label="--current")
    base_df, base_path = load_frame(cfg.baseline, slug=cfg.device or device_slug(cur_df), label="--baseline")
    report = compare(base_df, cur_df, latency_tol=tol, drift_tol_mm=cfg.drift_tol_mm,
                     allow_env_change=cfg.allow_env_change)
    for path, write in ((cfg.junit, to_junit), (cfg.markdown, to_markdown)):
        if path is not None:
            with atomic_path(path) as tmp:
                tmp.write_text(write(report))
    return Gate(report, base_path, cur_path)


@dataclass(frozen=True)
class BaselineRecord:
    """What `record_baseline` wrote: the JSON (its .parquet beside it), how many rows, read from which run(s)."""

    json: Path
    rows: int
    sources: tuple[Path, ...]

    @property
    def parquet(self) -> Path:
        return self.json.with_suffix(".parquet")

    @property
    def source(self) -> Path:
        """The (first) run read."""
        return self.sources[0]

    def describe(self) -> str:
        what = (str(self.source) if len(self.sources) == 1 else
                f"{len(self.sources)} runs pooled: the gate bounds a new run by their run-to-run spread")
        return f"baseline: wrote {self.json} and {self.parquet.name} ({self.rows} rows from {what})"


def record_baseline(sources: Path | Sequence[Path], out: Path = DEFAULT_BASELINE_DIR, *,
                    device: str | None = None) -> BaselineRecord:
    """The `baseline` command: read one device's run(s) from any path `load_frame` accepts (`--from`, repeatable),
    pool several (`pool_runs`), and write them as that device's baseline in `out`."""
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    if not sources:
        raise UsageError("--from: give at least one results folder")
    loaded = [load_frame(src, slug=device, label="--from") for src in sources]
    paths = tuple(path for _, path in loaded)
    if len(set(paths)) != len(paths):
        raise UsageError("--from: the same run was given twice; pass distinct runs (e.g. five repeats of the "
                         "same command)")
    pooled = pool_runs([df for df, _ in loaded])
    return BaselineRecord(write_baseline(pooled, out, source=", ".join(map(str, paths))), pooled.height, paths)


