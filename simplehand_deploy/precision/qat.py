"""Quantisation-aware fine-tuning (`simplehand-deploy qat`): fake quantisation in PyTorch that computes what our
Q/DQ graph computes, distillation from the FP32 model, then the same Q/DQ export with the learned scales.

Why it matches the artifact: the fake quantisation is *read from a Q/DQ graph* rather than re-derived. The
fused model is exported, quantised with `quantize_int8` (the same placement, `--exclude`, `--method` and
island), and every weighted node of that graph (Conv, ConvTranspose, MatMul, Gemm in graph order) is paired
with one weighted call of the PyTorch forward (conv2d, conv_transpose2d, linear, matmul in execution order,
intercepted with a `TorchFunctionMode`, so no module is rewritten). Where the graph has a Q/DQ pair the call
gets the same quantiser: per-tensor symmetric activations (zero point 0, int8 saturation, round half to
even) with the calibrated scale as the start of a learned one (LSQ: straight-through rounding, gradient
scaled by 1/sqrt(numel * 127)), per-channel symmetric weights on the graph's channel axis with max|w|/127
(recomputed from the weights at every step, as the export does). One tensor read by several quantised
layers has one Q/DQ pair in the graph and one learned scale here.

Export: the fine-tuned FP32 weights are exported and quantised again with the same placement (weight
scales per-channel max|w|/127), then the learned activation scales replace the calibrated ones (for trt10
the scales become FP16, so the final figure is measured with FP16 scales). `parity_mm` checks the claim:
the PyTorch fake-quant model against the exported graph in ONNX Runtime (optimisations off).

Training: AdamW on the weights (lr `--lr`, cosine to 0, BN statistics frozen: the model stays in eval
mode) and on the log activation scales (x100 the weight lr); loss = L1 vertices (mm) + L1 uv (px) against
the FP32 teacher's outputs on the same crops, plus `label_weight` x the same against the crops' labels.
QDrop-style: while training, each activation quantiser is bypassed element-wise with probability
`qdrop` so the weights learn to tolerate the noise rather than fit one noise pattern. Early stopping on the
validation crops' mean vertex drift vs the teacher (evaluated every `eval_every` steps; the best state
is kept). The held-out figure the benchmarks report is measured elsewhere, on crops never seen here.
"""

from __future__ import annotations

import copy
import math
import os
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from ..defaults import DEFAULT_METHOD
from ..errors import UsageError
from ..literals import Method, Placement, Target
from ..predict import run_model
from .graph import INT8_OPS

# torch call -> the ONNX op types it exports to
_CALLS: dict[str, tuple[str, ...]] = {"conv2d": ("Conv",), "conv_transpose2d": ("ConvTranspose",),
                                      "linear": ("MatMul", "Gemm"), "matmul": ("MatMul",), "__matmul__": ("MatMul",)}
QMIN, QMAX = -128, 127
DEFAULT_STEPS = 600
DEFAULT_LR = 1e-4
DEFAULT_BATCH = 16
DEFAULT_QDROP = 0.5
DEFAULT_EVAL_EVERY = 50
SCALE_LR_FACTOR = 100.0  # scale lr 1e-2 at the default lr (benchmarks/qat_ablation.py: x10 is slower on `all`)
VAL_FRACTION = 0.1


# -- the quantisers ----------------------------------------------------------------------------------

def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return (x.round() - x).detach() + x


def _grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    return (x - x * g).detach() + x * g


def fake_quant(x: torch.Tensor, scale: torch.Tensor, lsq_numel: int | None = None) -> torch.Tensor:
    """QuantizeLinear -> DequantizeLinear (symmetric int8, zero point 0) with straight-through rounding;
    `lsq_numel` scales the scale's gradient the LSQ way."""
    if lsq_numel is not None:
        scale = _grad_scale(scale, 1.0 / math.sqrt(lsq_numel * QMAX))
    return torch.clamp(_round_ste(x / scale), QMIN, QMAX) * scale


def weight_scale(w: torch.Tensor, axis: int) -> torch.Tensor:
    """Per-channel symmetric scale max|w|/127 along `axis`, shaped to broadcast against `w`."""
    dims = [d for d in range(w.dim()) if d != axis]
    amax = w.detach().abs().amax(dim=dims, keepdim=True)
    return torch.where(amax > 0, amax / QMAX, torch.ones_like(amax))


