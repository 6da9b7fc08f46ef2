"""Calibration sets: a deterministic sample of evaluation-style crops with labels and a manifest.

The same crops feed INT8 calibration, drift measurement and the harness's accuracy runs, so a set
is identified by its content (sha256 of each file) and by the settings that made it. A set built
with other settings is rebuilt, never silently reused; a set whose files no longer match their
hashes is an error.

Layout of `calibration/<name>/`: `images.npy` (N,3,224,224) float32 BGR 0..255, `labels.npz`
(`uv` (N,21,2) crop-normalised; `xyz` (N,21,3) and `vertices` (N,778,3) root-relative metres when
the split has them), `manifest.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .config import IMAGE_SIZE
from .defaults import DEFAULT_CALIB_NUM
from .errors import UsageError
from .fileio import atomic_path, check_out_dir, sha256_file, utc_now
from .progress import track

FILES = ("images.npy", "labels.npz")
LABEL_SHAPES = {"uv": (21, 2), "xyz": (21, 3), "vertices": (778, 3)}


@dataclass
class CalibrationSet:
    path: Path
    images: np.ndarray
    uv: np.ndarray | None
    xyz: np.ndarray | None
    vertices: np.ndarray | None
    manifest: dict[str, Any]
    fingerprint: str

    def __len__(self) -> int:
        return len(self.images)


def stratified_indices(total: int, num: int, seed: int) -> list[int]:
    """One seeded pick per equal stratum of [0, total): spread over the whole set, reproducible."""
    if num > total:
        raise UsageError(f"--num {num} is larger than the data ({total} samples)")
    if num < 1:
        raise UsageError(f"--num must be >= 1 (got {num})")
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, total, num + 1)
    lo, hi = np.floor(edges[:-1]).astype(int), np.floor(edges[1:]).astype(int)
    return [int(rng.integers(a, max(a + 1, b))) for a, b in zip(lo, hi, strict=True)]


def _settings(source: str, split: str, num: int, seed: int, scale_enlarge: float) -> dict[str, Any]:
    return {"source": source, "split": split, "num": num, "seed": seed,
            "crop": {"scale_enlarge": scale_enlarge, "size": IMAGE_SIZE, "rotation": 0.0}}


def resolve_split(split: str | None, dexycb: object = None) -> str:
    """`--split` left out: FreiHAND/synthetic `training`; DexYCB `s0-train` on the full release, else `all`."""
    if split is not None:
        return split
    if dexycb is not None:
        from .data.dexycb import default_split

        return default_split(dexycb, "calibration")  # type: ignore[arg-type]
    return "training"


def _check_options(freihand: object, synthetic: bool, split: str | None, scale_enlarge: float,
                   dexycb: object = None) -> None:
    if sum((freihand is not None, dexycb is not None, bool(synthetic))) != 1:
        raise UsageError("give exactly one source: --freihand DIR or --synthetic (or --dexycb DIR)")
    if dexycb is not None:
        from .data.dexycb import SPLITS
    else:
        from .data.freihand import SPLITS  # type: ignore[assignment]

    if split is not None and split not in SPLITS:
        raise UsageError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
    if not np.isfinite(scale_enlarge) or scale_enlarge <= 0:
        raise UsageError(f"--scale-enlarge {scale_enlarge}: must be a positive number (1.25 = official evaluation)")


def build_calibration_set(
    out: str | os.PathLike[str],
    *,
    freihand: str | os.PathLike[str] | None = None,
    synthetic: bool = False,
    split: str | None = None,
    num: int = DEFAULT_CALIB_NUM,
    seed: int = 0,
    scale_enlarge: float = 1.25,
    progress: bool = True,
    dexycb: str | os.PathLike[str] | None = None,
) -> Path:
    """Crop `num` samples (stratified, seeded) from FreiHAND, DexYCB or a synthetic set and write them atomically.

    DexYCB: a stratum's pick that has no hand moves on to the next frame with one (counted in the manifest as
    `handless_skipped`); left hands are mirrored to right hands before cropping."""
    _check_options(freihand, synthetic, split, scale_enlarge, dexycb)
    split = resolve_split(split, dexycb)
    check_out_dir(Path(out), ("manifest.json", *FILES), "a calibration set")
    if dexycb is not None:
        from .data.dexycb import DexYCB

        ds = DexYCB(dexycb, split)
        chosen: list[int] = []
        handless = 0
        for i in stratified_indices(len(ds), num, seed):
            j, passed = ds.next_with_hand(i, set(chosen))
            chosen.append(j)
            handless += passed
        return _build(out, ds, f"dexycb:{Path(dexycb).resolve()}", split, num, seed, scale_enlarge, progress,
                      indices=chosen, extra={"handless_skipped": handless})
    if synthetic:
        with tempfile.TemporaryDirectory(prefix="simplehand-synth-") as tmp:
            from .data.synthetic import generate

            root = generate(Path(tmp) / "freihand", num if split == "training" else 1, seed=seed,
                            eval_num=num if split == "evaluation" else 0, progress=progress)
            return _build(out, _freihand(root, split), f"synthetic:seed={seed}", split, num, seed, scale_enlarge,
                          progress)
    assert freihand is not None
    return _build(out, _freihand(Path(freihand), split), str(Path(freihand).resolve()), split, num, seed,
                  scale_enlarge, progress)


def _freihand(root: Path, split: str) -> Any:
    from .data.freihand import FreiHAND

    return FreiHAND(root, split)


@dataclass(frozen=True)
class CalibSetConfig:
    """`simplehand-deploy calib-set`: where, from which source (exactly one), how many crops; the command's defaults."""

    out: Path
    freihand: Path | None = None
    synthetic: bool = False
    split: str | None = None  # None: resolve_split (training; DexYCB s0-train on the full release, else all)
    num: int = DEFAULT_CALIB_NUM
    seed: int = 0
    scale_enlarge: float = 1.25
    progress: bool = True
    dexycb: Path | None = None

    @classmethod
    def from_cli(cls, *, quiet: bool = False, **options: Any) -> CalibSetConfig:
        """Options left at None take the defaults above; the source, split and box enlargement are checked here."""
        cfg = cls(progress=not quiet, **{k: v for k, v in options.items() if v is not None})
        _check_options(cfg.freihand, cfg.synthetic, cfg.split, cfg.scale_enlarge, cfg.dexycb)
        return cfg


