"""Synthetic hands written in FreiHAND's v2 on-disk layout: the embedded default data set.

Nobody here can download FreiHAND, so the toolkit generates a stand-in that is *learnable* and
exercises the same code: an articulated 21-joint hand (FreiHAND joint order, plausible bone
lengths, joint limits), 778 surface vertices attached to its bones, a random global pose and
camera, rendered as shaded limbs over varied backgrounds.

Joints are exact linear functions of the vertices: every joint is the centroid of a symmetric
ring of vertices around it (tips are single vertices), so `regressor() @ vertices == xyz`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import NUM_JOINTS, NUM_VERTICES
from ..fileio import atomic_path, check_out_dir
from ..progress import track

IMAGE_SIZE = 224
RING = 8  # vertices per joint ring
# FreiHAND order: 0 wrist; thumb 1-4; index 5-8; middle 9-12; ring 13-16; pinky 17-20 (base -> tip).
FINGERS = [(1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20)]
# Hand frame (metres): x toward the thumb side, y along the fingers, z out of the palm (back of hand).
BASES = np.array([[0.025, 0.028, -0.008], [0.024, 0.086, 0], [0.003, 0.090, 0], [-0.017, 0.083, 0], [-0.034, 0.072, 0]])
PHALANGES = np.array(
    [[0.036, 0.032, 0.028], [0.040, 0.024, 0.021], [0.044, 0.028, 0.022], [0.041, 0.026, 0.021], [0.033, 0.020, 0.019]]
)
RADII = np.array([0.010, 0.0085, 0.009, 0.0085, 0.0075])
COLOURS = np.array([[60, 80, 200], [60, 170, 230], [80, 200, 120], [200, 160, 60], [200, 80, 160]], dtype=np.float64)

_PARENT = np.array([-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19])
TIPS = frozenset({4, 8, 12, 16, 20})


def _rot(axis: str, a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


# In-plane angle of the generated hands: within 45 degrees of upright (training on them augments as much).
MAX_ROLL = float(np.pi / 4)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A plausible camera-facing hand pose: palm or back toward the camera, tilted up to ~35 degrees,
    fingers up to 45 degrees off vertical (like hands held up to a camera, as in FreiHAND)."""
    base = np.array([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]])  # fingers up in the image, back of hand to camera
    if rng.random() < 0.5:
        base = base @ _rot("y", np.pi)  # palm to camera
    tilt = _rot("x", rng.uniform(-0.6, 0.6)) @ _rot("y", rng.uniform(-0.6, 0.6))
    return _rot("z", rng.uniform(-MAX_ROLL, MAX_ROLL)) @ tilt @ base


