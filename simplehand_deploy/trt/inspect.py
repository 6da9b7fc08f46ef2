"""What precision did TensorRT really build? Read from an engine-inspector dump, never from names.

Input: the JSON of `IEngineInspector.get_engine_information(LayerInformationFormat.JSON)` (what the
builder stores as `<key>.layers.json`) or `trtexec --exportLayerInfo=F --profilingVerbosity=detailed`
from any machine. Two layouts:

* TensorRT 8.6-10: `{"Layers": [...], "Bindings": [names]}`, tensors carry `"Format/Datatype"`
  (e.g. "Channel major INT8 format where channel % 32 == 0", "Row major linear FP32");
* TensorRT 11: `{"Layers": [...], "I/O Tensors": [...]}`, tensors carry separate `Format` and `DataType`.

Rules: compute layers are those whose `ParameterType` is Convolution, Deconvolution,
MatrixMultiply or FullyConnected, or whose `LayerType` names a convolution, GEMM or matrix multiply.
`Myelin` regions (fused subgraphs) hide their inner precisions: they are counted apart, as hidden.
A compute layer computes in the datatype of its first input, cross-checked with its weights' type
(when the two disagree the wider one counts: an Int8-input layer with Float weights is not INT8).
Share = compute layers in the requested precision weighted by `Weights.Count` (1 without weights)
over all compute layers; or, given the ONNX graph the engine was built from, weighted by that graph's
multiply-accumulates: an engine layer weighs the MACs of the ONNX nodes its name contains (Myelin-compiled
`gemm` layers on TensorRT >= 9 may carry no weight count, which would make an honest INT8 engine look
mostly float). Names only *locate* a layer's work in the graph; its precision still comes from datatypes.

Pure logic (no TensorRT import): tested on CPU over fixtures of both layouts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError

REQUESTABLE = ("fp32", "fp16", "int8")
DEFAULT_MIN_SHARE = 0.5
# The builder expects at least the ONNX artifact's own INT8 share minus this (MAC share in the artifact
# sidecar vs weight-count share in the engine, plus layers TensorRT keeps in float or hides in Myelin).
INT8_SHARE_MARGIN = 0.2

_WORDS = {
    "int8": "int8", "i8": "int8", "fp16": "fp16", "half": "fp16", "float16": "fp16", "fp32": "fp32", "float": "fp32",
    "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16", "fp8": "fp8", "e4m3": "fp8", "int4": "int4",
    "fp4": "fp4", "int32": "int32", "int64": "int64", "uint8": "uint8", "bool": "bool",
}
_WIDTH = {"int4": 0, "fp4": 0, "int8": 1, "fp8": 1, "uint8": 1, "fp16": 2, "bf16": 2, "fp32": 3}
_COMPUTE_PARAMETER_TYPES = {"convolution", "deconvolution", "matrixmultiply", "fullyconnected"}
_COMPUTE_LAYER_WORDS = ("convolution", "gemm", "matrixmultiply", "matmul", "fullyconnected")
MIX_ORDER = ("int8", "fp8", "fp16", "bf16", "fp32")


def _lower_keys(obj: Any) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in obj.items()} if isinstance(obj, dict) else {}


def parse_datatype(text: Any) -> str | None:
    """'Channel major INT8 format where channel % 32 == 0' -> 'int8'; 'Half' -> 'fp16'; None if none named."""
    if not isinstance(text, str):
        return None
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in _WORDS:
            return _WORDS[word]
    return None


def tensor_datatype(tensor: Any) -> str | None:
    """A tensor entry's datatype: `DataType` (11), else `Format/Datatype` (8.6-10), else `Format`; any case."""
    t = _lower_keys(tensor)
    for key in ("datatype", "format/datatype", "format"):
        got = parse_datatype(t.get(key))
        if got is not None:
            return got
    return None


def layer_kind(layer: Any) -> str:
    """'hidden' (a Myelin region), 'compute' (conv / deconv / GEMM / matmul / FC) or 'other'."""
    lay = _lower_keys(layer)
    layer_type = str(lay.get("layertype") or "").lower().replace(" ", "")
    param_type = str(lay.get("parametertype") or "").lower().replace(" ", "")
    if "myelin" in layer_type or "myelin" in param_type:
        return "hidden"
    if param_type in _COMPUTE_PARAMETER_TYPES or any(w in layer_type for w in _COMPUTE_LAYER_WORDS):
        return "compute"
    return "other"


def _weights(layer: dict[str, Any]) -> tuple[str | None, int]:
    w = _lower_keys(layer.get("weights"))
    try:
        count = int(w.get("count") or 0)
    except (TypeError, ValueError):
        count = 0
    return parse_datatype(w.get("type")), max(count, 1)


