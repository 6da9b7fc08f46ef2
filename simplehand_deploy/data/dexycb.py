"""DexYCB as released, read lazily: per-camera frames with 3-D joints, mirrored to right hands.

Layout (as NVlabs' dex-ycb-toolkit reads it):
`<root>/<subject>/<sequence>/meta.yml` (`serials`, `num_frames`, `mano_sides`, `mano_calib`),
`<root>/<subject>/<sequence>/<serial>/color_%06d.jpg` (640 x 480) and `labels_%06d.npz`
(`joint_3d` (1, 21, 3) metres, camera frame; `joint_2d` (1, 21, 2) pixels; `pose_m` (1, 51) MANO PCA pose +
translation), `<root>/calibration/intrinsics/<serial>_640x480.yml` (`color: fx, fy, ppx, ppy`) and
`<root>/calibration/mano_<calib>/mano.yml` (`betas`). Joints are in FreiHAND's order already.

Splits: the toolkit's `s0` rules (seen subjects, all 8 cameras; sequences i % 5 == 4 held out: subjects 1-2
for val, 3-10 for test) need the full release; `all` takes every subject/sequence/serial folder found, for
any subset. Frames without a hand (joint_3d all -1, or all 0) are skipped and counted.

Left hands are mirrored to right hands, which the network (trained on right hands, MANO's right-hand
topology) needs: the image is flipped left-right, x_2d -> W - 1 - x_2d, the camera's principal point
ppx -> W - 1 - ppx, and 3-D x -> -x, so the mirrored labels still project onto the mirrored image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError

WIDTH, HEIGHT = 640, 480
SUBJECTS = tuple(f"{d}-subject-{i:02d}" for i, d in enumerate(
    ("20200709", "20200813", "20200820", "20200903", "20200908", "20200918", "20200928", "20201002", "20201015",
     "20201022"), 1))
SERIALS = ("836212060125", "839512060362", "840412060917", "841412060263", "932122060857", "932122060861",
           "932122061900", "932122062010")
SEQUENCES_PER_SUBJECT = 100
SPLITS = ("s0-train", "s0-val", "s0-test", "all")


def s0_selection(split: str) -> tuple[tuple[int, ...], list[int]]:
    """(subject indices, sequence indices) of the toolkit's `s0` setup; every camera is used."""
    held_out = [i for i in range(SEQUENCES_PER_SUBJECT) if i % 5 == 4]
    if split == "s0-train":
        return tuple(range(10)), [i for i in range(SEQUENCES_PER_SUBJECT) if i % 5 != 4]
    if split == "s0-val":
        return (0, 1), held_out
    if split == "s0-test":
        return tuple(range(2, 10)), held_out
    raise UsageError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")


def _yaml(path: Path, what: str) -> Any:
    import yaml

    if not path.is_file():
        raise UsageError(f"{path}: missing {what}")
    try:
        return yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid YAML ({type(exc).__name__})") from None


def read_intrinsics(root: Path, serial: str) -> np.ndarray:
    """K (3, 3) of a camera from `calibration/intrinsics/<serial>_640x480.yml`."""
    path = root / "calibration" / "intrinsics" / f"{serial}_{WIDTH}x{HEIGHT}.yml"
    data = _yaml(path, f"intrinsics of camera {serial} (the release's calibration/ folder)")
    colour = data.get("color") if isinstance(data, dict) else None
    try:
        fx, fy, ppx, ppy = (float(colour[k]) for k in ("fx", "fy", "ppx", "ppy"))  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        raise UsageError(f"{path}: expected 'color:' with fx, fy, ppx, ppy") from None
    return np.array([[fx, 0, ppx], [0, fy, ppy], [0, 0, 1.0]])


def is_handless(joint_3d: np.ndarray) -> bool:
    """No hand in the frame: the release writes -1 everywhere (and some tools 0)."""
    return bool(np.all(joint_3d == -1) or np.all(joint_3d == 0))


def mirror_uv(uv: np.ndarray, width: int = WIDTH) -> np.ndarray:
    out = np.array(uv, dtype=np.float64, copy=True)
    out[..., 0] = width - 1 - out[..., 0]
    return out


def mirror_intrinsics(K: np.ndarray, width: int = WIDTH) -> np.ndarray:
    out = np.array(K, dtype=np.float64, copy=True)
    out[0, 2] = width - 1 - out[0, 2]
    return out


