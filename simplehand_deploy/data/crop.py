"""The virtual-camera perspective crop used by SimpleHand's training and evaluation.

A crop is a *camera rotation*, not an image-plane cut: the camera is turned so the ray through
the box centre becomes the optical axis, then re-projected with new intrinsics that make the
longer box side fill the output. The 2-D map from original pixels to crop pixels is therefore
the rotation homography M = K' R_c K^-1 (composed with an in-plane rotation about the crop
centre), and 3-D labels move into the crop camera frame with R = R_r R_c. Keeping both lets
uv go back to the original image (M^-1) and predictions back to the original camera (R^T).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import IMAGE_SIZE, ROOT_INDEX


@dataclass
class Crop:
    image: np.ndarray  # (3, S, S) float32, BGR, 0..255
    M: np.ndarray  # (3, 3) homography: original pixels -> crop pixels
    R: np.ndarray  # (3, 3) rotation: original camera frame -> crop camera frame
    K: np.ndarray  # (3, 3) intrinsics of the crop camera
    size: int = IMAGE_SIZE


def keypoint_box(uv: np.ndarray, image_size: tuple[int, int], scale_enlarge: float = 1.25) -> tuple[np.ndarray, ...]:
    """Centre and per-axis size of the box around the in-image keypoints (all of them if <= 1 inside).

    `image_size` is (width, height). The box is not forced square; the crop keeps the aspect ratio.
    """
    uv = np.asarray(uv, dtype=np.float64)
    w, h = image_size
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    pts = uv[inside] if inside.sum() > 1 else uv
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    center = (lo + hi) / 2
    size = np.maximum((hi - lo) * scale_enlarge, 1.0)
    return center, size


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation matrix taking unit vector a onto unit vector b (Rodrigues)."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(np.dot(a, b))
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = axis / s
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * kx + (1 - c) * (kx @ kx)


def _project(K: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = pts @ K.T
    return p[:, :2] / p[:, 2:3]


def crop_transform(
    K: np.ndarray, center: np.ndarray, size: np.ndarray, rotation: float = 0.0, out_size: int = IMAGE_SIZE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(M, R, K_new) for a box (center, per-axis size) and an in-plane rotation in radians."""
    K = np.asarray(K, dtype=np.float64)
    cx, cy = float(center[0]), float(center[1])
    ray = np.linalg.inv(K) @ np.array([cx, cy, 1.0])
    r_c = _rotation_between(ray, np.array([0.0, 0.0, 1.0]))
    sw, sh = float(size[0]) / 2, float(size[1]) / 2
    corners = np.array([[cx - sw, cy - sh, 1], [cx + sw, cy - sh, 1], [cx + sw, cy + sh, 1], [cx - sw, cy + sh, 1]])
    rays = corners @ np.linalg.inv(K).T @ r_c.T
    quad = _project(K, rays)
    side = max(np.ptp(quad[:, 0]), np.ptp(quad[:, 1]), 1e-6)
    k = out_size / side
    half = out_size / 2
    k_new = np.array([[k * K[0, 0], 0, half], [0, k * K[1, 1], half], [0, 0, 1.0]])
    c, s = np.cos(rotation), np.sin(rotation)
    rot2d = np.array([[c, -s, half - c * half + s * half], [s, c, half - s * half - c * half], [0, 0, 1.0]])
    r_r = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    M = rot2d @ k_new @ r_c @ np.linalg.inv(K)
    return M / M[2, 2], r_r @ r_c, k_new


def warp(image: np.ndarray, M: np.ndarray, out_size: int = IMAGE_SIZE) -> np.ndarray:
    """HWC uint8 BGR image -> (3, S, S) float32 BGR 0..255 (bilinear, black border)."""
    import cv2

    out = cv2.warpPerspective(image, M, (out_size, out_size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


def perspective_crop(
    image: np.ndarray,
    K: np.ndarray,
    center: np.ndarray,
    size: np.ndarray,
    rotation: float = 0.0,
    out_size: int = IMAGE_SIZE,
) -> Crop:
    M, R, k_new = crop_transform(K, center, size, rotation, out_size)
    return Crop(image=warp(image, M, out_size), M=M, R=R, K=k_new, size=out_size)


def apply_homography(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.concatenate([np.asarray(pts, dtype=np.float64), np.ones((len(pts), 1))], axis=1) @ M.T
    return p[:, :2] / p[:, 2:3]


def crop_labels(
    crop: Crop, uv: np.ndarray | None = None, xyz: np.ndarray | None = None, vertices: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Labels in the crop: uv in [0,1] of the crop; xyz/vertices rotated and relative to joint 9 (metres)."""
    out: dict[str, np.ndarray] = {}
    if uv is not None:
        out["uv"] = (apply_homography(crop.M, uv) / crop.size).astype(np.float32)
    if xyz is not None:
        xyz_c = np.asarray(xyz, dtype=np.float64) @ crop.R.T
        root = xyz_c[ROOT_INDEX].copy()
        out["xyz"] = (xyz_c - root).astype(np.float32)
        if vertices is not None:
            out["vertices"] = (np.asarray(vertices, dtype=np.float64) @ crop.R.T - root).astype(np.float32)
    return out


def uncrop_uv(uv01: np.ndarray, M: np.ndarray, out_size: int = IMAGE_SIZE) -> np.ndarray:
    """Crop-normalised uv -> original-image pixels (inverse homography)."""
    return apply_homography(np.linalg.inv(M), np.asarray(uv01, dtype=np.float64) * out_size)


def crop_sample(sample: dict, scale_enlarge: float = 1.25, out_size: int = IMAGE_SIZE) -> tuple[Crop, dict]:
    """Evaluation crop of a dataset sample (no augmentation): keypoint box x scale_enlarge, no rotation.

    Without keypoints (an evaluation split shipped without xyz) the whole image is the box.
    """
    image = sample["image"]
    h, w = image.shape[:2]
    if sample.get("uv") is not None:
        center, size = keypoint_box(sample["uv"], (w, h), scale_enlarge)
    else:
        center, size = np.array([w / 2, h / 2]), np.array([float(w), float(h)])
    crop = perspective_crop(image, sample["K"], center, size, 0.0, out_size)
    return crop, crop_labels(crop, sample.get("uv"), sample.get("xyz"), sample.get("vertices"))
