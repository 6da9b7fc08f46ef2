"""FP16 and INT8 (explicit Q/DQ) versions of an FP32 ONNX graph, for TensorRT 8.6 .. 11.

TensorRT 11 dropped precision flags and calibrators, so precision lives in the graph. Both
artifacts are built and *executed* on CPU (ONNX Runtime), which is how drift is measured here.

Sensitive parts stay in FP32 (FP16) or unquantised (INT8), found by graph structure rather than
node names (onnxsim renames nodes): the uv head and the grid-coordinate path (everything that
feeds GridSample's grid but not its feature map: an error there moves the sampling location) and
the final vertex projection (its output is the millimetres we report). FP16 also keeps
LayerNormalization and Softmax in FP32. INT8's default `dense` placement also keeps the depthwise
convolutions (memory-bound, and per-tensor activation scales suit them worst) and the token
regressor after grid sampling (21/84/336 tokens: ~1% of fastvit_ma36's MACs) float.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .export import ARTIFACT_FORMAT, load_onnx, read_sidecar, sidecar_path
from .fileio import atomic_path, sha256_file, write_json_atomic

FP16_BLOCK_OPS = ("LayerNormalization", "Softmax", "GridSample")
INT8_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
METHODS = ("minmax", "entropy", "percentile")
# Where Q/DQ goes. `dense`: the backbone's dense convolutions and matmuls and the deconvolution (on
# fastvit_ma36 95% of the weighted-layer MACs), with depthwise convolutions and the token
# regressor after grid sampling kept float. `all`: every weighted layer outside the always-float parts.
PLACEMENTS = ("dense", "all")
DEFAULT_PLACEMENT = "dense"


# -- graph structure -------------------------------------------------------------------------------

def _name_nodes(graph: Any) -> None:
    seen: set[str] = set()
    for i, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def _ancestors(graph: Any, tensor: str) -> set[str]:
    producer = {o: n for n in graph.node for o in n.output}
    seen: set[str] = set()
    stack = [tensor]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        stack.extend(node.input)
    return seen


def sensitive_nodes(graph: Any, head_layers: int = 2) -> dict[str, set[str]]:
    """Node names by part: `grid_path` (uv head + grid coordinates), `vertex_head`, `token_regressor`
    (everything downstream of GridSample) and `depthwise` (grouped convolutions).

    The vertex head is the last `head_layers` weighted layers on the path to `vertices`: the final
    token upsample (336 -> 778 tokens, a learned mix of hundreds of terms per vertex) and the 64 -> 3
    projection. Measured on a trained tiny model, keeping the upsample float too lowers FP16 mean
    vertex drift from 0.050 to 0.035 mm for ~17 MFLOP of FP32 work.
    """
    _name_nodes(graph)
    grid: set[str] = set()
    for node in graph.node:
        if node.op_type == "GridSample":
            grid |= _ancestors(graph, node.input[1]) - _ancestors(graph, node.input[0])
    producer = {o: n for n in graph.node for o in n.output}
    head: set[str] = set()
    node = producer.get("vertices")
    layers = 0
    while node is not None and (layers < head_layers or node.op_type in _DATA_MOVEMENT):
        head.add(node.name)
        layers += node.op_type in ("MatMul", "Gemm")
        # follow the activation (the input some node produces), not a weight or bias initializer
        node = next((producer[i] for i in node.input if i in producer), None)
    return {"grid_path": grid, "vertex_head": head, "token_regressor": _descendants(graph, _grid_outputs(graph)),
            "depthwise": {n.name for n in graph.node if _is_depthwise(n)}}


def _grid_outputs(graph: Any) -> list[str]:
    return [o for n in graph.node if n.op_type == "GridSample" for o in n.output]


def _descendants(graph: Any, tensors: Sequence[str]) -> set[str]:
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    seen: set[str] = set()
    stack = list(tensors)
    while stack:
        for node in consumers.get(stack.pop(), []):
            if node.name not in seen:
                seen.add(node.name)
                stack.extend(node.output)
    return seen


def _is_depthwise(node: Any) -> bool:
    return node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute)


# Ops that only move data. The head's island also takes those in front of its first layer, so the FP16
# -> FP32 cast sits on the residual-stream tensor. Measured on the trained tiny in ORT: with the cast
# between the Transpose/Reshape and the Gemm, FP16 mean drift was 0.046 mm, with it in front 0.035 mm
# (the values are the same either way, so ORT must treat the two graphs differently; not pinned down).
_DATA_MOVEMENT = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten")


# -- FP16 -------------------------------------------------------------------------------------------

def convert_fp16(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    blocklist: Sequence[str] | None = None,
    progress: bool = False,
) -> Path:
    """FP16 graph with FP32 inputs/outputs and an FP32 island (op types or node names in `blocklist`).

    Written directly rather than with onnxconverter-common, whose output for this model does not
    load (Cast nodes left at FLOAT inside the FP16 region; graph outputs read internally wired to the
    FP32 copy). Every float tensor gets one precision, decided by its producer; a Cast is inserted
    wherever a consumer runs at the other precision.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = load_onnx(src)
    model = onnx.shape_inference.infer_shapes(model)
    g = model.graph
    marks = sensitive_nodes(g)
    block = set(blocklist if blocklist is not None else FP16_BLOCK_OPS)
    fp32_nodes = marks["grid_path"] | marks["vertex_head"]
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.value_info, *g.input, *g.output]}
    inits = {t.name: t for t in g.initializer}
    for name, t in inits.items():
        types[name] = t.data_type
    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16

    def is_half(node: Any) -> bool:
        if node.op_type in block or node.name in block or node.name in fp32_nodes:
            return False
        return any(types.get(o) == FLOAT for o in node.output)

    half_nodes = {n.name for n in g.node if is_half(n)}
    precision: dict[str, int] = {i.name: FLOAT for i in g.input}  # tensor -> its stored float type
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    # Initializers: FP16 when every float consumer runs in FP16.
    new_inits = []
    for name, t in inits.items():
        if t.data_type == FLOAT and consumers.get(name) and all(c.name in half_nodes for c in consumers[name]):
            arr = numpy_helper.to_array(t).astype(np.float16)
            new_inits.append(numpy_helper.from_array(arr, name))
            precision[name] = HALF
        else:
            new_inits.append(t)
            if t.data_type == FLOAT:
                precision[name] = FLOAT
    del g.initializer[:]
    g.initializer.extend(new_inits)
    outputs = {o.name for o in g.output}
    new_nodes: list[Any] = []
    casts: dict[tuple[str, int], str] = {}

    def cast_to(tensor: str, to: int) -> str:
        key = (tensor, to)
        if key not in casts:
            name = f"{tensor}__to_{'fp16' if to == HALF else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [tensor], [name], name=f"Cast_{name}", to=to))
            casts[key] = name
        return casts[key]

    for n in g.node:
        want = HALF if n.name in half_nodes else FLOAT
        for k, i in enumerate(n.input):
            have = precision.get(i)
            if have in (FLOAT, HALF) and have != want and n.op_type != "Cast":
                n.input[k] = cast_to(i, want)
        if n.op_type == "Cast" and n.name in half_nodes:
            for a in n.attribute:
                if a.name == "to" and a.i == FLOAT:
                    a.i = HALF
        if n.op_type == "Constant" and n.name in half_nodes:
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == FLOAT:
                    a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
        new_nodes.append(n)
        for k, o in enumerate(n.output):
            if types.get(o) == FLOAT:
                precision[o] = want
                if want == HALF and o in outputs:  # graph outputs stay FP32: rename inside, cast at the edge
                    inner = f"{o}__fp16"
                    n.output[k] = inner
                    for c in consumers.get(o, []):
                        for j, ci in enumerate(c.input):
                            if ci == o:
                                c.input[j] = inner
                    precision[inner] = HALF
                    new_nodes.append(helper.make_node("Cast", [inner], [o], name=f"Cast_out_{o}", to=FLOAT))
    del g.node[:]
    g.node.extend(new_nodes)
    del g.value_info[:]
    onnx.checker.check_model(model)
    out = Path(out)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
        from .ort import make_session

        make_session(tmp)  # load check: a graph ORT cannot load is never written
    meta = {**read_sidecar(src), "artifact_format": ARTIFACT_FORMAT, "precision": "fp16", "source_onnx": str(src),
            "source_sha256": sha256_file(src),
            "fp16": {"fp32_op_types": sorted(block & set(FP16_BLOCK_OPS) | {b for b in block if "/" not in b}),
                     "fp32_nodes": sorted(fp32_nodes), "io": "float32"},
            "onnx_sha256": sha256_file(out), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json_atomic(sidecar_path(out), meta)
    return out


# -- INT8 -------------------------------------------------------------------------------------------

class _Reader:
    """CalibrationDataReader over calibration crops, with a progress bar."""

    def __init__(self, images: np.ndarray, batch: int, progress: bool) -> None:
        self.batches = [images[i : i + batch] for i in range(0, len(images), batch)]
        self.progress = progress
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def _gen(self) -> Iterator[dict[str, np.ndarray]]:
        from .progress import track

        for b in track(self.batches, "calibrating", self.progress):
            yield {"image": np.ascontiguousarray(b)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._gen()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


def quantize_int8(
    src: str | os.PathLike[str],
    calib: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    method: str = "minmax",
    exclude: Sequence[str] | None = None,
    quantizer: str = "ort",
    max_drift_mm: float | None = None,
    placement: str = DEFAULT_PLACEMENT,
    batch_size: int = 8,
    progress: bool = True,
) -> Path:
    """Explicit Q/DQ INT8 graph (TensorRT's only INT8 route from 11 on), calibrated on a calibration set.

    Symmetric int8 activations (per tensor) and weights (per channel: Conv axis 0, ConvTranspose
    axis 1), zero points 0, FP32 scales, opset kept (<= 17). Q/DQ sits only on the inputs of the
    quantised weighted layers, TensorRT's recommended placement: no Q/DQ on their outputs (ORT's
    default would put one on every output, in front of GELU, softmax and the residual adds), and
    a float layer next to a quantised one reads the float tensor, not the DQ output they would share.
    Measured on a trained tiny (held-out crops, minmax), placement `all`: ORT's default Q/DQ 2.54 mm mean
    vertex drift, inputs only 1.72 mm, plus float readers 1.56 mm; placement `dense`: 0.68 mm.
    """
    if method not in METHODS:
        raise UsageError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if placement not in PLACEMENTS:
        raise UsageError(f"--placement {placement!r}: choose one of {', '.join(PLACEMENTS)}")
    if quantizer == "modelopt":
        from ._deps import require

        require("modelopt.onnx.quantization")
        raise UsageError("--quantizer modelopt: ModelOpt emits opset >= 19 graphs for TensorRT >= 10 only; "
                         "run `python -m modelopt.onnx.quantization` directly for that route")
    if quantizer != "ort":
        raise UsageError(f"--quantizer {quantizer!r}: choose ort or modelopt")
    from .calibration import load_calibration_set

    cal = load_calibration_set(calib)
    graph = load_onnx(src)
    marks = sensitive_nodes(graph.graph)
    keep_float = marks["grid_path"] | marks["vertex_head"] | _resolve_exclude(graph.graph, exclude or ())
    if placement == "dense":
        keep_float |= marks["token_regressor"] | marks["depthwise"]
    weighted = {n.name for n in graph.graph.node if n.op_type in INT8_OPS}
    excluded = sorted(keep_float & weighted)
    out = Path(out)
    repair: dict[str, Any] = {}
    with atomic_path(out) as tmp:
        named = tmp.with_suffix(".named.onnx")
        import onnx

        onnx.save(graph, str(named))  # node names made unique by sensitive_nodes()
        try:
            _ort_quantize(named, tmp, cal.images, method, excluded, batch_size, progress)
            if max_drift_mm is not None:
                repair = _repair(named, tmp, cal.images, method, excluded, max_drift_mm, batch_size, progress)
                excluded = repair["excluded_nodes"]
        finally:
            named.unlink(missing_ok=True)
        from .ort import make_session

        make_session(tmp)
    meta = {**read_sidecar(src), "artifact_format": ARTIFACT_FORMAT, "precision": "int8", "source_onnx": str(src),
            "source_sha256": sha256_file(src),
            "int8": {"quantizer": "onnxruntime.quantize_static", "format": "QDQ", "method": method,
                     "placement": placement, "int8_mac_share": int8_mac_share(graph, excluded),
                     "activations": "int8 symmetric per-tensor", "weights": "int8 symmetric per-channel",
                     "op_types": list(INT8_OPS), "excluded_nodes": excluded, "sensitivity_repair": repair or None,
                     "calibration": {"path": str(cal.path), "num": len(cal), "fingerprint": cal.fingerprint}},
            "onnx_sha256": sha256_file(out), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json_atomic(sidecar_path(out), meta)
    return out


def _resolve_exclude(graph: Any, exclude: Sequence[str]) -> set[str]:
    """Node names for --exclude entries: a node name, or an op type meaning all nodes of that type.

    A name that matches nothing is an error rather than a silent no-op (onnxsim renames nodes, so a
    name copied from another export may no longer exist).
    """
    names = {n.name for n in graph.node}
    by_type: dict[str, set[str]] = {}
    for n in graph.node:
        by_type.setdefault(n.op_type, set()).add(n.name)
    out: set[str] = set()
    for e in exclude:
        if e in names:
            out.add(e)
        elif e in by_type:
            out |= by_type[e]
        else:
            quantisable = sorted(n.name for n in graph.node if n.op_type in INT8_OPS)[:3]
            raise UsageError(f"--exclude {e!r}: no node or op type of that name in the graph "
                             f"(node names look like {', '.join(quantisable)}; op types like MatMul work too)")
    return out


def _drift_mm(ref: dict[str, np.ndarray], path: Path, images: np.ndarray) -> float:
    from .ort import make_session, run

    out = run(make_session(path), images)
    return float(np.linalg.norm(out["vertices"] - ref["vertices"], axis=-1).mean() * 1000)


def _median_ms(path: Path, image: np.ndarray, runs: int = 5) -> float:
    from .ort import make_session

    sess = make_session(path)
    sess.run(None, {"image": image})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"image": image})
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def _repair(src: Path, out: Path, images: np.ndarray, method: str, excluded: list[str], budget_mm: float,
            batch: int, progress: bool, groups: int = 8) -> dict[str, Any]:
    """Sensitivity repair: keep the most sensitive layer groups in float until mean drift <= budget_mm.

    Groups are contiguous runs of quantisable nodes in graph order (names are unreliable after onnxsim).
    Each group's sensitivity = drift when only that group is quantised; groups are then excluded,
    most sensitive first, re-quantising the rest each time. Drift is measured against the FP32 graph
    in ONNX Runtime (fake-quant for Q/DQ) on up to 16 calibration crops.
    """
    import onnx

    from .ort import make_session, run

    sample = images[:16]
    ref = run(make_session(src), sample)
    first = _drift_mm(ref, out, sample)
    report: dict[str, Any] = {"budget_mm": budget_mm, "drift_all_quantised_mm": first, "excluded_groups": [],
                              "cpu_ms_all_int8": _median_ms(out, sample[:1])}
    weighted = [n.name for n in onnx.load(str(src)).graph.node if n.op_type in INT8_OPS]
    report["layers_weighted"] = len(weighted)  # how much of the network is still INT8 is the honest cost figure
    if first <= budget_mm:
        report.update(final_drift_mm=first, excluded_nodes=excluded, met=True,
                      layers_int8=len([n for n in weighted if n not in set(excluded)]))
        return report
    nodes = [n for n in weighted if n not in excluded]
    chunks = [c.tolist() for c in np.array_split(np.array(nodes, dtype=object), min(groups, len(nodes))) if len(c)]
    probe = out.with_suffix(".probe.onnx")
    try:
        sens = []
        for k in range(len(chunks)):
            others = [n for j, c in enumerate(chunks) if j != k for n in c]
            _ort_quantize(src, probe, images, method, excluded + others, batch, False)
            sens.append(_drift_mm(ref, probe, sample))
        order = sorted(range(len(chunks)), key=lambda k: -sens[k])
        report["group_sensitivity_mm"] = [{"group": k, "first": chunks[k][0], "nodes": len(chunks[k]),
                                           "drift_mm": sens[k]} for k in range(len(chunks))]
        keep_float = list(excluded)
        drift = first
        for k in order:
            keep_float += chunks[k]
            report["excluded_groups"].append(k)
            _ort_quantize(src, out, images, method, keep_float, batch, progress)
            drift = _drift_mm(ref, out, sample)
            if drift <= budget_mm:
                break
        full_ms = _median_ms(src, sample[:1])
        report.update(final_drift_mm=drift, excluded_nodes=keep_float, met=drift <= budget_mm,
                      layers_int8=len([n for n in weighted if n not in set(keep_float)]),
                      cpu_ms_fp32=full_ms, cpu_ms_repaired=_median_ms(out, sample[:1]),
                      note="CPU latencies are fake-quant simulation figures, not TensorRT speed")
    finally:
        probe.unlink(missing_ok=True)
    return report


def _ort_quantize(src: Path, out: Path, images: np.ndarray, method: str, excluded: list[str], batch: int,
                  progress: bool) -> None:
    from onnxruntime.quantization import CalibrationMethod, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    guard = _entropy_bins() if method == "entropy" else _percentile_guard() if method == "percentile" else \
        contextlib.nullcontext()
    with guard:
        _quantize_static(quantize_static, src, out, images, methods[method], excluded, batch, progress)
    _float_layers_read_float(out, set(excluded))


def _float_layers_read_float(path: Path, excluded: set[str]) -> None:
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


def int8_mac_share(model: Any, excluded: Sequence[str]) -> float | None:
    """Fraction of the weighted-layer multiply-accumulates that run in INT8, per sample (batch 1).

    The honest cost figure of a placement: a layer count says little when a depthwise conv and a
    dense conv differ by 100x in work. None when shape inference cannot size every weighted layer.
    """
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for i in m.graph.input:
        dims = i.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = 1
    m = onnx.shape_inference.infer_shapes(m, data_prop=True)  # data_prop: Reshape targets built from Shape
    g = m.graph
    shape = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
             for vi in [*g.value_info, *g.input, *g.output]}
    shape.update({t.name: list(t.dims) for t in g.initializer})
    total = int8 = 0
    skip = set(excluded)
    for n in g.node:
        if n.op_type not in INT8_OPS:
            continue
        x, w, y = shape.get(n.input[0]), shape.get(n.input[1]), shape.get(n.output[0])
        if not x or not w or not y or 0 in x + w + y:
            return None
        if n.op_type == "Conv":
            macs = int(np.prod(y)) * int(np.prod(w[1:]))
        elif n.op_type == "ConvTranspose":
            macs = int(np.prod(x)) * int(np.prod(w[1:]))
        else:  # MatMul / Gemm (transB handled: the reduction is x's last dim either way)
            macs = int(np.prod(y)) * x[-1]
        total += macs
        int8 += 0 if n.name in skip else macs
    return int8 / total if total else None