def layer_precision(layer: Any) -> str:
    """The precision a compute layer computes in: first input's datatype, cross-checked with its weights'."""
    lay = _lower_keys(layer)
    inputs = lay.get("inputs")
    first = tensor_datatype(inputs[0]) if isinstance(inputs, list) and inputs else None
    wtype, _ = _weights(lay)
    if first is None or wtype is None:
        return first or wtype or "unknown"
    if first == wtype:
        return first
    return max((first, wtype), key=lambda p: _WIDTH.get(p, 4))


def layer_name(layer: Any, index: int) -> str:
    name = _lower_keys(layer).get("name")
    return str(name) if name else f"#{index}"


@dataclass
class PrecisionReport:
    """Per-precision counts and weighted shares of an engine's compute layers."""

    layout: str  # "8.6-10" | "11" | "unknown"
    counts: dict[str, int] = field(default_factory=dict)  # compute layers per precision
    weights: dict[str, int] = field(default_factory=dict)  # Weights.Count per precision (1 per weightless layer)
    layers: list[tuple[str, str, int]] = field(default_factory=list)  # (name, precision, weight) per compute layer
    hidden: list[str] = field(default_factory=list)  # Myelin regions (precision hidden)
    other: int = 0  # layers that compute nothing we weigh (reformat, pointwise, Q/DQ, ...)
    weighting: str = "weights"  # "weights" (Weights.Count) | "macs" (the ONNX graph's MACs)
    unmatched: list[str] = field(default_factory=list)  # compute layers matching no ONNX node (weight 0; macs)

    @property
    def total_weight(self) -> int:
        return sum(self.weights.values())

    def share(self, precision: str) -> float | None:
        """Weighted share of compute layers in `precision`; None when there is no compute layer."""
        total = self.total_weight
        return self.weights.get(precision, 0) / total if total else None

    def shares(self) -> dict[str, float]:
        total = self.total_weight
        return {p: w / total for p, w in self.weights.items()} if total else {}

    def not_in(self, precision: str) -> list[str]:
        return [name for name, p, _ in self.layers if p != precision]

    @property
    def mix(self) -> str | None:
        """'int8+fp16', 'int8+fp32', 'fp16+fp32', 'fp32', ...: the float kinds the compute layers ran in."""
        present = [p for p in MIX_ORDER if self.counts.get(p)]
        return "+".join(present) if present else None

    def summary(self) -> dict[str, Any]:
        out = {"layout": self.layout, "compute_layers": sum(self.counts.values()), "counts": dict(self.counts),
               "weighted_shares": {p: round(s, 4) for p, s in self.shares().items()},
               "hidden_myelin": len(self.hidden), "precision_mix": self.mix, "weighting": self.weighting}
        if self.weighting == "macs":
            out["unmatched_layers"] = len(self.unmatched)
        return out


# TensorRT joins the node names of a fused layer with " + ", names a Myelin region "{ForeignNode[first...last]}"
_NAME_SEPARATORS = re.compile(r"\.\.\.|\s\+\s|[\[\]{}]|,\s*|\s+")


def matched_nodes(layer: str, nodes: Collection[str]) -> list[str]:
    """The ONNX node names an engine layer's name contains: each part of the name (fused layers join node
    names with ' + ') equal to a node name, else the longest node name it extends by '_<suffix>' (the ONNX
    parser's extra layers of one node)."""
    found = []
    for part in _NAME_SEPARATORS.split(layer):
        if not part:
            continue
        if part in nodes:
            found.append(part)
            continue
        stems = [n for n in nodes if part.startswith(n + "_")]
        if stems:
            found.append(max(stems, key=len))
    return list(dict.fromkeys(found))


def mac_weights(layer_names: list[str], macs: Mapping[str, int]) -> list[int]:
    """Each engine compute layer's weight: the MACs of the ONNX nodes its name contains, a node shared by
    several layers split evenly between them (0 for a layer that matches none)."""
    matches = [matched_nodes(name, macs.keys()) for name in layer_names]
    holders: dict[str, int] = {}
    for nodes in matches:
        for node in nodes:
            holders[node] = holders.get(node, 0) + 1
    return [round(sum(macs[n] / holders[n] for n in nodes)) for nodes in matches]