def run_calib_set(cfg: CalibSetConfig) -> Path:
    """Build the set `cfg` describes; the folder written."""
    return build_calibration_set(cfg.out, freihand=cfg.freihand, synthetic=cfg.synthetic, split=cfg.split,
                                 num=cfg.num, seed=cfg.seed, scale_enlarge=cfg.scale_enlarge, progress=cfg.progress,
                                 dexycb=cfg.dexycb)


def _build(out, ds: Any, source: str, split: str, num: int, seed: int, scale: float, progress: bool, *,
           indices: list[int] | None = None, extra: dict[str, Any] | None = None) -> Path:
    from .data.crop import crop_sample

    indices = indices if indices is not None else stratified_indices(len(ds), num, seed)
    images = np.zeros((num, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    labels: dict[str, list[np.ndarray]] = {"uv": [], "xyz": [], "vertices": []}
    for row, i in enumerate(track(indices, "cropping", progress)):
        crop, lab = crop_sample(ds[i], scale_enlarge=scale)
        images[row] = crop.image
        for k in labels:
            if k in lab:
                labels[k].append(lab[k])
    arrays: dict[str, Any] = {k: np.stack(v) for k, v in labels.items() if len(v) == num}
    with atomic_path(out, is_dir=True) as tmp:
        np.save(tmp / "images.npy", images)
        np.savez(tmp / "labels.npz", **arrays)
        manifest = {
            "tool": "simplehand-deploy",
            "version": __version__,
            **_settings(source, split, num, seed, scale),
            "indices": indices,
            **(extra or {}),
            "labels": sorted(arrays),
            "files": {name: sha256_file(tmp / name) for name in FILES},
            "created": utc_now(),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return Path(out)


def load_calibration_set(path: str | os.PathLike[str], verify: bool = True) -> CalibrationSet:
    """Load a set; with `verify`, every file must match the sha256 in its manifest."""
    p = Path(path)
    man_path = p / "manifest.json"
    if not p.is_dir():
        raise UsageError(f"calibration set {p}: no such folder (build one with `simplehand-deploy calib-set`)")
    if not man_path.is_file():
        raise UsageError(f"calibration set {p}: missing manifest.json (rebuild it with `simplehand-deploy calib-set`)")
    try:
        manifest = json.loads(man_path.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UsageError(f"{man_path}: not a calibration manifest (rebuild the set)") from None
    for name in FILES:
        if not (p / name).is_file():
            raise UsageError(f"calibration set {p}: missing {name} (rebuild the set)")
        if verify and sha256_file(p / name) != files.get(name):
            raise UsageError(f"calibration set {p}: {name} does not match its manifest hash (modified? rebuild it)")
    try:
        images = np.load(p / "images.npy", allow_pickle=False)
        with np.load(p / "labels.npz", allow_pickle=False) as npz:
            labels = dict(npz)
    except (ValueError, OSError) as exc:
        raise UsageError(f"calibration set {p}: unreadable arrays ({exc})") from None
    if images.ndim != 4 or images.shape[1:] != (3, IMAGE_SIZE, IMAGE_SIZE) or images.dtype != np.float32:
        raise UsageError(f"{p / 'images.npy'}: shape {images.shape} {images.dtype}, expected (N,3,224,224) float32")
    if len(images) == 0:
        raise UsageError(f"calibration set {p}: empty (0 images)")
    for k, v in labels.items():
        want = (len(images), *LABEL_SHAPES.get(k, v.shape[1:]))
        if v.shape != want:
            raise UsageError(f"{p / 'labels.npz'}: {k} has shape {v.shape}, expected {want} (rebuild the set)")
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return CalibrationSet(p, images, labels.get("uv"), labels.get("xyz"), labels.get("vertices"), manifest, digest)


def calibration_set_matches(
    out: str | os.PathLike[str],
    *,
    freihand: str | os.PathLike[str] | None = None,
    synthetic: bool = False,
    split: str | None = None,
    num: int = DEFAULT_CALIB_NUM,
    seed: int = 0,
    scale_enlarge: float = 1.25,
    dexycb: str | os.PathLike[str] | None = None,
) -> bool:
    """`out` holds a set built with exactly these settings whose files verify against its manifest."""
    source = f"synthetic:seed={seed}" if synthetic else str(Path(freihand).resolve()) if freihand else ""
    source = f"dexycb:{Path(dexycb).resolve()}" if dexycb is not None else source
    wanted = _settings(source, resolve_split(split, dexycb), num, seed, scale_enlarge)
    try:
        existing = load_calibration_set(out, verify=True)
    except UsageError:
        return False
    return all(existing.manifest.get(k) == v for k, v in wanted.items())


def ensure_calibration_set(out: str | os.PathLike[str], *, progress: bool = True, **settings: Any) -> Path:
    """Reuse `out` only when it was built with exactly these settings (`build_calibration_set`'s keywords) and
    verifies; else rebuild."""
    if calibration_set_matches(out, **settings):
        return Path(out)
    return build_calibration_set(out, **settings, progress=progress)