@contextlib.contextmanager
def _percentile_guard() -> Iterator[None]:
    """Let ORT's percentile calibrator take a tensor whose |values| are (nearly) all equal.

    It histograms |x| over [min |x|, max |x|], which numpy refuses when that span is below float32
    resolution for 2048 bins: a softmax over 49 tokens of an untrained model is 1/49 everywhere.
    Such a tensor gets one extra 0 sample, so the span is [0, max]; its percentile threshold is then
    max |x|, as it should be.
    """
    from onnxruntime.quantization.calibrate import HistogramCollector

    original = HistogramCollector.collect_absolute_value

    def collect_absolute_value(self: Any, name_to_arr: dict[str, Any]) -> Any:
        fixed = dict(name_to_arr)
        for name, arr in name_to_arr.items():
            if name in self.histogram_dict:  # later batches merge into the first histogram's range
                continue
            flat = np.concatenate([np.ravel(a) for a in arr]) if isinstance(arr, list) else np.ravel(arr)
            if flat.size:
                mag = np.abs(flat)
                edges = np.linspace(mag.min(), mag.max(), self.num_bins + 1, dtype=flat.dtype)
                if np.any(edges[:-1] >= edges[1:]):
                    fixed[name] = np.append(flat, flat.dtype.type(0))
        return original(self, fixed)

    setattr(HistogramCollector, "collect_absolute_value", collect_absolute_value)  # noqa: B010
    try:
        yield
    finally:
        setattr(HistogramCollector, "collect_absolute_value", original)  # noqa: B010


