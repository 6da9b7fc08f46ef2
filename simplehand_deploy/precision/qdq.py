"""INT8 Q/DQ quantisation of an FP32 graph with ONNX Runtime's static quantiser, placed the TensorRT way.

TensorRT 11 dropped precision flags and calibrators, so INT8 lives in the graph as explicit
QuantizeLinear/DequantizeLinear pairs. The graph is built and *executed* on CPU (ONNX Runtime,
fake-quant), which is how its drift is measured here.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import Int8Recipe, OnnxArtifact, SensitivityRepair
from ..defaults import DEFAULT_METHOD
from ..errors import UsageError
from ..export import ARTIFACT_FORMAT, load_onnx
from ..fileio import atomic_path, sha256_file
from ..literals import METHODS, PLACEMENTS, QUANTIZERS, TARGETS, Method, Placement, Quantizer, Target
from .fp16 import FP16_BLOCK_OPS, island, to_fp16
from .graph import INT8_OPS, activation_matmuls, resolve_exclude, sensitive_nodes
from .macs import int8_mac_share, qdq_count

# Calibration methods: METHODS (literals.Method).
# Where Q/DQ goes (`float_nodes`). `dense`: the backbone's dense convolutions and matmuls and the deconvolution
# (the share of weighted-layer MACs this makes INT8 is read from the graph, `int8_mac_share`, in every
# sidecar), with depthwise convolutions and the token regressor after grid sampling kept float. `all`: every
# weighted layer outside the always-float parts. `matched`: `all` with the vertex head's token upsample INT8 and
# the token regressor's activation x activation MatMuls float, ModelOpt's choice of layers.
# (PLACEMENTS, literals.Placement)
DEFAULT_PLACEMENT: Placement = "dense"
# What the artifact is for. `trt10`: TensorRT >= 10 builds strongly typed, so a DequantizeLinear's output
# takes its scale's type: FP16 scales (opset 19) make everything outside the quantised layers and the
# FP32 island FP16, as TensorRT runs it. `trt8`: FP32 scales at opset 17 for TensorRT 8.6, whose
# builder flags pick the precision of the rest.
# (TARGETS, literals.Target)
DEFAULT_TARGET: Target = "trt10"
TARGET_OPSET = {"trt10": 19, "trt8": 17}


# Sensitivity repair: its budget is checked on the last 25% of the calibration set (at least this many crops),
# which are then not used to calibrate; at least MIN_CALIBRATION crops must remain for calibration.
MIN_HELD_OUT = 8
MIN_CALIBRATION = 8


def held_out_count(n: int) -> int:
    """Crops at the end of an n-crop calibration set that the repair holds out: 25%, at least MIN_HELD_OUT."""
    return max(MIN_HELD_OUT, -(-n // 4))


class _Reader:
    """CalibrationDataReader over calibration crops, with a progress bar."""

    def __init__(self, images: np.ndarray, batch: int, progress: bool) -> None:
        self.batches = [images[i : i + batch] for i in range(0, len(images), batch)]
        self.progress = progress
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def _gen(self) -> Iterator[dict[str, np.ndarray]]:
        from ..progress import track

        for b in track(self.batches, "calibrating", self.progress):
            yield {"image": np.ascontiguousarray(b)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._gen()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


def _check_options(method: str, quantizer: str, max_drift_mm: float | None, placement: str, target: str,
                   scale_search: bool = False) -> None:
    """The INT8 options' vocabularies and combinations, checked before any work; errors name the flag."""
    if method not in METHODS:
        raise UsageError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if placement not in PLACEMENTS:
        raise UsageError(f"--placement {placement!r}: choose one of {', '.join(PLACEMENTS)}")
    if target not in TARGETS and quantizer != "modelopt":
        raise UsageError(f"--target {target!r}: choose trt10 (TensorRT >= 10: FP16 remainder, opset 19) or trt8 "
                         "(TensorRT 8.6: FP32 scales, opset 17)")
    if quantizer == "modelopt" and max_drift_mm is not None:
        raise UsageError("--max-drift-mm (sensitivity repair) belongs to --quantizer ort; ModelOpt places "
                         "its own Q/DQ (use --exclude to keep nodes float)")
    if quantizer == "modelopt" and scale_search:
        raise UsageError("--scale-search belongs to --quantizer ort (it tunes our calibrated scales); drop it "
                         "with --quantizer modelopt")
    if quantizer not in QUANTIZERS:
        raise UsageError(f"--quantizer {quantizer!r}: choose ort or modelopt")


