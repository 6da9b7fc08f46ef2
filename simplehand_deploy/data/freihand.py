"""FreiHAND as it ships (v2 layout) and simpleHand's per-image layout, read lazily.

v2: `<root>/<split>/rgb/%08d.jpg` with `<root>/<split>_{K,xyz,verts,...}.json`; image i uses
annotation i mod M (the training set repeats its annotations over 4 background versions).
xyz/verts may be absent for the evaluation split.
Per-image: a JSON list of image paths; each `X.jpg` has a sibling `X.json` with `xyz`, `uv`, `K`,
`vertices`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError

SPLITS = ("training", "evaluation")


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not valid JSON (not UTF-8 text; is it the right file?)") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None


def _load_list(path: Path) -> list:
    """A per-annotation JSON file: must be a list (one entry per annotation), else indexing it misleads."""
    data = _load_json(path)
    if not isinstance(data, list):
        raise UsageError(f"{path}: expected a JSON list with one entry per annotation, got {type(data).__name__}")
    return data


def _array(value: Any, shape: tuple[int, ...], source: str, index: int, field: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != shape:
        got = None if arr is None else arr.shape
        raise UsageError(f"{source}: entry {index} field {field!r} has shape {got}, expected {shape}")
    return arr


def project(xyz: np.ndarray, K: np.ndarray) -> np.ndarray:
    p = xyz @ K.T
    return p[:, :2] / p[:, 2:3]


class FreiHAND:
    """A torch-compatible map-style dataset of raw samples (no cropping).

    `ds[i]` -> dict(image (H,W,3) uint8 BGR, K (3,3), xyz (21,3)|None, vertices (778,3)|None,
    uv (21,2) pixels|None, index).
    """

    _K: list | None  # per-annotation intrinsics (v2 layout); None for the per-image layout

    def __init__(self, root: str | os.PathLike[str], split: str = "training") -> None:
        self.root = Path(root)
        self.split = split
        if self.root.is_file() and self.root.suffix == ".json":
            self._init_per_image()
        elif self.root.is_dir():
            self._init_v2()
        else:
            raise UsageError(f"FreiHAND path {self.root}: no such folder (or JSON image list)")

    # -- layouts ---------------------------------------------------------------------------------
    def _init_v2(self) -> None:
        if self.split not in SPLITS:
            raise UsageError(f"split {self.split!r}: choose one of {', '.join(SPLITS)}")
        rgb = self.root / self.split / "rgb"
        if not rgb.is_dir():
            raise UsageError(f"FreiHAND folder {self.root}: missing {self.split}/rgb/ (is this the v2 layout?)")
        self.images = sorted(p for p in rgb.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not self.images:
            raise UsageError(f"{rgb}: no images")
        k_path = self.root / f"{self.split}_K.json"
        if not k_path.is_file():
            raise UsageError(f"FreiHAND folder {self.root}: missing {k_path.name}")
        self._K = _load_list(k_path)
        self._xyz = self._optional(f"{self.split}_xyz.json")
        self._verts = self._optional(f"{self.split}_verts.json")
        self._uv = None
        m = len(self._K)
        if m == 0 or len(self.images) % m:
            raise UsageError(
                f"{k_path}: {m} annotations do not divide {len(self.images)} images in {rgb} (expected a multiple)"
            )
        for name, data in (("xyz", self._xyz), ("verts", self._verts)):
            if data is not None and len(data) != m:
                raise UsageError(f"{self.split}_{name}.json: {len(data)} entries, expected {m} (as in {k_path.name})")
        self._sources = {"K": str(k_path), "xyz": f"{self.split}_xyz.json", "verts": f"{self.split}_verts.json"}

    def _optional(self, name: str) -> list | None:
        path = self.root / name
        if not path.is_file():
            if self.split == "training" and name.endswith("_xyz.json"):
                raise UsageError(f"FreiHAND folder {self.root}: missing {name} (required for training)")
            return None
        return _load_list(path)

    def _init_per_image(self) -> None:
        listing = _load_json(self.root)
        if not isinstance(listing, list) or not all(isinstance(p, str) for p in listing):
            raise UsageError(f"{self.root}: expected a JSON list of image paths")
        if not listing:
            raise UsageError(f"{self.root}: the image list is empty")
        base = self.root.parent
        self.images = [Path(p) if Path(p).is_absolute() else base / p for p in listing]
        self._K = None

    # -- access ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.images)

    def annotation(self, i: int) -> dict[str, Any]:
        """Labels of image i without decoding the image."""
        if self._K is None:
            return self._per_image_annotation(i)
        a = i % len(self._K)
        K = _array(self._K[a], (3, 3), self._sources["K"], a, "K")
        xyz = _array(self._xyz[a], (21, 3), self._sources["xyz"], a, "xyz") if self._xyz is not None else None
        verts = _array(self._verts[a], (778, 3), self._sources["verts"], a, "verts") if self._verts else None
        uv = project(xyz, K) if xyz is not None else None
        return {"K": K, "xyz": xyz, "vertices": verts, "uv": uv, "index": i}

    def _per_image_annotation(self, i: int) -> dict[str, Any]:
        img = self.images[i]
        ann_path = img.with_suffix(".json")
        if not ann_path.is_file():
            raise UsageError(f"{ann_path}: missing annotation for image {img.name}")
        ann = _load_json(ann_path)
        src = str(ann_path)
        if not isinstance(ann, dict):
            raise UsageError(f"{ann_path}: expected a JSON object with K, xyz, uv, vertices; got {type(ann).__name__}")
        K = _array(ann.get("K"), (3, 3), src, i, "K")
        xyz = _array(ann["xyz"], (21, 3), src, i, "xyz") if "xyz" in ann else None
        verts = _array(ann["vertices"], (778, 3), src, i, "vertices") if "vertices" in ann else None
        uv = _array(ann["uv"], (21, 2), src, i, "uv") if "uv" in ann else (project(xyz, K) if xyz is not None else None)
        return {"K": K, "xyz": xyz, "vertices": verts, "uv": uv, "index": i}

    def __getitem__(self, i: int) -> dict[str, Any]:
        import cv2

        if not 0 <= i < len(self):
            raise IndexError(i)
        sample = self.annotation(i)
        if not self.images[i].is_file():
            raise UsageError(f"{self.images[i]}: missing image (listed as sample {i} of {self.root})")
        image = cv2.imread(str(self.images[i]), cv2.IMREAD_COLOR)  # BGR, as the official code trained on
        if image is None:
            raise UsageError(f"{self.images[i]}: cannot decode image")
        sample["image"] = image
        return sample