@dataclass
class Site:
    """One weighted node of the Q/DQ graph and how its inputs are quantised (None: float)."""

    node: str
    op: str
    act: list[str | None]  # graph tensor quantised for input 0 (and input 1 of an activation x activation MatMul)
    weight_axis: int | None  # torch axis of the per-channel weight scale; None: weight float (or no weight)
    weight_shape: tuple[int, ...] | None = None  # as stored in the graph (None: activation x activation)


def _follow_casts(producer: dict[str, Any], tensor: str) -> Any:
    node = producer.get(tensor)
    while node is not None and node.op_type == "Cast":
        node = producer.get(node.input[0])
    return node


def read_plan(model: Any) -> tuple[list[Site], dict[str, float]]:
    """The weighted nodes of a Q/DQ graph in graph order, with their quantised inputs, and the activation
    scales (graph tensor -> scale)."""
    from onnx import numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    sites: list[Site] = []
    scales: dict[str, float] = {}
    for n in g.node:
        if n.op_type not in INT8_OPS:
            continue
        weight_in = next((k for k in (1, 0) if k < len(n.input) and _is_weight(producer, inits, n.input[k])), None)
        act: list[str | None] = []
        axis = None
        shape = None
        for k, tensor in enumerate(n.input[:2]):
            dq = _follow_casts(producer, tensor)
            if k == weight_in:
                shape = _weight_shape(producer, inits, tensor)
                if dq is not None and dq.op_type == "DequantizeLinear":
                    onnx_axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
                    axis = _torch_axis(n, onnx_axis)
                continue
            if dq is None or dq.op_type != "DequantizeLinear":
                act.append(None)
                continue
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                act.append(None)
                continue
            scales[q.input[0]] = float(numpy_helper.to_array(inits[q.input[1]]).reshape(-1)[0])
            act.append(q.input[0])
        sites.append(Site(n.name, n.op_type, act, axis, shape))
    return sites, scales


def _weight_shape(producer: dict[str, Any], inits: dict[str, Any], tensor: str) -> tuple[int, ...] | None:
    while tensor not in inits:
        node = producer.get(tensor)
        if node is None or node.op_type not in ("Cast", "DequantizeLinear", "QuantizeLinear"):
            return None
        tensor = node.input[0]
    return tuple(int(d) for d in inits[tensor].dims)


def _is_weight(producer: dict[str, Any], inits: dict[str, Any], tensor: str) -> bool:
    """A weight: an initializer, or a DequantizeLinear (through Casts) of a QuantizeLinear of one / of int8 data."""
    if tensor in inits:
        return True
    dq = _follow_casts(producer, tensor)
    if dq is None or dq.op_type != "DequantizeLinear":
        return False
    if dq.input[0] in inits:
        return True
    q = producer.get(dq.input[0])
    return q is not None and q.op_type == "QuantizeLinear" and q.input[0] in inits


def _torch_axis(node: Any, onnx_axis: int) -> int:
    """The torch weight axis of an ONNX per-channel axis: MatMul and Gemm without transB store W transposed."""
    transposed = node.op_type == "MatMul" or (node.op_type == "Gemm" and not any(
        a.name == "transB" and a.i for a in node.attribute))
    return 1 - onnx_axis if transposed else onnx_axis


class _Calls(TorchFunctionMode):
    """Intercepts the weighted calls of a forward pass; `hook(k, name, args)` may replace their arguments."""

    def __init__(self, hook: Callable[[int, str, list[Any]], list[Any]]) -> None:
        super().__init__()
        self.hook = hook
        self.count = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if name not in _CALLS:
            return func(*args, **(kwargs or {}))
        k = self.count
        self.count += 1
        return func(*self.hook(k, name, list(args)), **(kwargs or {}))


def _timm_attention_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """timm FastViT attention as the exported graph computes it: scaled_dot_product_attention's ONNX form
    multiplies q and k^T by sqrt(scale) each (the tensors the graph quantises), same numbers as timm's."""
    b, c, h, w = x.shape
    n = h * w
    x = x.flatten(2).transpose(-2, -1)
    qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    s = math.sqrt(self.scale)
    attn = ((q * s) @ (k.transpose(-2, -1) * s)).softmax(dim=-1)
    x = (attn @ v).transpose(1, 2).reshape(b, n, c)
    x = self.proj(x)
    return x.transpose(-2, -1).reshape(b, c, h, w)