def analyse(dump: Any, source: str = "inspector dump", macs: Mapping[str, int] | None = None) -> PrecisionReport:
    """Classify every layer of an inspector dump; UsageError when it has no `"Layers"` list. With `macs`
    (ONNX node name -> MACs, `precision.macs.layer_macs`) compute layers weigh their matched MACs."""
    if not isinstance(dump, dict) or not isinstance(dump.get("Layers"), list):
        raise UsageError(f"{source}: no \"Layers\" list; expected an engine-inspector dump (`trtexec "
                         "--exportLayerInfo=F --profilingVerbosity=detailed`, or the builder's <key>.layers.json)")
    layout = "11" if "I/O Tensors" in dump else "8.6-10" if "Bindings" in dump else "unknown"
    report = PrecisionReport(layout=layout, weighting="weights" if macs is None else "macs")
    compute: list[tuple[str, str, int]] = []
    for i, layer in enumerate(dump["Layers"]):
        kind = layer_kind(layer)
        if kind == "hidden":
            report.hidden.append(layer_name(layer, i))
        elif kind == "compute":
            _, weight = _weights(_lower_keys(layer))
            compute.append((layer_name(layer, i), layer_precision(layer), weight))
        else:
            report.other += 1
    if macs is not None:
        weights = mac_weights([name for name, _, _ in compute], macs)
        report.unmatched = [name for (name, _, _), w in zip(compute, weights, strict=True) if w == 0]
        compute = [(name, precision, w) for (name, precision, _), w in zip(compute, weights, strict=True)]
    for name, precision, weight in compute:
        report.layers.append((name, precision, weight))
        report.counts[precision] = report.counts.get(precision, 0) + 1
        report.weights[precision] = report.weights.get(precision, 0) + weight
    return report


@dataclass
class Verdict:
    ok: bool
    share: float | None  # None: unverifiable (no compute layer)
    message: str  # one line


def judge(report: PrecisionReport, precision: str, min_share: float = DEFAULT_MIN_SHARE) -> Verdict:
    """Pass when the weighted share of `precision` reaches `min_share`; no compute layer = unverifiable = fail."""
    if precision not in REQUESTABLE:
        raise UsageError(f"--precision {precision!r}: choose one of {', '.join(REQUESTABLE)}")
    share = report.share(precision)
    hidden = f"; {len(report.hidden)} Myelin region(s) hide their precision" if report.hidden else ""
    if report.weighting == "macs":
        hidden += f"; weighted by the ONNX graph's MACs{_unmatched(report)}"
    if share is None:
        return Verdict(False, None, f"unverifiable: the dump shows no convolution/GEMM/matmul layer with a datatype"
                                    f"{hidden} (was it built with --profilingVerbosity=detailed?)")
    if share >= min_share:
        return Verdict(True, share, f"{precision} weighted share {share:.1%} >= {min_share:.1%}{hidden}")
    off = report.not_in(precision)
    listed = ", ".join(off[:8]) + (f" (+{len(off) - 8} more)" if len(off) > 8 else "")
    return Verdict(False, share, f"{precision} weighted share {share:.1%} < {min_share:.1%}; not {precision}: "
                                 f"{listed}{hidden}")


def _unmatched(report: PrecisionReport) -> str:
    if not report.unmatched:
        return ""
    names = ", ".join(report.unmatched[:4]) + (f" (+{len(report.unmatched) - 4} more)" if len(report.unmatched) > 4
                                               else "")
    return f"; {len(report.unmatched)} compute layer(s) match no ONNX node (weight 0): {names}"


def format_report(report: PrecisionReport) -> list[str]:
    """Human lines: per-precision compute-layer counts and weighted shares, and the hidden Myelin regions."""
    by = "the ONNX graph's MACs" if report.weighting == "macs" else "Weights.Count"
    lines = [f"TensorRT {report.layout} layout: {sum(report.counts.values())} compute layers, "
             f"{len(report.hidden)} Myelin region(s) (precision hidden), {report.other} other layers; "
             f"weighted by {by}"]
    shares = report.shares()
    for p in sorted(report.counts, key=lambda p: (-report.weights[p], p)):
        lines.append(f"  {p:8s} {report.counts[p]:5d} layers   weighted share {shares.get(p, 0.0):7.1%}")
    if report.hidden:
        names = ", ".join(report.hidden[:4]) + (" ..." if len(report.hidden) > 4 else "")
        lines.append(f"  myelin   {len(report.hidden):5d} regions  (inner precision hidden: {names})")
    if report.unmatched:
        lines.append(f"  unmatched {len(report.unmatched):4d} compute layers match no ONNX node (weight 0): "
                     + ", ".join(report.unmatched[:8]) + (" ..." if len(report.unmatched) > 8 else ""))
    return lines