@dataclass(frozen=True)
class Sequence:
    path: str  # <subject>/<sequence>
    serials: tuple[str, ...]
    num_frames: int
    side: str  # "right" | "left"
    calib: str  # MANO calibration name (betas in calibration/mano_<calib>/mano.yml)


class DexYCB:
    """Map-style dataset of raw frames (no cropping), FreiHAND's sample keys.

    `annotation(i)` -> None for a frame without a hand, else dict(K, xyz (21,3), uv (21,2) pixels,
    vertices (778,3)|None, side, index) mirrored to a right hand; `ds[i]` adds the image (BGR uint8, mirrored).
    Vertices come from a `vertices` entry in the labels (synthetic sets) or, with the side's MANO model, from
    `pose_m` and the subject's betas.
    """

    def __init__(self, root: str | os.PathLike[str], split: str = "all", *, mano_right: Any = None,
                 mano_left: Any = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise UsageError(f"DexYCB folder {self.root}: no such folder")
        if split not in SPLITS:
            raise UsageError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
        self.split = split
        self.mano = {"right": mano_right, "left": mano_left}
        self.sequences = self._sequences()
        serials = sorted({s for q in self.sequences for s in q.serials})
        self.intrinsics = {s: read_intrinsics(self.root, s) for s in serials}
        self.frames: list[tuple[int, str, int]] = [
            (q_i, serial, f)
            for q_i, q in enumerate(self.sequences) for serial in q.serials for f in range(q.num_frames)
        ]
        if not self.frames:
            raise UsageError(f"DexYCB folder {self.root}: no frames in split {split}")
        self._betas: dict[str, np.ndarray] = {}

    @staticmethod
    def full_release(root: str | os.PathLike[str]) -> bool:
        """Every subject of the release is there with its 100 sequences (what the s0 splits need)."""
        root = Path(root)
        return all((root / s).is_dir() and sum(1 for p in (root / s).iterdir() if p.is_dir()) == SEQUENCES_PER_SUBJECT
                   for s in SUBJECTS)

    def _sequences(self) -> list[Sequence]:
        if self.split == "all":
            folders = sorted(m.parent for m in self.root.glob("*/*/meta.yml"))
            if not folders:
                raise UsageError(f"DexYCB folder {self.root}: no <subject>/<sequence>/meta.yml found "
                                 "(is this the DexYCB release folder?)")
            return [self._sequence(f, only_present=True) for f in folders]
        if not self.full_release(self.root):
            raise UsageError(f"DexYCB folder {self.root}: --split {self.split} needs the full release ({len(SUBJECTS)} "
                             f"subjects x {SEQUENCES_PER_SUBJECT} sequences); use --split all for a subset")
        subjects, sequences = s0_selection(self.split)
        out = []
        for s in subjects:
            folders = sorted(p for p in (self.root / SUBJECTS[s]).iterdir() if p.is_dir())
            out += [self._sequence(folders[i], only_present=False) for i in sequences]
        return out

    def _sequence(self, folder: Path, only_present: bool) -> Sequence:
        meta_path = folder / "meta.yml"
        meta = _yaml(meta_path, "sequence metadata")
        try:
            serials = tuple(str(s) for s in meta["serials"])
            num_frames = int(meta["num_frames"])
            side = str(meta["mano_sides"][0])
            calib = str(meta["mano_calib"][0])
        except (TypeError, KeyError, IndexError, ValueError):
            raise UsageError(f"{meta_path}: expected serials, num_frames, mano_sides, mano_calib") from None
        if side not in ("right", "left"):
            raise UsageError(f"{meta_path}: mano_sides[0] is {side!r}, expected right or left")
        if only_present:
            serials = tuple(s for s in serials if (folder / s).is_dir())
        else:
            serials = tuple(s for s in SERIALS if s in serials)
        return Sequence(folder.relative_to(self.root).as_posix(), serials, num_frames, side, calib)

    # -- access ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.frames)

    def files(self, i: int) -> tuple[Path, Path]:
        """(colour image, labels) of frame i."""
        q_i, serial, f = self.frames[i]
        d = self.root / self.sequences[q_i].path / serial
        return d / f"color_{f:06d}.jpg", d / f"labels_{f:06d}.npz"

    def betas(self, calib: str) -> np.ndarray:
        if calib not in self._betas:
            path = self.root / "calibration" / f"mano_{calib}" / "mano.yml"
            data = _yaml(path, "the subject's MANO shape (betas)")
            try:
                self._betas[calib] = np.asarray(data["betas"], dtype=np.float64).reshape(10)
            except (TypeError, KeyError, ValueError):
                raise UsageError(f"{path}: expected 'betas:' with 10 numbers") from None
        return self._betas[calib]

    def side(self, i: int) -> str:
        return self.sequences[self.frames[i][0]].side

    def annotation(self, i: int) -> dict[str, Any] | None:
        """Labels of frame i mirrored to a right hand, or None when the frame has no hand."""
        q_i, serial, _ = self.frames[i]
        seq = self.sequences[q_i]
        _, label_path = self.files(i)
        labels = _labels(label_path)
        xyz = labels["joint_3d"]
        if is_handless(xyz):
            return None
        K = self.intrinsics[serial]
        uv = labels.get("joint_2d")
        if uv is None:
            p = xyz @ K.T
            uv = p[:, :2] / p[:, 2:3]
        vertices = labels.get("vertices")
        if vertices is None and self.mano[seq.side] is not None and "pose_m" in labels:
            from ..mano import forward

            pose = labels["pose_m"].reshape(51)
            vertices = forward(self.mano[seq.side], pose[None, :48], self.betas(seq.calib), pose[None, 48:])[0][0]
        if seq.side == "left":
            from ..mano import mirror_x

            K, uv, xyz = mirror_intrinsics(K), mirror_uv(uv), mirror_x(xyz)
            vertices = mirror_x(vertices) if vertices is not None else None
        return {"K": K, "xyz": xyz, "uv": uv, "vertices": vertices, "side": seq.side, "index": i}

    def __getitem__(self, i: int) -> dict[str, Any]:
        import cv2

        if not 0 <= i < len(self):
            raise IndexError(i)
        sample = self.annotation(i)
        image_path, _ = self.files(i)
        if sample is None:
            raise UsageError(f"{image_path}: frame has no hand (skip it: annotation() is None)")
        if not image_path.is_file():
            raise UsageError(f"{image_path}: missing image")
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)  # BGR, as the model expects
        if image is None:
            raise UsageError(f"{image_path}: cannot decode image")
        if image.shape[:2] != (HEIGHT, WIDTH):
            raise UsageError(f"{image_path}: image is {image.shape[1]}x{image.shape[0]}, expected {WIDTH}x{HEIGHT} "
                             "(the intrinsics are for that size)")
        if sample["side"] == "left":
            image = np.ascontiguousarray(image[:, ::-1])
        sample["image"] = image
        return sample

    def next_with_hand(self, i: int, taken: set[int] | None = None) -> tuple[int, int]:
        """(first frame at or after i, wrapping, that has a hand and is not in `taken`; handless frames passed)."""
        taken = taken or set()
        handless = 0
        for step in range(len(self)):
            j = (i + step) % len(self)
            if j in taken:
                continue
            if self.annotation(j) is not None:
                return j, handless
            handless += 1
        raise UsageError(f"DexYCB folder {self.root}: no frame with a hand in split {self.split}")