class QatModel(torch.nn.Module):
    """A fused SimpleHand whose forward fake-quantises what a Q/DQ graph quantises (see the module docstring)."""

    base_scales: torch.Tensor  # a buffer (register_buffer): follows .to(), never trained
    net: Any  # the SimpleHand being fine-tuned (nn.Module's type does not know its backbone or heads)

    def __init__(self, model: torch.nn.Module, sites: Sequence[Site], scales: dict[str, float],
                 factors: dict[str, float] | None = None) -> None:
        super().__init__()
        self.net = model
        for m in model.modules():  # the exported graph's attention form (see _timm_attention_forward)
            if type(m).__name__ == "Attention" and hasattr(m, "fused_attn") and hasattr(m, "qkv"):
                m.forward = types.MethodType(_timm_attention_forward, m)
        self.sites = list(sites)
        self.tensors = sorted(scales)
        # learned: log multipliers of the calibrated scales (0 at the start, so the start is the graph exactly)
        self.register_buffer("base_scales", torch.tensor([scales[t] for t in self.tensors], dtype=torch.float32))
        self.log_scales = torch.nn.Parameter(torch.zeros(len(self.tensors)))
        self._index = {t: i for i, t in enumerate(self.tensors)}
        self.qdrop = 0.0
        self.quantise = True
        self._site_of_call = self._pair()
        # graph tensor = factor x torch tensor (onnxsim moves constants across layers: GELU's 0.5 into the next
        # weights, the attention scale split over q and k); set by `calibrate_factors`
        self.factors = dict.fromkeys(self.tensors, 1.0) if factors is None else dict(factors)

    def calibrate_factors(self, fp32_onnx: str | os.PathLike[str], images: np.ndarray) -> None:
        """Measure, per quantised tensor, the constant factor between the graph's tensor and the torch call's input
        on `images` (FP32 graph vs this model, no quantisation); a pairing whose tensors are not proportional is an
        error (the wrong call was paired)."""
        import onnx

        from ..ort import make_session

        model = onnx.load(str(fp32_onnx))
        known = {o for n in model.graph.node for o in n.output}
        missing = [t for t in self.tensors if t not in known]
        if missing:
            raise UsageError(f"qat: {fp32_onnx} has no tensor {missing[0]}; pass the FP32 graph the Q/DQ one came from")
        outputs = {o.name for o in model.graph.output}
        for t in self.tensors:
            if t not in outputs:
                model.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "probe.onnx"
            onnx.save(model, str(path))
            got = make_session(path, fake_quant=True).run(self.tensors, {"image": np.ascontiguousarray(images)})
        graph_values = dict(zip(self.tensors, got, strict=True))
        seen: dict[str, np.ndarray] = {}

        def record(k: int, name: str, args: list[Any]) -> list[Any]:
            site = self._site_of_call[k]
            for i, t in enumerate(site.act):
                if t is not None:
                    seen[t] = args[i].detach().numpy()
            return args

        with torch.no_grad(), _Calls(record):
            self.net(torch.from_numpy(np.ascontiguousarray(images)))
        for t in self.tensors:
            o = np.asarray(graph_values[t], np.float64).ravel()
            x = seen[t].astype(np.float64).ravel()
            if o.size != x.size or not np.any(x):
                raise UsageError(f"qat: graph tensor {t} does not pair with its torch call; quantise a graph exported "
                                 "from this checkpoint and config")
            f = float(o @ x / (x @ x))
            if not f > 0 or np.abs(o - f * x).max() > 1e-3 * max(np.abs(o).max(), 1e-6):
                raise UsageError(f"qat: graph tensor {t} is not a positive multiple of its torch call's input; "
                                 "quantise a graph exported from this checkpoint and config")
            p2 = 2.0 ** round(math.log2(f))  # onnxsim moves powers of two (GELU's 0.5): keep them exact
            self.factors[t] = p2 if abs(f / p2 - 1) < 1e-4 else f

    def activation_scales(self) -> dict[str, float]:
        return {t: float(v) for t, v in zip(self.tensors, self.scales().detach(), strict=True)}

    def scales(self) -> torch.Tensor:
        """The activation scales in graph units (one per quantised tensor)."""
        return self.base_scales * self.log_scales.exp()

    def _calls(self) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
        seen: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []

        def record(k: int, name: str, args: list[Any]) -> list[Any]:
            seen.append((name, tuple(args[0].shape), tuple(args[1].shape)))
            return args

        with torch.no_grad(), _Calls(record):
            self.net(torch.zeros(1, 3, 224, 224))
        return seen

    def _pair(self) -> dict[int, Site]:
        """Torch call index -> graph node. Graph order may differ from execution order where branches are
        independent (the uv head and the deconvolution), so each node takes the first unpaired call of its kind
        whose weight has the node's weight shape (or its transpose); activation x activation MatMuls pair in
        order. `parity_mm` checks the outcome against the graph."""
        calls = self._calls()
        if len(calls) != len(self.sites):
            raise UsageError(f"qat: the model makes {len(calls)} weighted calls but the graph has {len(self.sites)} "
                             "weighted nodes; quantise a graph exported from this checkpoint and config")
        free = list(range(len(calls)))
        out: dict[int, Site] = {}
        for site in self.sites:
            def fits(k: int, site: Site = site) -> bool:
                name, _, w = calls[k]
                if site.op not in _CALLS[name]:
                    return False
                if site.weight_shape is None:
                    return name in ("matmul", "__matmul__")
                return name not in ("matmul", "__matmul__") and w in (site.weight_shape, site.weight_shape[::-1])
            k = next((k for k in free if fits(k)), None)
            if k is None:
                raise UsageError(f"qat: graph node {site.node} ({site.op}, weight {site.weight_shape}) has no matching "
                                 "torch call; quantise a graph exported from this checkpoint and config")
            free.remove(k)
            out[k] = site
        return out

    def _hook(self, k: int, name: str, args: list[Any]) -> list[Any]:
        site = self._site_of_call[k]
        for i, tensor in enumerate(site.act):
            if tensor is None:
                continue
            x = args[i]
            j = self._index[tensor]
            scale = self.base_scales[j] * self.log_scales[j].exp() / self.factors[tensor]
            q = fake_quant(x, scale, lsq_numel=x[0].numel() if self.training else None)
            if self.training and self.qdrop > 0:
                q = torch.where(torch.rand_like(x) < self.qdrop, x, q)
            args[i] = q
        if site.weight_axis is not None:
            w = args[1]
            args[1] = fake_quant(w, weight_scale(w, site.weight_axis))
        return args

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.quantise:
            return self.net(image)
        with _Calls(self._hook):
            return self.net(image)