def quantize_int8(
    src: str | os.PathLike[str],
    calib: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    method: Method = DEFAULT_METHOD,
    exclude: Sequence[str] | None = None,
    quantizer: Quantizer = "ort",
    max_drift_mm: float | None = None,
    placement: Placement = DEFAULT_PLACEMENT,
    target: Target = DEFAULT_TARGET,
    scale_search: bool = False,
    int8_upsample: bool = False,
    batch_size: int = 8,
    progress: bool = True,
) -> OnnxArtifact:
    """Explicit Q/DQ INT8 graph (TensorRT's only INT8 route from 11 on), calibrated on a calibration set;
    returns the artifact written (`quantizer="modelopt"`: NVIDIA ModelOpt's, `precision/modelopt.py`).

    Symmetric int8 activations (per tensor) and weights (per channel along the output channels: Conv
    axis 0, ConvTranspose axis 1, MatMul and transB=0 Gemm axis 1 of their (K, N) weight, transB=1 Gemm
    axis 0), zero points 0. `target` trt10: opset 19, FP16 scales on the DQs feeding the FP16
    remainder, the FP32 island of the FP16 artifact (norms, softmax and attention scores, grid path,
    heads) kept FP32; trt8: FP32 scales, opset 17. `scale_search`: after calibration (and any repair), tune the
    activation scales against the FP32 graph's outputs on the calibration crops (`scale_search.search_scales`;
    the repair's held-out crops are never seen); recorded as `extra.scale_search`. `int8_upsample` (diagnostic,
    library only): quantise the vertex head's token upsample too (336 -> 778 tokens, 8% of tiny's
    weighted-layer MACs), which ModelOpt quantises and our placements keep float. Q/DQ sits only on the inputs of the
    quantised weighted layers, TensorRT's recommended placement: no Q/DQ on their outputs (ORT's
    default would put one on every output, in front of GELU, softmax and the residual adds), and
    a float layer next to a quantised one reads the float tensor, not the DQ output they would share (what each
    of these choices does to drift is measured in docs/precision.md).
    """
    _check_options(method, quantizer, max_drift_mm, placement, target, scale_search)
    if quantizer == "modelopt":  # NVIDIA's quantiser in its own venv (precision/modelopt.py)
        from .modelopt import quantize_modelopt

        return quantize_modelopt(src, calib, out, method=method, exclude=exclude, target=target, progress=progress)
    from ..calibration import load_calibration_set
    from .ort_patches import patches_verified

    cal = load_calibration_set(calib)
    graph = load_onnx(src)
    keep_float = float_nodes(graph.graph, placement, exclude or (), int8_upsample=int8_upsample)
    weighted = {n.name for n in graph.graph.node if n.op_type in INT8_OPS}
    excluded = sorted(keep_float & weighted)
    out = Path(out)
    repaired: SensitivityRepair | None = None
    searched: dict[str, Any] | None = None
    images, check = cal.images, None
    if max_drift_mm is not None:  # the budget is checked on crops the calibration never saw
        held = held_out_count(len(images))
        if len(images) - held < MIN_CALIBRATION:
            raise UsageError(f"--max-drift-mm: {cal.path} has {len(images)} crops; the repair checks its budget on "
                             f"the last 25% (at least {MIN_HELD_OUT}) and calibrates on the rest (at least "
                             f"{MIN_CALIBRATION}): make a set with --num {MIN_HELD_OUT + MIN_CALIBRATION} or more")
        images, check = images[: len(images) - held], images[len(images) - held :]
    fp32_island = island(graph.graph)

    def quantise(s: Path, o: Path, ex: list[str], show: bool) -> None:
        ort_quantize(s, o, images, method, ex, batch_size, show)
        if target != "trt8":
            retarget(o, target, fp32_island)

    with atomic_path(out) as tmp:
        named = tmp.with_suffix(".named.onnx")
        import onnx

        onnx.save(graph, str(named))  # node names made unique by sensitive_nodes()
        try:
            quantise(named, tmp, excluded, progress)
            if max_drift_mm is not None:
                from .repair import repair

                assert check is not None
                held_out = {"crops": len(check), "calibration_crops": len(images),
                            "note": "held out: the last 25% of the calibration set (at least 8), not used to calibrate"}
                repaired = SensitivityRepair.from_json(
                    {**repair(named, tmp, quantise, excluded, max_drift_mm, check_images=check, progress=progress),
                     "checked_on": held_out}, "sensitivity repair")
                excluded = list(repaired.excluded_nodes or ())
            if scale_search:
                from .scale_search import search_scales

                searched = search_scales(tmp, named, images, batch_size=batch_size, progress=progress)
        finally:
            named.unlink(missing_ok=True)
        from ..ort import make_session

        make_session(tmp)
        share = int8_mac_share(tmp)
        qdq_nodes = qdq_count(tmp)
    recipe = Int8Recipe(
        quantizer="onnxruntime.quantize_static", method=method, placement=placement, target=target,
        int8_mac_share=share, excluded_nodes=tuple(excluded), sensitivity_repair=repaired, qdq_nodes=qdq_nodes,
        versions=_versions(),
        calibration={"path": str(cal.path), "num": len(cal), "used": len(images), "fingerprint": cal.fingerprint},
        extra={"format": "QDQ", "remainder": "fp16" if target == "trt10" else "fp32 (builder flags pick)",
               "scales": "float16 where the DQ feeds FP16, else float32" if target == "trt10" else "float32",
               "fp32_island": sorted(fp32_island) if target == "trt10" else None,
               "activations": "int8 symmetric per-tensor", "weights": "int8 symmetric per-channel",
               "op_types": list(INT8_OPS), "ort_patches_verified": patches_verified(), "scale_search": searched,
               **({"int8_upsample": True} if int8_upsample else {}),
               **({} if repaired else {"sensitivity_repair": None})})
    # the graph's own opset: a trt8 graph quantised from an opset-16 export (TensorRT 8.5) stays at 16
    opset = max((o.version for o in onnx.load(str(out), load_external_data=False).opset_import
                 if o.domain in ("", "ai.onnx")), default=TARGET_OPSET[target])
    return OnnxArtifact.source(src).derive(out, artifact_format=ARTIFACT_FORMAT, precision="int8",
                                           opset=opset, int8_target=target, int8=recipe,
                                           onnx_sha256=sha256_file(out)).write()


