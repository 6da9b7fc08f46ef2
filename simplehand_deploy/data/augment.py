"""Training crops with the official augmentations, on top of the virtual-camera crop.

Order (architecture notes §6): keypoint box -> centre jitter (0.1 x box size) -> box scale U[1.0, 1.5]
-> in-plane rotation -> perspective crop (image, uv, 3-D labels) -> root-relative -> horizontal flip
(x -> -x in 3-D, 223 - x in pixels) -> per-channel gain U[0.6, 1.4] -> brightness/contrast.
The official rotation feeds a "degrees" value to cos/sin as radians, which amounts to an angle spread
over the whole circle; we draw it uniformly in [-pi, pi] and say so.

Every draw comes from a generator seeded by (seed, index, draw), so a sample's augmentation is a pure
function of its coordinates: that is what makes `--resume` bit-for-bit and DDP ranks independent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import IMAGE_SIZE
from .crop import crop_labels, crop_sample, keypoint_box, perspective_crop


def augment_sample(sample: dict[str, Any], rng: np.random.Generator, rotation: float = np.pi) -> dict[str, np.ndarray]:
    """One augmented training crop with labels and validity masks; in-plane angle in [-rotation, rotation]."""
    image = sample["image"]
    h, w = image.shape[:2]
    center, size = keypoint_box(sample["uv"], (w, h), 1.0)
    center = np.clip(center + rng.uniform(-1, 1, 2) * 0.1 * size, 0, [w - 1, h - 1])
    size = size * rng.uniform(1.0, 1.5)
    angle = rng.uniform(-rotation, rotation)
    crop = perspective_crop(image, sample["K"], center, size, angle)
    lab = crop_labels(crop, sample["uv"], sample["xyz"], sample.get("vertices"))
    img = crop.image
    uv = lab["uv"].astype(np.float32)
    xyz = lab["xyz"].astype(np.float32)
    verts = lab.get("vertices", np.zeros((778, 3), np.float32)).astype(np.float32)
    inside_img = ((sample["uv"] >= 0) & (sample["uv"] < [w, h])).all(axis=1)
    if rng.random() < 0.5:
        img = img[:, :, ::-1]
        uv = np.stack([(IMAGE_SIZE - 1 - uv[:, 0] * IMAGE_SIZE) / IMAGE_SIZE, uv[:, 1]], axis=1)
        xyz = xyz * np.array([-1, 1, 1], np.float32)
        verts = verts * np.array([-1, 1, 1], np.float32)
    img = img * rng.uniform(0.6, 1.4, (3, 1, 1))
    alpha = 1 + rng.uniform(-0.2, 0.2)
    beta = rng.uniform(-0.4, 0.1) * 255
    img = np.clip(img * alpha + beta, 0, 255).astype(np.float32)
    in_crop: np.ndarray = np.asarray(((uv > 0) & (uv < 1)).all(axis=1))
    return {
        "image": np.ascontiguousarray(img),
        "uv": uv,
        "xyz": xyz,
        "vertices": verts,
        "uv_valid": (in_crop & inside_img).astype(np.float32),
        "xyz_valid": np.float32(in_crop[0] or in_crop[9]),
        "has_vertices": np.float32("vertices" in lab),
    }


def eval_sample(sample: dict[str, Any], scale_enlarge: float = 1.25) -> dict[str, np.ndarray]:
    """The evaluation crop (no augmentation) with the same keys as training samples."""
    crop, lab = crop_sample(sample, scale_enlarge)
    return {"image": crop.image, "uv": lab.get("uv", np.zeros((21, 2), np.float32)),
            "xyz": lab.get("xyz", np.zeros((21, 3), np.float32)),
            "vertices": lab.get("vertices", np.zeros((778, 3), np.float32))}


class TrainCrops:
    """Map-style dataset: (index, epoch-free seed) -> augmented crop; a torch DataLoader can wrap it."""

    def __init__(self, dataset: Any, seed: int = 0, rotation: float = np.pi) -> None:
        self.dataset = dataset
        self.seed = seed
        self.rotation = rotation

    def __len__(self) -> int:
        return len(self.dataset)

    def item(self, index: int, draw: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index, draw])
        return augment_sample(self.dataset[index], rng, self.rotation)