# -- data and loss -----------------------------------------------------------------------------------

def _drift(ref: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> float:
    """Mean vertex drift in mm (`drift.vertex_drift_mm`, the one definition)."""
    from ..drift import vertex_drift_mm

    return float(vertex_drift_mm(ref, out).mean())


def _loss(uv: torch.Tensor, vert: torch.Tensor, t_uv: torch.Tensor, t_vert: torch.Tensor) -> torch.Tensor:
    """L1 vertices in mm + L1 uv in crop pixels (x224)."""
    return (vert - t_vert).abs().mean() * 1000 + (uv - t_uv).abs().mean() * 224


# -- the job -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QatConfig:
    """`simplehand-deploy qat`: the teacher checkpoint, the sets, the output and the fine-tuning recipe; every
    default is the command's."""

    checkpoint: Path
    config: str
    calib: Path
    data: Path
    out: Path
    val: Path | None = None  # None: the last 10% of --data (never trained on)
    placement: Placement = "dense"
    exclude: tuple[str, ...] = ()
    method: Method = DEFAULT_METHOD
    target: Target = "trt10"
    steps: int = DEFAULT_STEPS
    lr: float = DEFAULT_LR
    batch_size: int = DEFAULT_BATCH
    label_weight: float = 0.0
    device: str = "cpu"
    seed: int = 0
    save_checkpoint: Path | None = None
    qdrop: float = DEFAULT_QDROP
    eval_every: int = DEFAULT_EVAL_EVERY
    export: bool = True
    progress: bool = True

    @classmethod
    def from_cli(cls, *, quiet: bool = False, **options: Any) -> QatConfig:
        """Options left at None take the defaults above; values are checked here, before any work."""
        given: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                 for k, v in options.items() if v is not None}
        cfg = cls(progress=not quiet, **given)
        cfg.check()
        return cfg

    def check(self) -> None:
        from ..config import get_config
        from .qdq import _check_options

        _check_options(self.method, "ort", None, self.placement, self.target)
        get_config(self.config)
        if self.steps < 1:
            raise UsageError(f"--steps {self.steps}: give at least 1 fine-tuning step")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size {self.batch_size}: give at least 1")
        if not self.lr > 0:
            raise UsageError(f"--lr {self.lr}: give a positive learning rate")
        if self.label_weight < 0:
            raise UsageError(f"--label-weight {self.label_weight}: give 0 or more")
        if self.device not in ("cpu", "cuda"):
            raise UsageError(f"--device {self.device!r}: choose cpu or cuda")
        if not 0 <= self.qdrop < 1:
            raise UsageError(f"qdrop {self.qdrop}: give a probability in [0, 1)")
        if not Path(self.checkpoint).is_file():
            raise UsageError(f"--checkpoint {self.checkpoint}: no such file (QAT fine-tunes trained weights)")
        if self.export and Path(self.out).suffix != ".onnx":
            raise UsageError(f"--out {self.out}: name an .onnx file")