def default_split(root: str | os.PathLike[str], purpose: str) -> str:
    """s0-train (calibration) or s0-test (evaluation) on the full release, `all` on a subset."""
    if not DexYCB.full_release(root):
        return "all"
    return "s0-test" if purpose == "eval" else "s0-train"


def _labels(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a labels file, checked: joint_3d (21, 3) required, joint_2d (21, 2) and pose_m (51,) optional."""
    if not path.is_file():
        raise UsageError(f"{path}: missing labels file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: np.asarray(npz[k], dtype=np.float64) for k in npz.files}
    except (ValueError, OSError) as exc:
        raise UsageError(f"{path}: not a readable .npz ({exc})") from None
    if "joint_3d" not in data:
        raise UsageError(f"{path}: no 'joint_3d' array (DexYCB labels hold joint_3d (1, 21, 3) in metres)")
    shapes = {"joint_3d": (21, 3), "joint_2d": (21, 2), "pose_m": (51,), "vertices": (778, 3)}
    out: dict[str, np.ndarray] = {}
    for key, shape in shapes.items():
        if key in data:
            if data[key].size != int(np.prod(shape)):
                want = ", ".join(map(str, shape))
                raise UsageError(f"{path}: {key!r} has shape {data[key].shape}, expected (1, {want})")
            out[key] = data[key].reshape(shape)
    return out