def float_nodes(graph: Any, placement: Placement, exclude: Sequence[str] = (), *, int8_upsample: bool = False
                ) -> set[str]:
    """The nodes a placement keeps float (the one definition of the placements; names nodes first).

    Always: the grid path and the vertex head (its last two weighted layers; `int8_upsample` or `matched`: only
    the 64 -> 3 projection) and `exclude`. `dense`: also the token regressor after grid sampling and every
    depthwise convolution. `matched`: the vertex head's token upsample INT8, the token regressor's
    activation x activation MatMuls float (ModelOpt's layer set, near its INT8 MAC share).
    """
    marks = sensitive_nodes(graph)
    upsample_int8 = int8_upsample or placement == "matched"
    head = sensitive_nodes(graph, head_layers=1)["vertex_head"] if upsample_int8 else marks["vertex_head"]
    keep = marks["grid_path"] | head | resolve_exclude(graph, exclude)
    if placement == "dense":
        keep |= marks["token_regressor"] | marks["depthwise"]
    elif placement == "matched":
        keep |= activation_matmuls(graph, marks["token_regressor"])
    return keep


@dataclass(frozen=True)
class Int8Config:
    """`simplehand-deploy int8`: source graph, calibration set, output and the quantiser's options; every default
    is the command's."""

    onnx: Path
    calib: Path
    out: Path
    method: Method = DEFAULT_METHOD
    quantizer: Quantizer = "ort"
    exclude: tuple[str, ...] = ()  # extra node names kept float
    placement: Placement = DEFAULT_PLACEMENT
    max_drift_mm: float | None = None  # None: no sensitivity repair
    target: Target = DEFAULT_TARGET
    scale_search: bool = False  # output-aware activation-scale search after calibration
    progress: bool = True

    @classmethod
    def from_cli(cls, *, quiet: bool = False, **options: Any) -> Int8Config:
        """Options left at None take the defaults above (lists become tuples); vocabularies and combinations are
        checked here, before any work."""
        given: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                 for k, v in options.items() if v is not None}
        cfg = cls(progress=not quiet, **given)
        _check_options(cfg.method, cfg.quantizer, cfg.max_drift_mm, cfg.placement, cfg.target, cfg.scale_search)
        return cfg