@dataclass
class QatResult:
    """What `qat` did: the artifacts written (one per target), the validation drift before and after."""

    artifacts: list[Any]
    record: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)

    def lines(self) -> list[str]:
        r = self.record
        out = [f"qat: {r['steps_run']} steps in {r['seconds']:.0f} s; validation drift (fake quant vs FP32, "
               f"{r['val_crops']} crops) {r['val_start_mm']:.3f} -> {r['val_best_mm']:.3f} mm (best at step "
               f"{r['best_step']})"]
        for art in self.artifacts:
            desc = art.int8.describe() if art.int8 is not None else ""
            out.append(f"wrote {art.path} ({desc})")
        return out


def _sets(cfg: QatConfig) -> tuple[Any, np.ndarray, np.ndarray, dict[str, Any]]:
    from ..calibration import load_calibration_set
    from ..fileio import sha256_file

    data = load_calibration_set(cfg.data)
    calib = load_calibration_set(cfg.calib)
    if cfg.val is not None:
        val = load_calibration_set(cfg.val)
        train_images, val_images = data.images, val.images
        val_note = {"path": str(val.path), "fingerprint": val.fingerprint}
    else:
        n_val = max(1, round(len(data.images) * VAL_FRACTION))
        if len(data.images) - n_val < 1:
            raise UsageError(f"--data {data.path}: {len(data.images)} crop(s); the last 10% validate, the rest "
                             "train: make a set with --num 10 or more, or give --val")
        train_images, val_images = data.images[:-n_val], data.images[-n_val:]
        val_note = {"path": f"{data.path} (last {n_val} crops, not trained on)"}
    labels = {"vertices": data.vertices, "uv": data.uv} if cfg.label_weight > 0 else {}
    if cfg.label_weight > 0 and (data.vertices is None or data.uv is None):
        raise UsageError(f"--label-weight {cfg.label_weight}: {data.path} has no vertex/uv labels; use 0")
    record: dict[str, Any]
    record = {"data": {"path": str(data.path), "fingerprint": data.fingerprint, "crops": len(train_images),
                       "images_sha256": sha256_file(Path(data.path) / "images.npy")},
              "val": {**val_note, "crops": len(val_images)},
              "calibration": {"path": str(calib.path), "fingerprint": calib.fingerprint}}
    if cfg.val is not None:
        record["val"]["images_sha256"] = sha256_file(Path(cfg.val) / "images.npy")
    return labels, train_images, val_images, record