@contextlib.contextmanager
def _entropy_bins(num_bins: int = 512, num_quantized_bins: int = 128) -> Iterator[None]:
    """Give ORT's entropy calibrator a real histogram for the KL threshold search.

    quantize_static does not pass histogram sizes through (only a few Calib* keys), so its entropy
    calibrator runs with 128 bins and 128 quantised bins: a single candidate threshold, the full
    range, which is exactly MinMax (measured: identical scales). TensorRT's entropy calibrator uses
    2048 bins searched down to 128; ORT's search is a Python loop (about 1 s per tensor at 2048 bins
    on this 2-core host, too slow for fastvit_ma36's ~1000 tensors), so 512 bins: 192 candidate
    thresholds per tensor. Trained tiny, default placement: 2.27 mm (minmax) -> 2.13 mm (2048 bins).
    """
    import importlib

    # the package re-exports a *function* named `quantize`, so `import ... as` would bind that
    ort_quantize = importlib.import_module("onnxruntime.quantization.quantize")
    original = getattr(ort_quantize, "create_calibrator")  # noqa: B009 - a module typed as ModuleType

    def create_calibrator(*args: Any, **kwargs: Any) -> Any:
        extra = dict(kwargs.get("extra_options") or {})
        extra.setdefault("num_bins", num_bins)
        extra.setdefault("num_quantized_bins", num_quantized_bins)
        kwargs["extra_options"] = extra
        return original(*args, **kwargs)

    setattr(ort_quantize, "create_calibrator", create_calibrator)  # noqa: B010
    try:
        yield
    finally:
        setattr(ort_quantize, "create_calibrator", original)  # noqa: B010


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
                               "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1, "MatMul": 1,
                                                                    "Gemm": 0},
                               "ForceQuantizeNoInputCheck": True, "CalibMovingAverage": False,
                               "OpTypesToExcludeOutputQuantization": list(INT8_OPS)},
            )
    finally:
        root.removeFilter(drop_preprocess_hint)