def load_dump(path: str | os.PathLike[str]) -> Any:
    """Parse an inspector dump file; UsageError (one line) when it is missing or not JSON."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p}: cannot read ({type(exc).__name__}); pass an engine-inspector JSON file") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{p}: not JSON ({str(exc).splitlines()[0][:80]}); pass the file written by `trtexec "
                         "--exportLayerInfo=F --profilingVerbosity=detailed` or the builder's <key>.layers.json") \
            from None


def check_engine(path: str | os.PathLike[str], precision: str, min_share: float | None = None,
                 onnx: str | os.PathLike[str] | None = None) -> tuple[PrecisionReport, Verdict]:
    """`simplehand-deploy check-engine`: UsageError (exit 2) for unreadable input, else report + verdict.

    With `onnx` (the graph the engine was built from) both sides are weighted by its MACs: the engine's
    layers by the nodes they contain, and the default INT8 `min_share` is the graph's own INT8 MAC share
    minus `INT8_SHARE_MARGIN` (the builder's expectation). Without it, `Weights.Count` and 0.5."""
    if min_share is not None and not 0.0 <= min_share <= 1.0:
        raise UsageError(f"--min-share {min_share}: must be between 0 and 1")
    if precision not in REQUESTABLE:
        raise UsageError(f"--precision {precision!r}: choose one of {', '.join(REQUESTABLE)}")
    macs = None
    if onnx is not None:
        macs = onnx_macs(onnx)
        if min_share is None and precision == "int8":
            min_share = expected_share("int8", onnx_int8_mac_share(onnx))
    report = analyse(load_dump(path), str(path), macs)
    return report, judge(report, precision, DEFAULT_MIN_SHARE if min_share is None else min_share)


def _load_onnx(onnx: str | os.PathLike[str]) -> Any:
    import onnx as onnx_lib

    try:
        return onnx_lib.load(str(onnx), load_external_data=False)
    except Exception as exc:
        raise UsageError(f"--onnx {onnx}: not a readable ONNX graph ({type(exc).__name__}); pass the graph the "
                         "engine was built from") from None


def onnx_macs(onnx: str | os.PathLike[str]) -> dict[str, int]:
    """MACs per weighted node (batch 1) of the graph an engine was built from; UsageError when unusable."""
    from ..precision.macs import layer_macs

    if not Path(onnx).is_file():
        raise UsageError(f"--onnx {onnx}: no such file")
    macs = layer_macs(_load_onnx(onnx))
    if not macs:
        raise UsageError(f"--onnx {onnx}: shape inference cannot size every Conv/MatMul/Gemm of this graph, "
                         "so its MACs are unknown; check without --onnx (weights by Weights.Count)")
    return macs


def onnx_int8_mac_share(onnx: str | os.PathLike[str]) -> float | None:
    """The graph's own INT8 share of weighted-layer MACs (`precision.macs.int8_mac_share`)."""
    from ..precision.macs import int8_mac_share

    return int8_mac_share(_load_onnx(onnx))


def expected_share(precision: str, artifact_share: float | None, weight_share: float | None = None) -> float:
    """Minimum weighted share a fresh build must show: for INT8 the artifact's own INT8 share minus a margin.

    `artifact_share` is the graph's INT8 share of weighted-layer MACs (the unit of the engine check given the
    ONNX). `weight_share`, for an engine weighed by `Weights.Count`: the graph's INT8 share by weight count
    (`onnx_int8_weight_share`); when lower, that one counts, so the two sides are compared in the same unit
    (trained tiny, dense placement: MAC share 0.62, weight share 0.47).
    """
    if precision != "int8":
        return DEFAULT_MIN_SHARE
    share = artifact_share
    if not isinstance(share, int | float) or isinstance(share, bool) or not 0 < float(share) <= 1:
        return DEFAULT_MIN_SHARE
    own = float(share) if weight_share is None else min(float(share), weight_share)
    return max(own - INT8_SHARE_MARGIN, 0.0)


def onnx_int8_weight_share(onnx_path: str | os.PathLike[str]) -> float | None:
    """Share of the weights of Conv/ConvTranspose/MatMul/Gemm nodes in a Q/DQ graph whose activation input
    comes from a DequantizeLinear (the layers TensorRT can run in INT8), weighted by weight element count
    (1 for a layer whose weight is not an initializer). None without such layers."""
    import numpy as np
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}

    def weight_count(tensor: str) -> int:
        for _ in range(4):  # initializer, or behind QuantizeLinear / DequantizeLinear / Cast
            if tensor in inits:
                return max(int(np.prod(inits[tensor].dims)), 1)
            node = producer.get(tensor)
            if node is None or node.op_type not in ("QuantizeLinear", "DequantizeLinear", "Cast") or not node.input:
                return 1
            tensor = node.input[0]
        return 1

    total = int8 = 0
    for node in graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm") or len(node.input) < 2:
            continue
        count = weight_count(node.input[1])
        src = producer.get(node.input[0])
        total += count
        int8 += count if src is not None and src.op_type == "DequantizeLinear" else 0
    return int8 / total if total else None