def build_qat_model(model: torch.nn.Module, fp32_onnx: Path, calib: Path, work: Path, *, placement: Placement,
                    exclude: Sequence[str], method: Method, progress: bool) -> QatModel:
    """The fake-quant twin of `quantize_int8(fp32_onnx, ...)` (trt8 form: FP32 scales) around a copy of `model`."""
    import onnx

    from .qdq import quantize_int8

    ptq = work / "ptq.onnx"
    quantize_int8(fp32_onnx, calib, ptq, method=method, exclude=exclude, placement=placement, target="trt8",
                  progress=progress)
    sites, scales = read_plan(onnx.load(str(ptq)))
    qm = QatModel(copy.deepcopy(model), sites, scales)
    from ..calibration import load_calibration_set

    qm.calibrate_factors(fp32_onnx, load_calibration_set(calib).images[:2])
    return qm


def fine_tune(qm: QatModel, teacher: torch.nn.Module, train_images: np.ndarray, val_images: np.ndarray, *,
              steps: int, lr: float, batch_size: int, seed: int, qdrop: float = DEFAULT_QDROP,
              eval_every: int = DEFAULT_EVAL_EVERY, labels: dict[str, Any] | None = None, label_weight: float = 0.0,
              device: str = "cpu", progress: bool = False, feature_weight: float = 0.0,
              scale_lr_factor: float = SCALE_LR_FACTOR,
              on_eval: Callable[[dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Distil `teacher` into the fake-quant model; the best validation state is left in `qm`. Returns the record.
    `on_eval` sees each validation point (step, drift, loss) as it happens (logs of long runs). `feature_weight`
    (block-output distillation) and `scale_lr_factor` are the recipe knobs the QAT ablation varies."""
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    teacher_val = run_model(teacher, val_images)
    teach = run_model(teacher, train_images)
    qm.eval()
    qm.to(device)

    def val_drift() -> float:
        qm.eval()
        return _drift(teacher_val, run_model(qm, val_images, device))

    weights = [p for n, p in qm.named_parameters() if n != "log_scales"]
    opt = torch.optim.AdamW([{"params": weights, "lr": lr, "weight_decay": 0.0},
                             {"params": [qm.log_scales], "lr": lr * scale_lr_factor, "weight_decay": 0.0}])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    start = best = val_drift()
    best_step, best_state = 0, copy.deepcopy(qm.state_dict())
    history = [{"step": 0, "val_drift_mm": start}]
    bar = _Bar("qat", steps, progress)
    qm.qdrop = qdrop
    stopped = False
    taps = _FeatureTaps(teacher, qm.net) if feature_weight > 0 else None
    try:
        for step in bar.iterate(range(1, steps + 1)):
            idx = torch.randint(0, len(train_images), (batch_size,), generator=g).numpy()
            x = torch.from_numpy(np.ascontiguousarray(train_images[idx])).to(device)
            t_uv = torch.from_numpy(teach["uv"][idx]).to(device)
            t_vert = torch.from_numpy(teach["vertices"][idx]).to(device)
            qm.train()
            qm.net.eval()  # BN statistics and dropout frozen; the quantisers' training behaviour on
            if taps is not None:
                with torch.no_grad():
                    teacher(x)
            uv, vert = qm(x)
            loss = _loss(uv, vert, t_uv, t_vert)
            if taps is not None:
                loss = loss + feature_weight * taps.loss()
            if labels and label_weight > 0:
                loss = loss + label_weight * _loss(uv, vert, torch.from_numpy(labels["uv"][idx]).to(device),
                                                   torch.from_numpy(labels["vertices"][idx]).to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(weights, 1.0)
            opt.step()
            sched.step()
            bar.loss = float(loss.detach())
            if step % eval_every == 0 or step == steps:
                d = val_drift()
                history.append({"step": step, "val_drift_mm": d, "train_loss": bar.loss,
                                "seconds": time.perf_counter() - t0})
                if on_eval is not None:
                    on_eval(history[-1])
                if d < best:
                    best, best_step, best_state = d, step, copy.deepcopy(qm.state_dict())
                bar.val = d
    except KeyboardInterrupt:
        stopped = True
        raise
    finally:
        bar.close()
        if taps is not None:
            taps.close()
        if not stopped:
            qm.load_state_dict(best_state)
        qm.qdrop = 0.0
        qm.eval()
        qm.to("cpu")
    return {"steps_run": steps, "val_crops": len(val_images), "val_start_mm": start, "val_best_mm": best,
            "best_step": best_step, "seconds": time.perf_counter() - t0, "history": history}


class _FeatureTaps:
    """Block outputs of the teacher and the student (each backbone stage, the final conv): the feature
    distillation term, sum over taps of mean squared error / mean square of the teacher's feature."""

    def __init__(self, teacher: torch.nn.Module, student: torch.nn.Module) -> None:
        self.t: dict[int, torch.Tensor] = {}
        self.s: dict[int, torch.Tensor] = {}
        self.hooks = []
        for store, net in ((self.t, teacher), (self.s, student)):
            bb = cast(Any, net).backbone
            for k, mod in enumerate([*bb.stages, bb.final_conv]):
                self.hooks.append(mod.register_forward_hook(self._keep(store, k)))

    @staticmethod
    def _keep(store: dict[int, torch.Tensor], k: int) -> Any:
        def hook(_m: Any, _i: Any, out: torch.Tensor) -> None:
            store[k] = out
        return hook

    def loss(self) -> torch.Tensor:
        return sum(((self.s[k] - self.t[k].detach()) ** 2).mean() / (self.t[k].detach() ** 2).mean().clamp(min=1e-12)
                   for k in self.t)  # type: ignore[return-value]

    def close(self) -> None:
        for h in self.hooks:
            h.remove()


class _Bar:
    """A rich bar on stderr with the running loss and validation drift; silent when disabled."""

    def __init__(self, label: str, total: int, enabled: bool) -> None:
        self.loss: float | None = None
        self.val: float | None = None
        self._p: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TextColumn("loss {task.fields[loss]} val drift {task.fields[val]} mm"),
                               TimeRemainingColumn(), transient=True, console=Console(stderr=True))
            self._p.start()
            self._task = self._p.add_task(label, total=total, loss="-", val="-")

    def iterate(self, steps: range) -> Any:
        for s in steps:
            yield s
            if self._p is not None:
                self._p.update(self._task, advance=1, loss="-" if self.loss is None else f"{self.loss:.3f}",
                               val="-" if self.val is None else f"{self.val:.3f}")

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


def apply_scales(path: Path, sites: Sequence[Site], learned: dict[str, float]) -> int:
    """Write learned activation scales (keyed by the tensors of the graph the model was built from) into the
    Q/DQ graph at `path`, pairing its weighted nodes with `sites` in order; returns how many were replaced."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    new_sites, _ = read_plan(model)
    if [s.op for s in new_sites] != [s.op for s in sites]:
        raise RuntimeError(f"{path}: its weighted nodes do not pair with the fine-tuned model's")
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    quant = {n.input[0]: n for n in g.node if n.op_type == "QuantizeLinear"}
    done: set[str] = set()
    for old, new in zip(sites, new_sites, strict=True):
        for t_old, t_new in zip(old.act, new.act, strict=False):
            if t_old is None or t_new is None or t_new in done:
                continue
            q = quant[t_new]
            names = {q.input[1]}
            for n in g.node:  # the DQ(s) of this Q carry their own scale initializer when retyped
                if n.op_type == "DequantizeLinear" and producer.get(n.input[0]) is q:
                    names.add(n.input[1])
            for name in names:
                t = inits[name]
                base = numpy_helper.to_array(t)
                t.CopyFrom(numpy_helper.from_array(np.asarray(learned[t_old], dtype=base.dtype).reshape(base.shape),
                                                   name))
            done.add(t_new)
    onnx.save(model, str(path))
    return len(done)


def parity_mm(qm: QatModel, path: str | os.PathLike[str], images: np.ndarray, fp16_scales: bool = False) -> float:
    """Mean |delta vertex| (mm) between the fake-quant PyTorch model and the Q/DQ graph at `path` (ONNX Runtime,
    optimisations off). `fp16_scales`: round the activation scales to FP16 first (what a trt10 graph stores)."""
    from ..ort import make_session, run

    saved = (qm.base_scales.clone(), qm.log_scales.detach().clone())
    if fp16_scales:
        with torch.no_grad():
            qm.base_scales.copy_(qm.scales().half().float())
            qm.log_scales.zero_()
    try:
        ref = run_model(qm, images)
    finally:
        with torch.no_grad():
            qm.base_scales.copy_(saved[0])
            qm.log_scales.copy_(saved[1])
    return _drift(ref, run(make_session(path, fake_quant=True), images))


def run_qat(cfg: QatConfig, on_eval: Callable[[dict[str, float]], None] | None = None) -> QatResult:
    """Fine-tune, then export both targets (`cfg.out` for `cfg.target`, the other beside it as
    `<stem>.<target>.onnx`); nothing is written when anything fails or is interrupted."""
    import tempfile

    from ..artifact import OnnxArtifact
    from ..checkpoint import load_checkpoint, save_checkpoint
    from ..export import export_onnx
    from ..fileio import atomic_path, sha256_file
    from ..literals import TARGETS
    from .qdq import quantize_int8

    cfg.check()
    teacher, info = load_checkpoint(cfg.checkpoint, cfg.config, fused=True)
    if info.config != cfg.config:
        raise UsageError(f"--checkpoint {cfg.checkpoint}: a {info.config} checkpoint, not --config {cfg.config}; "
                         f"pass --config {info.config}")
    labels, train_images, val_images, record = _sets(cfg)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device here; use --device cpu")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qat-") as d:
        work = Path(d)
        fp32 = export_onnx(teacher, work / "teacher-fp32.onnx", info=info, progress=False).path
        qm = build_qat_model(teacher, fp32, cfg.calib, work, placement=cfg.placement, exclude=cfg.exclude,
                             method=cfg.method, progress=False)
        for p in teacher.parameters():
            p.requires_grad_(False)
        fit = fine_tune(qm, teacher, train_images, val_images, steps=cfg.steps, lr=cfg.lr,
                        batch_size=cfg.batch_size, seed=cfg.seed, qdrop=cfg.qdrop, eval_every=cfg.eval_every,
                        labels=labels, label_weight=cfg.label_weight, device=cfg.device, progress=cfg.progress,
                        on_eval=on_eval)
        sites = qm.sites
        learned = qm.activation_scales()
        recipe = {"steps": cfg.steps, "lr": cfg.lr, "scale_lr": cfg.lr * SCALE_LR_FACTOR, "batch_size": cfg.batch_size,
                  "qdrop": cfg.qdrop, "label_weight": cfg.label_weight, "seed": cfg.seed,
                  "teacher_checkpoint": str(cfg.checkpoint), "teacher_sha256": info.sha256,
                  "loss": "L1 vertices (mm) + L1 uv (px) vs the FP32 teacher", **record,
                  **{k: v for k, v in fit.items() if k != "history"}, "history": fit["history"]}
        artifacts = []
        if cfg.export:
            tuned = copy.deepcopy(teacher)
            tuned.load_state_dict(qm.net.state_dict())
            tuned_fp32 = export_onnx(tuned, work / "qat-fp32.onnx", info=info, progress=False).path
            outs = {cfg.target: Path(cfg.out)}
            for t in TARGETS:
                outs.setdefault(t, Path(cfg.out).with_suffix(f".{t}.onnx"))
            for target, out in outs.items():
                with atomic_path(out) as tmp:
                    staged = work / f"{target}.onnx"
                    quantize_int8(tuned_fp32, cfg.calib, staged, method=cfg.method, exclude=cfg.exclude,
                                  placement=cfg.placement, target=target, progress=False)
                    replaced = apply_scales(staged, sites, learned)
                    staged.replace(tmp)
                    art = OnnxArtifact.read(staged)
                    parity = parity_mm(qm, tmp, val_images[: min(16, len(val_images))],
                                       fp16_scales=target == "trt10")
                    int8 = art.int8
                    assert int8 is not None
                    import dataclasses

                    extra = {**int8.extra, "qat": {**recipe, "activation_scales_learned": replaced,
                                                   "parity_vs_fake_quant_mm": parity}}
                    art = dataclasses.replace(art, path=Path(out), source_onnx=str(fp32),
                                              source_sha256=sha256_file(fp32),
                                              int8=dataclasses.replace(int8, extra=extra),
                                              onnx_sha256=sha256_file(tmp))
                art = art.write()
                artifacts.append(art)
        if cfg.save_checkpoint is not None:
            save_checkpoint(cfg.save_checkpoint, qm.net, extra={"qat": {"activation_scales": learned,
                                                                        "placement": cfg.placement}})
    fit["seconds"] = time.perf_counter() - t0
    return QatResult(artifacts, {**fit, "placement": cfg.placement}, fit["history"])