@dataclass(frozen=True)
class Int8Result:
    """What `int8` wrote and whether the sensitivity repair (if asked for) met its budget."""

    artifact: OnnxArtifact

    @property
    def repair(self) -> SensitivityRepair | None:
        recipe = self.artifact.int8
        return recipe.sensitivity_repair if recipe is not None else None

    @property
    def ok(self) -> bool:
        """False when --max-drift-mm was given and the repair missed it (the command exits 1)."""
        return self.repair is None or bool(self.repair.met)

    def lines(self) -> list[str]:
        """What the command prints: the repair's outcome (when it ran) and the artifact written."""
        recipe, rep = self.artifact.int8, self.repair
        out = []
        found = (recipe.extra or {}).get("scale_search") if recipe is not None else None
        if found:
            out.append(f"scale search: calibration-crop drift {found['start_mm']:.3f} -> {found['final_mm']:.3f} mm, "
                       f"{len(found['changed'])} of {found['activation_scales']} activation scales changed")
        if rep is not None:
            out.append(f"sensitivity repair: drift {rep.drift_all_quantised_mm:.3f} -> {rep.final_drift_mm:.3f} mm "
                       f"(budget {rep.budget_mm} mm, on {rep.checked_on_crops} held-out crops), "
                       f"{len(rep.excluded_groups or ())} layer group(s) kept float")
        out.append(f"wrote {self.artifact.path} ({recipe.describe() if recipe is not None else 'no INT8 record'})")
        return out

    def failure(self) -> str | None:
        """Why the result fails verification (one line naming the artifact and the fix); None when it passes."""
        rep = self.repair
        if self.ok or rep is None:
            return None
        return (f"{self.artifact.path}: sensitivity repair missed its budget ({rep.final_drift_mm:.3f} mm > "
                f"{rep.budget_mm} mm on {rep.checked_on_crops} held-out crops, {len(rep.excluded_groups or ())} "
                "layer group(s) kept float); raise --max-drift-mm or calibrate on more crops")


def run_int8(cfg: Int8Config) -> Int8Result:
    """Quantise the graph `cfg` names; the artifact written, with the repair's verdict."""
    return Int8Result(quantize_int8(cfg.onnx, cfg.calib, cfg.out, method=cfg.method, exclude=cfg.exclude,
                                    quantizer=cfg.quantizer, max_drift_mm=cfg.max_drift_mm, placement=cfg.placement,
                                    target=cfg.target, scale_search=cfg.scale_search, progress=cfg.progress))


def _versions() -> dict[str, str]:
    """The quantiser's package versions (ModelOpt's sidecar records its venv's the same way)."""
    import onnx
    import onnxruntime

    return {"onnxruntime": str(onnxruntime.__version__), "onnx": str(onnx.__version__)}


