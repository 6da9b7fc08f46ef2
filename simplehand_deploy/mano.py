"""MANO forward pass on numpy (no chumpy, no torch): pose + shape -> 778 vertices and 16 joints, metres.

DexYCB labels a hand by `pose_m` (1, 51): 3 global axis-angle values, 45 PCA coefficients of the
finger pose, 3 translation values (metres, camera frame), plus the subject's 10 shape `betas`. Its
reference code runs the MANO layer with the PCA basis (45 components), the mean hand pose added
(not a flat hand) and the translation added to every vertex after skinning; this module does the
same so vertices agree with its joint labels. The left hand uses MANO_LEFT.pkl as released (no
correction of its shape basis: the labels were made with it as is).

MANO is licensed by its authors: the toolkit never ships a model file or anything derived from one;
the user passes MANO_RIGHT.pkl / MANO_LEFT.pkl (the official chumpy pickles or a plain-numpy
conversion).

The forward pass is linear blend skinning: shaped template (template + shape basis @ betas), joint
rest positions regressed from it, pose corrective offsets from (R_i - I) of the 15 finger joints,
then each vertex moved by its weighted mix of the joints' world transforms relative to their rest pose.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import NUM_VERTICES
from .errors import UsageError

NUM_MANO_JOINTS = 16
NUM_BETAS = 10
POSE_DIM = 48  # 3 global + 45 finger values (axis-angle, or PCA coefficients)


@dataclass(frozen=True)
class ManoModel:
    """The arrays a MANO pickle holds that the forward pass needs (float64)."""

    v_template: np.ndarray  # (778, 3)
    shapedirs: np.ndarray  # (778, 3, 10)
    posedirs: np.ndarray  # (778, 3, 135)
    j_regressor: np.ndarray  # (16, 778)
    weights: np.ndarray  # (778, 16)
    parents: np.ndarray  # (16,) int, -1 for the root
    hands_components: np.ndarray  # (45, 45): rows are the PCA basis of the finger pose
    hands_mean: np.ndarray  # (45,)
    faces: np.ndarray  # (1538, 3) int
    path: str = ""


SHAPES = {
    "v_template": (NUM_VERTICES, 3),
    "shapedirs": (NUM_VERTICES, 3, NUM_BETAS),
    "posedirs": (NUM_VERTICES, 3, 135),
    "J_regressor": (NUM_MANO_JOINTS, NUM_VERTICES),
    "weights": (NUM_VERTICES, NUM_MANO_JOINTS),
    "kintree_table": (2, NUM_MANO_JOINTS),
    "hands_components": (45, 45),
    "hands_mean": (45,),
    "f": None,
}


def _dense(value: Any) -> np.ndarray:
    """chumpy arrays (unpickled as stand-ins holding their state), scipy sparse or plain arrays -> ndarray."""
    state = getattr(value, "state", None)
    if isinstance(state, dict) and "x" in state:
        value = state["x"]
    if hasattr(value, "toarray"):
        value = value.toarray()
    return np.asarray(value)


def load_mano(path: str | os.PathLike[str]) -> ManoModel:
    """Read a MANO pickle (official chumpy release or a plain-numpy conversion); one-line error naming the file."""
    from .joints import _ManoUnpickler

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"MANO file {p}: no such file (download MANO_RIGHT.pkl / MANO_LEFT.pkl from "
                         "mano.is.tue.mpg.de; the toolkit never ships them)")
    try:
        with p.open("rb") as f:
            data = _ManoUnpickler(f, encoding="latin1").load()
    except Exception as exc:
        raise UsageError(f"MANO file {p}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"MANO file {p}: expected a dict of arrays, got {type(data).__name__}")
    arrays: dict[str, np.ndarray] = {}
    for key, shape in SHAPES.items():
        if key not in data:
            raise UsageError(f"MANO file {p}: no {key!r} entry (is this a MANO model pickle?)")
        try:
            arr = _dense(data[key])
        except (TypeError, ValueError):
            arr = None
        if arr is None or (shape is not None and arr.shape != shape) or (shape is None and arr.ndim != 2):
            got = None if arr is None else arr.shape
            raise UsageError(f"MANO file {p}: {key!r} has shape {got}, expected {shape or '(F, 3)'}")
        arrays[key] = arr
    parents = arrays["kintree_table"][0].astype(np.int64)
    parents[0] = -1  # stored as 2**32 - 1 in the official files
    return ManoModel(
        v_template=arrays["v_template"].astype(np.float64),
        shapedirs=arrays["shapedirs"].astype(np.float64),
        posedirs=arrays["posedirs"].astype(np.float64),
        j_regressor=arrays["J_regressor"].astype(np.float64),
        weights=arrays["weights"].astype(np.float64),
        parents=parents,
        hands_components=arrays["hands_components"].astype(np.float64),
        hands_mean=arrays["hands_mean"].astype(np.float64),
        faces=arrays["f"].astype(np.int64),
        path=str(p),
    )


def rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle -> (..., 3, 3) rotation matrices (exact at zero angle)."""
    aa = np.asarray(axis_angle, dtype=np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    axis = aa / np.where(angle > 1e-12, angle, 1.0)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(*aa.shape[:-1], 3, 3)
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def full_pose(model: ManoModel, pose: np.ndarray, *, pca: bool = True, flat_hand_mean: bool = False) -> np.ndarray:
    """(B, 48) -> (B, 16, 3) axis-angle per joint: PCA coefficients (the DexYCB convention) expand through
    `hands_components`, and the mean hand pose is added unless `flat_hand_mean`."""
    pose = np.asarray(pose, dtype=np.float64).reshape(-1, POSE_DIM)
    fingers = pose[:, 3:] @ model.hands_components if pca else pose[:, 3:]
    if not flat_hand_mean:
        fingers = fingers + model.hands_mean
    return np.concatenate([pose[:, :3], fingers], axis=1).reshape(-1, NUM_MANO_JOINTS, 3)


def forward(
    model: ManoModel,
    pose: np.ndarray,
    betas: np.ndarray,
    trans: np.ndarray | None = None,
    *,
    pca: bool = True,
    flat_hand_mean: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (B, 778, 3) and MANO joints (B, 16, 3), metres, for poses (B, 48), betas (10,) or (B, 10)
    and translations (B, 3) added after skinning."""
    aa = full_pose(model, pose, pca=pca, flat_hand_mean=flat_hand_mean)
    b = len(aa)
    betas = np.broadcast_to(np.asarray(betas, dtype=np.float64).reshape(-1, NUM_BETAS), (b, NUM_BETAS))
    rot = rodrigues(aa)  # (B, 16, 3, 3)
    v_shaped = model.v_template + np.einsum("vcs,bs->bvc", model.shapedirs, betas)
    joints = np.einsum("jv,bvc->bjc", model.j_regressor, v_shaped)
    pose_feature = (rot[:, 1:] - np.eye(3)).reshape(b, -1)  # (B, 135)
    v_posed = v_shaped + np.einsum("vcp,bp->bvc", model.posedirs, pose_feature)
    world = np.zeros((b, NUM_MANO_JOINTS, 4, 4))
    world[:, :, 3, 3] = 1.0
    for j in range(NUM_MANO_JOINTS):  # parents come before children in MANO's kinematic tree
        parent = int(model.parents[j])
        local = np.zeros((b, 4, 4))
        local[:, :3, :3] = rot[:, j]
        local[:, :3, 3] = joints[:, j] - (joints[:, parent] if parent >= 0 else 0.0)
        local[:, 3, 3] = 1.0
        world[:, j] = local if parent < 0 else world[:, parent] @ local
    posed_joints = world[:, :, :3, 3].copy()
    # Relative to the rest pose: a vertex at a joint's rest position moves with that joint's world transform.
    rel = world.copy()
    rel[:, :, :3, 3] -= np.einsum("bjxy,bjy->bjx", world[:, :, :3, :3], joints)
    blend = np.einsum("vj,bjxy->bvxy", model.weights, rel)
    verts = np.einsum("bvxy,bvy->bvx", blend[:, :, :3, :3], v_posed) + blend[:, :, :3, 3]
    if trans is not None:
        t = np.asarray(trans, dtype=np.float64).reshape(b, 1, 3)
        verts, posed_joints = verts + t, posed_joints + t
    return verts, posed_joints


def mirror_x(points: np.ndarray) -> np.ndarray:
    """x -> -x (camera frame): a left hand's geometry seen as the right hand a mirrored image shows."""
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., 0] *= -1
    return out