def pose_hand(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Joints (21, 3) in the hand frame and the finger articulation angles (5, 4)."""
    scale = rng.uniform(0.85, 1.15)
    joints = np.zeros((NUM_JOINTS, 3))
    angles = np.zeros((5, 4))
    for f, chain in enumerate(FINGERS):
        base = BASES[f] * scale
        joints[chain[0]] = base
        spread = rng.uniform(-0.25, 0.25)
        flex = [rng.uniform(-0.2, 1.4), rng.uniform(0.0, 1.6), rng.uniform(0.0, 1.1)]
        if f == 0:  # the thumb points out sideways and bends across the palm
            direction = _rot("z", 0.9 + spread) @ np.array([0.0, 1.0, 0.0])
            bend_axis = np.array([0.3, 0.2, 0.93])
            flex = [v * 0.6 for v in flex]
        else:
            direction = _rot("z", spread * 0.6) @ np.array([0.0, 1.0, 0.0])
            bend_axis = np.array([1.0, 0.0, 0.0])
        angles[f] = [spread, *flex]
        bend_axis /= np.linalg.norm(bend_axis)
        pos, total = base, 0.0
        for k in range(3):
            total += flex[k]
            # Rodrigues rotation of the finger direction about the bend axis (negative z = toward the palm).
            kx = np.array([[0, -bend_axis[2], bend_axis[1]], [bend_axis[2], 0, -bend_axis[0]],
                           [-bend_axis[1], bend_axis[0], 0]])
            rot = np.eye(3) - np.sin(total) * kx + (1 - np.cos(total)) * (kx @ kx)
            pos = pos + rot @ direction * PHALANGES[f, k] * scale
            joints[chain[k + 1]] = pos
    return joints, angles


def _perp_basis(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = d / (np.linalg.norm(d) + 1e-12)
    helper = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(d, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(d, u)


def _layout(seed: int = 1234) -> dict[str, np.ndarray]:
    """A fixed vertex layout: which bone each vertex rides on, where along it, at which angle and radius.

    Rings: joint j (not a tip) gets RING vertices around it on bone (j -> first child); tips are single
    vertices. Remaining vertices are spread along bones and over the palm.
    """
    rng = np.random.default_rng(seed)
    kinds: list[int] = []
    bones: list[int] = []
    ts: list[float] = []
    thetas: list[float] = []
    radii: list[float] = []
    palm_w: list[np.ndarray] = []

    def add(kind: int, bone: int, t: float, theta: float, radius: float, palm: np.ndarray) -> None:
        kinds.append(kind)
        bones.append(bone)
        ts.append(t)
        thetas.append(theta)
        radii.append(radius)
        palm_w.append(palm)

    first_child = {0: 9, **{j: j + 1 for j in range(1, 21) if j not in TIPS}}
    angles = np.arange(RING) * 2 * np.pi / RING
    for j in range(NUM_JOINTS):
        if j in TIPS:
            add(1, j, 1.0, 0.0, 0.0, np.zeros(6))
            continue
        child = first_child[j]
        for a in angles:
            add(0, child, 0.0, float(a), 1.0, np.zeros(6))
    n_palm = 160
    n_bone = NUM_VERTICES - len(kinds) - n_palm
    for _ in range(n_bone):
        b = int(rng.integers(1, 21))
        add(0, b, rng.uniform(0.05, 0.95), rng.uniform(0, 2 * np.pi), 1.0, np.zeros(6))  # draws in this order
    for _ in range(n_palm):  # palm surface: convex mix of wrist + 5 finger bases, on either face
        w = rng.dirichlet(np.ones(6))
        add(2, 0, 0.0, 0.0, 1.0 if rng.random() < 0.5 else -1.0, w)
    return {
        "kind": np.array(kinds), "bone": np.array(bones), "t": np.array(ts), "theta": np.array(thetas),
        "radius": np.array(radii), "palm": np.array(palm_w),
    }


_LAYOUT = _layout()


def skin(joints: np.ndarray) -> np.ndarray:
    """778 vertices for posed joints (any frame): rings, bone surfaces and the palm slab."""
    L = _LAYOUT
    verts = np.zeros((NUM_VERTICES, 3))
    bone_radius = np.zeros(21)
    for f, chain in enumerate(FINGERS):
        bone_radius[list(chain)] = RADII[f] * np.array([1.0, 0.92, 0.85, 0.8])
    bone_radius[9] = RADII[2]
    # Vectorised over vertices (a per-vertex Python loop made generation ~10x slower); one basis per bone.
    basis = np.zeros((NUM_JOINTS, 2, 3))
    for bone in range(1, NUM_JOINTS):
        basis[bone] = _perp_basis(joints[bone] - joints[_PARENT[bone]])
    tip = L["kind"] == 1
    verts[tip] = joints[L["bone"][tip]]
    on_bone = np.where(L["kind"] == 0)[0]
    b = L["bone"][on_bone]
    p, c = joints[_PARENT[b]], joints[b]
    r = (bone_radius[b] * np.where(_PARENT[b] == 0, 1.3, 1.0))[:, None]
    th = L["theta"][on_bone][:, None]
    t = L["t"][on_bone][:, None]
    verts[on_bone] = p + t * (c - p) + r * (np.cos(th) * basis[b, 0] + np.sin(th) * basis[b, 1])
    palm_idx = np.where(L["kind"] == 2)[0]
    anchors = joints[[0, 1, 5, 9, 13, 17]]
    normal = np.cross(joints[5] - joints[0], joints[17] - joints[0])
    normal /= np.linalg.norm(normal) + 1e-12
    verts[palm_idx] = L["palm"][palm_idx] @ anchors + L["radius"][palm_idx, None] * 0.011 * normal
    return verts


def regressor() -> np.ndarray:
    """(21, 778) float32: joints = regressor() @ vertices holds exactly for synthetic hands.

    The layout puts the joint rings first, in joint order: a tip owns one vertex, any other joint a
    ring of RING vertices evenly spaced around it, whose mean is the joint itself.
    """
    R = np.zeros((NUM_JOINTS, NUM_VERTICES), dtype=np.float64)
    start = 0
    for j in range(NUM_JOINTS):
        n = 1 if j in TIPS else RING
        R[j, start : start + n] = 1.0 / n
        start += n
    return R.astype(np.float32)


def sample_scene(rng: np.random.Generator, K: np.ndarray | None = None,
                 size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE), left: bool = False) -> dict[str, np.ndarray]:
    """One hand in a camera: K, xyz (21,3) and vertices (778,3) in metres, camera frame.

    Default: a 224 x 224 FreiHAND-like camera drawn per sample. With `K` (a fixed camera, e.g. DexYCB's
    640 x 480 ones) the hand is placed anywhere in the image of `size` (width, height). `left` mirrors the
    hand's own geometry (x in the hand frame), making a genuine left hand.
    """
    w, h = size
    for _ in range(100):
        joints_h, angles = pose_hand(rng)
        if left:
            joints_h = joints_h * np.array([-1.0, 1.0, 1.0])
        rot = random_rotation(rng)
        if K is None:
            f = rng.uniform(420, 620)
            cam = np.array([[f, 0, 112 + rng.uniform(-4, 4)], [0, f, 112 + rng.uniform(-4, 4)], [0, 0, 1.0]])
            depth = rng.uniform(0.45, 0.75)
            centre = np.array([rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03), depth])
        else:
            cam = np.asarray(K, dtype=np.float64)
            depth = rng.uniform(0.45, 0.75)
            pixel = rng.uniform(0.2, 0.8, 2) * np.array([w, h])
            centre = np.append((pixel - cam[:2, 2]) / np.diag(cam)[:2] * depth, depth)
        joints_c = (joints_h - joints_h[9]) @ rot.T + centre
        verts_c = skin(joints_c)
        uv = joints_c @ cam.T
        uv = uv[:, :2] / uv[:, 2:3]
        if joints_c[:, 2].min() > 0.15 and (uv > 4).all() and (uv[:, 0] < w - 4).all() and (uv[:, 1] < h - 4).all():
            return {"K": cam, "xyz": joints_c, "vertices": verts_c, "angles": angles}
    raise RuntimeError("could not place a synthetic hand inside the image")  # pragma: no cover


def _background(rng: np.random.Generator, w: int = IMAGE_SIZE, h: int = IMAGE_SIZE) -> np.ndarray:
    import cv2

    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = np.linspace(0, 1, w)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, h)[:, None, None]
    img = (c0 * (1 - t) + c1 * t) * np.ones((h, w, 1))
    img = np.clip(img + rng.normal(0, rng.uniform(2, 15), (h, w, 3)), 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 8))):  # clutter
        colour = tuple(int(v) for v in rng.uniform(0, 255, 3))
        if rng.random() < 0.5:
            cv2.circle(img, tuple(int(v) for v in rng.uniform(0, 1, 2) * (w, h)), int(rng.uniform(5, 40)), colour, -1)
        else:
            p = (rng.uniform(0, 1, (2, 2)) * (w, h)).astype(int)
            cv2.rectangle(img, tuple(p[0].tolist()), tuple(p[1].tolist()), colour, -1)
    return img


def render(scene: dict[str, np.ndarray], rng: np.random.Generator,
           size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)) -> np.ndarray:
    """BGR uint8 image of `size` (width, height; default 224x224): palm polygon and limbs as shaded capsules,
    far parts first."""
    import cv2

    img = _background(rng, *size)
    K, xyz = scene["K"], scene["xyz"]
    uv = xyz @ K.T
    uv = uv[:, :2] / uv[:, 2:3]
    skin_tone = np.array([rng.uniform(90, 200), rng.uniform(120, 210), rng.uniform(160, 240)])
    palm = uv[[0, 1, 5, 9, 13, 17]].astype(np.int32)
    hull = cv2.convexHull(palm)
    cv2.fillConvexPoly(img, hull, tuple(float(v) for v in skin_tone * 0.85), lineType=cv2.LINE_AA)
    segs = []
    for f, chain in enumerate(FINGERS):
        for k, j in enumerate(chain):
            a = 0 if k == 0 else chain[k - 1]
            segs.append((xyz[a, 2] + xyz[j, 2], a, j, f))
    for _, a, j, f in sorted(segs, reverse=True):
        z = (xyz[a, 2] + xyz[j, 2]) / 2
        thick = max(2, int(2 * RADII[f] * K[0, 0] / z))
        shade = 0.75 + 0.25 * np.clip((0.75 - z) / 0.3, 0, 1)
        colour = skin_tone * shade * 0.7 + COLOURS[f] * 0.3
        p0, p1 = tuple(uv[a].astype(int).tolist()), tuple(uv[j].astype(int).tolist())
        cv2.line(img, p0, p1, tuple(float(v) for v in colour), thick, lineType=cv2.LINE_AA)
        cv2.circle(img, p1, max(1, thick // 2), tuple(float(v) for v in colour * 0.9), -1, lineType=cv2.LINE_AA)
    return img


def _scale(xyz: np.ndarray) -> float:
    return float(np.linalg.norm(xyz[10] - xyz[9]))  # middle-finger proximal phalanx, FreiHAND's reference bone


def generate(
    out_dir: str | os.PathLike[str], num: int, seed: int = 0, *, eval_num: int = 0, progress: bool = True
) -> Path:
    """Write `num` training (+ `eval_num` evaluation) samples in FreiHAND v2 layout; deterministic in `seed`."""
    import cv2

    from ..errors import UsageError

    if num < 1:
        raise UsageError(f"--num must be >= 1 (got {num})")
    out = Path(out_dir)
    check_out_dir(out, ("training_K.json", "training"), "a synthetic FreiHAND set")
    with atomic_path(out, is_dir=True) as tmp:
        for split, count, sub in (("training", num, 0), ("evaluation", eval_num, 1)):
            if count <= 0:
                continue
            rng = np.random.default_rng([seed, sub])
            (tmp / split / "rgb").mkdir(parents=True)
            Ks, xyzs, verts, manos, scales = [], [], [], [], []
            for i in track(range(count), f"synth {split}", progress):
                scene = sample_scene(rng)
                cv2.imwrite(str(tmp / split / "rgb" / f"{i:08d}.jpg"), render(scene, rng),
                            [cv2.IMWRITE_JPEG_QUALITY, 92])
                Ks.append(np.round(scene["K"], 4).tolist())
                xyzs.append(np.round(scene["xyz"], 6).tolist())
                verts.append(np.round(scene["vertices"], 6).tolist())
                manos.append([np.concatenate([scene["angles"].ravel(), np.zeros(41)]).round(5).tolist()])
                scales.append(round(_scale(scene["xyz"]), 6))
            files = {"K": Ks, "xyz": xyzs, "verts": verts, "mano": manos, "scale": scales}
            for name, data in files.items():
                (tmp / f"{split}_{name}.json").write_text(json.dumps(data, separators=(",", ":")))
    return out


# DexYCB layout: two subjects, two cameras (the release's first two serials, with a RealSense-like K each),
# FRAMES_PER_VIEW frames per camera; sequences alternate right and left hands; every third sequence's last frame
# has no hand (labels -1, as the release writes them) so readers meet one.
DEXYCB_SUBJECTS = ("synthetic-subject-01", "synthetic-subject-02")
FRAMES_PER_VIEW = 4


def generate_dexycb(out_dir: str | os.PathLike[str], num: int, seed: int = 0, *, progress: bool = True) -> Path:
    """Write about `num` frames (whole sequences: rounded up to 2 cameras x FRAMES_PER_VIEW) in DexYCB's released
    layout; labels carry joint_3d, joint_2d, pose_m (only its translation is meaningful: these hands are not MANO)
    and `vertices` (778, 3), an extra the reader prefers over a MANO forward pass."""
    import cv2

    from ..errors import UsageError
    from .dexycb import HEIGHT, SERIALS, WIDTH

    if num < 1:
        raise UsageError(f"--num must be >= 1 (got {num})")
    out = Path(out_dir)
    check_out_dir(out, ("calibration",), "a synthetic DexYCB set")
    rng = np.random.default_rng([seed, 2])
    serials = SERIALS[:2]
    cams = {s: np.array([[f, 0, WIDTH / 2 + dx], [0, f, HEIGHT / 2 + dy], [0, 0, 1.0]])
            for s, f, dx, dy in zip(serials, (615.0, 608.0), (3.5, -6.0), (-2.0, 4.5), strict=True)}
    n_seq = -(-num // (len(serials) * FRAMES_PER_VIEW))
    with atomic_path(out, is_dir=True) as tmp:
        intr = tmp / "calibration" / "intrinsics"
        intr.mkdir(parents=True)
        for s, K in cams.items():
            (intr / f"{s}_{WIDTH}x{HEIGHT}.yml").write_text(
                f"color:\n  fx: {K[0, 0]}\n  fy: {K[1, 1]}\n  ppx: {K[0, 2]}\n  ppy: {K[1, 2]}\n")
        for q in track(range(n_seq), "synth dexycb", progress):
            subject = DEXYCB_SUBJECTS[q % len(DEXYCB_SUBJECTS)]
            side, calib = ("right", "left")[q % 2], f"{subject}_{q % 2}"
            seq = tmp / subject / f"seq_{q:03d}"
            mano_dir = tmp / "calibration" / f"mano_{calib}"
            if not mano_dir.is_dir():
                mano_dir.mkdir(parents=True)
                betas = ", ".join(f"{v:.4f}" for v in rng.normal(0, 0.5, 10))
                (mano_dir / "mano.yml").write_text(f"betas: [{betas}]\n")
            seq.mkdir(parents=True)
            (seq / "meta.yml").write_text(
                f"serials: [{', '.join(repr(s) for s in serials)}]\nnum_frames: {FRAMES_PER_VIEW}\n"
                f"mano_sides: [{side}]\nmano_calib: [{calib}]\nycb_ids: [1]\nycb_grasp_ind: 0\n")
            for s, K in cams.items():
                (seq / s).mkdir()
                for f in range(FRAMES_PER_VIEW):
                    handless = q % 3 == 2 and f == FRAMES_PER_VIEW - 1
                    if handless:
                        image = _background(rng, WIDTH, HEIGHT)
                        labels = {"joint_3d": -np.ones((1, 21, 3)), "joint_2d": -np.ones((1, 21, 2)),
                                  "pose_m": np.zeros((1, 51))}
                    else:
                        scene = sample_scene(rng, K, (WIDTH, HEIGHT), left=side == "left")
                        image = render(scene, rng, (WIDTH, HEIGHT))
                        uv = scene["xyz"] @ K.T
                        pose = np.zeros(51)
                        pose[48:] = scene["xyz"][0]
                        labels = {"joint_3d": scene["xyz"][None], "joint_2d": (uv[:, :2] / uv[:, 2:3])[None],
                                  "pose_m": pose[None], "vertices": scene["vertices"][None]}
                    cv2.imwrite(str(seq / s / f"color_{f:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
                    arrays: dict[str, Any] = {k: v.astype(np.float32) for k, v in labels.items()}
                    np.savez(seq / s / f"labels_{f:06d}.npz", **arrays)
    return out


LAYOUTS = ("freihand", "dexycb")


@dataclass(frozen=True)
class SynthConfig:
    """`simplehand-deploy synth`: where, how many, which seed; every default is the command's."""

    out: Path
    num: int = 1000
    seed: int = 0
    eval_num: int = 0
    layout: str = "freihand"  # or "dexycb" (--num frames; --eval-num does not apply)
    progress: bool = True

    @classmethod
    def from_cli(cls, *, quiet: bool = False, **options: Any) -> SynthConfig:
        """Options left at None take the defaults above; `quiet` turns the progress bars off; --num < 1 refused."""
        from ..errors import UsageError

        cfg = cls(progress=not quiet, **{k: v for k, v in options.items() if v is not None})
        if cfg.num < 1:
            raise UsageError(f"--num must be >= 1 (got {cfg.num})")
        if cfg.layout not in LAYOUTS:
            raise UsageError(f"--layout {cfg.layout!r}: choose one of {', '.join(LAYOUTS)}")
        if cfg.layout == "dexycb" and cfg.eval_num:
            raise UsageError("--eval-num applies to --layout freihand only (DexYCB splits are by folder: use --split)")
        return cfg


def run_synth(cfg: SynthConfig) -> Path:
    """Write the synthetic set `cfg` describes; the folder written."""
    if cfg.layout == "dexycb":
        return generate_dexycb(cfg.out, cfg.num, cfg.seed, progress=cfg.progress)
    return generate(cfg.out, cfg.num, cfg.seed, eval_num=cfg.eval_num, progress=cfg.progress)
