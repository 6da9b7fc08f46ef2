"""MAC accounting: how much of a graph's weighted-layer work runs in INT8, read from the graph itself.

INT8 MAC share: the share of the multiply-accumulates of Conv, ConvTranspose, MatMul and
Gemm nodes (batch 1) whose activation and weight inputs both come from DequantizeLinear, directly or
through a Cast. It is read from the quantised graph alone, never from a quantiser's own bookkeeping,
so it means the same for our graphs and ModelOpt's.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .graph import INT8_OPS


def _model(graph: Any) -> Any:
    import onnx

    if isinstance(graph, (str, os.PathLike)):
        return onnx.load(str(graph))
    return graph


def layer_macs(graph: Any) -> dict[str, int] | None:
    """Multiply-accumulates per weighted node at batch 1 (node name -> MACs); None when shape inference
    cannot size every weighted layer."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(_model(graph))
    for i in m.graph.input:
        dims = i.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = 1
    m = onnx.shape_inference.infer_shapes(m, data_prop=True)  # data_prop: Reshape targets built from Shape
    g = m.graph
    shape = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
             for vi in [*g.value_info, *g.input, *g.output]}
    shape.update({t.name: list(t.dims) for t in g.initializer})
    out: dict[str, int] = {}
    for k, n in enumerate(g.node):
        if n.op_type not in INT8_OPS:
            continue
        x, w, y = shape.get(n.input[0]), shape.get(n.input[1]), shape.get(n.output[0])
        if not x or not w or not y or 0 in x + w + y:
            return None
        if n.op_type == "Conv":
            macs = int(np.prod(y)) * int(np.prod(w[1:]))
        elif n.op_type == "ConvTranspose":
            macs = int(np.prod(x)) * int(np.prod(w[1:]))
        elif n.op_type == "Gemm" and any(a.name == "transA" and a.i for a in n.attribute):
            macs = int(np.prod(y)) * x[0]
        else:  # MatMul / Gemm: the reduction is x's last dim (transB or not)
            macs = int(np.prod(y)) * x[-1]
        out[n.name or f"{n.op_type}_{k}"] = macs
    return out


def int8_inputs(graph: Any) -> set[str]:
    """Names of the weighted nodes whose first two inputs (activation, weight) both come from a
    DequantizeLinear, directly or through Cast nodes."""
    g = _model(graph).graph
    producer = {o: n for n in g.node for o in n.output}

    def from_dq(tensor: str) -> bool:
        node = producer.get(tensor)
        while node is not None and node.op_type == "Cast":
            node = producer.get(node.input[0])
        return node is not None and node.op_type == "DequantizeLinear"

    return {n.name or f"{n.op_type}_{k}" for k, n in enumerate(g.node)
            if n.op_type in INT8_OPS and len(n.input) >= 2 and from_dq(n.input[0]) and from_dq(n.input[1])}


def int8_mac_share(graph: Any) -> float | None:
    """Fraction of the weighted-layer MACs (batch 1) that run in INT8 in a quantised graph (ModelProto or
    path): nodes whose activation and weight both come from DequantizeLinear (directly or via Cast).

    The honest cost figure of a placement: a layer count says little when a depthwise conv and a dense
    conv differ by 100x in work. None when shape inference cannot size every weighted layer.
    """
    model = _model(graph)
    macs = layer_macs(model)
    if not macs:
        return None
    quantised = int8_inputs(model)
    total = sum(macs.values())
    return sum(v for k, v in macs.items() if k in quantised) / total if total else None


def qdq_count(graph: Any) -> int:
    """Number of QuantizeLinear + DequantizeLinear nodes in a graph (ModelProto or path)."""
    return sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in _model(graph).graph.node)