def retarget(path: Path, target: str, fp32_nodes: set[str]) -> None:
    """Rewrite an opset-17, FP32-scale Q/DQ graph (in place) for `target`: trt10 = opset 19 and the FP16
    remainder around the FP32 island (`fp16.to_fp16`, which gives the DQs feeding FP16 layers FP16 scales)."""
    import onnx

    if target == "trt8":
        return
    model = onnx.load(str(path))
    try:
        model = onnx.version_converter.convert_version(model, TARGET_OPSET[target])
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UsageError(f"{path.name}: cannot convert the Q/DQ graph to opset {TARGET_OPSET[target]} for "
                         f"--target {target} ({first}); use --target trt8") from None
    to_fp16(model, fp32_nodes, FP16_BLOCK_OPS)
    onnx.save(model, str(path))


def ort_quantize(src: Path, out: Path, images: np.ndarray, method: str, excluded: list[str], batch: int,
                 progress: bool) -> None:
    """ORT quantize_static with our settings, then float layers rewired to read float tensors."""
    from onnxruntime.quantization import CalibrationMethod, quantize_static

    from .ort_patches import entropy_bins, percentile_guard

    methods = {m.name.lower(): m for m in CalibrationMethod}  # our names are ORT's, lower-cased (MinMax, ...)
    guard = entropy_bins() if method == "entropy" else percentile_guard() if method == "percentile" else \
        contextlib.nullcontext()
    with guard:
        _quantize_static(quantize_static, src, out, images, methods[method], excluded, batch, progress)
    float_layers_read_float(out, set(excluded))


def float_layers_read_float(path: Path, excluded: set[str]) -> None:
    """Rewire every consumer that is not a quantised layer from a shared activation DQ to the float tensor.

    ORT gives a tensor one Q/DQ pair shared by all its consumers, so a float layer that reads the
    same tensor as a quantised one (the uv head's pooling next to the deconvolution) would be fed
    quantised values. Q/DQ pairs left without consumers are removed.
    """
    import onnx

    model = onnx.load(str(path))
    g = model.graph
    inits = {t.name for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    changed = False
    for node in g.node:
        if node.op_type in INT8_OPS and node.name not in excluded:
            continue
        for k, i in enumerate(node.input):
            dq = producer.get(i)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in inits:
                node.input[k] = q.input[0]
                changed = True
    if not changed:
        return
    while True:  # drop Q/DQ nodes nobody reads any more
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    onnx.save(model, str(path))


def _quantize_static(quantize_static: Any, src: Path, out: Path, images: np.ndarray, method: Any,
                     excluded: list[str], batch: int, progress: bool) -> None:
    import logging

    from onnxruntime.quantization import QuantFormat, QuantType

    def drop_preprocess_hint(record: logging.LogRecord) -> bool:
        # ORT logs "consider pre-processing" on every call; export already ran onnxsim and shape checks.
        return "pre-process" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(drop_preprocess_hint)
    # ORT's histogram calibrators print() their settings; quiet runs stay quiet (the rich bar, when shown,
    # writes to stdout too, so stdout is only silenced without one).
    quiet = contextlib.redirect_stdout(io.StringIO()) if not progress else contextlib.nullcontext()
    try:
        with quiet:
            quantize_static(
                str(src), str(out), _Reader(images, batch, progress),
                quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8, calibrate_method=method, op_types_to_quantize=list(INT8_OPS),
                nodes_to_exclude=excluded,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                               "AddQDQPairToWeight": True, "DedicatedQDQPair": False,
                               # per-channel weight axis = the output channels. Gemm has no entry: ORT takes
                               # its axis from transB (1 for the (K, N) weights of transB=0 Gemms, which onnxsim
                               # makes; 0 for (N, K)) and never reads this map for it; a fixed 0 would scale
                               # a transB=0 weight along its reduced axis (tests/test_qdq_axis.py)
                               "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1, "MatMul": 1},
                               "ForceQuantizeNoInputCheck": True, "CalibMovingAverage": False,
                               "OpTypesToExcludeOutputQuantization": list(INT8_OPS)},
            )
    finally:
        root.removeFilter(drop_preprocess_hint)
