"""Graph analysis: which nodes of an FP32 SimpleHand graph are sensitive, found by structure.

Node names are unreliable (onnxsim renames them), so every part is found from the graph itself: the
uv head and the grid-coordinate path (everything that feeds GridSample's grid but not its feature
map: an error there moves the sampling location), the final vertex head (its output is the
millimetres we report), the token regressor after grid sampling, and the depthwise convolutions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import UsageError

# The weighted layers: what INT8 quantises and what the MAC share counts.
INT8_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")

# Ops that only move data. The head's island also takes those in front of its first layer, so the FP16
# -> FP32 cast sits on the residual-stream tensor. Measured on the trained tiny in ORT: with the cast
# between the Transpose/Reshape and the Gemm, FP16 mean drift was 0.046 mm, with it in front 0.035 mm
# (the values are the same either way, so ORT must treat the two graphs differently; not pinned down).
DATA_MOVEMENT = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten")


def name_nodes(graph: Any) -> None:
    """Give every node a unique name (in place): quantiser exclusions and islands are by name."""
    seen: set[str] = set()
    for i, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def producers(graph: Any) -> dict[str, Any]:
    return {o: n for n in graph.node for o in n.output}


def consumers(graph: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def ancestors(graph: Any, tensor: str) -> set[str]:
    """Names of the nodes `tensor` depends on."""
    producer = producers(graph)
    seen: set[str] = set()
    stack = [tensor]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        stack.extend(node.input)
    return seen


def descendants(graph: Any, tensors: Sequence[str]) -> set[str]:
    """Names of the nodes that depend on any of `tensors`."""
    readers = consumers(graph)
    seen: set[str] = set()
    stack = list(tensors)
    while stack:
        for node in readers.get(stack.pop(), []):
            if node.name not in seen:
                seen.add(node.name)
                stack.extend(node.output)
    return seen


def is_depthwise(node: Any) -> bool:
    return node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute)


def grid_outputs(graph: Any) -> list[str]:
    return [o for n in graph.node if n.op_type == "GridSample" for o in n.output]


def attention_scores(graph: Any) -> set[str]:
    """Names of the nodes that compute attention scores: each Softmax, the Q @ K^T MatMul feeding it and
    the Mul/Div by a scalar constant (the 1/sqrt(d) scale) on either of that MatMul's inputs, with the
    data-movement ops in between.

    These stay FP32 in every FP16 graph. Numerically, FP16 logits are where attention overflows. And
    for other tools: ONNX Runtime's MobileCLIP attention fusion (1.32, part of the default
    optimisation level) walks packed-QKV MatMul -> Reshape -> Split -> Transpose -> Squeeze -> Mul and
    reads the Mul's scale as a float32 scalar without checking its type; an FP16 scale throws "Tensor
    type mismatch ... MLFloat16" at session creation, so a graph with an FP16 q-scale cannot be
    loaded with default options (nor by `polygraphy run --onnxrt`).
    """
    producer = producers(graph)
    scalar = {t.name for t in graph.initializer if int(np.prod(t.dims)) == 1}
    scalar |= {n.output[0] for n in graph.node if n.op_type == "Constant"
               and any(a.name == "value" and int(np.prod(a.t.dims)) == 1 for a in n.attribute)}
    out: set[str] = set()

    def walk_back(tensor: str, passthrough: tuple[str, ...]) -> tuple[Any, list[str]]:
        path: list[str] = []
        node = producer.get(tensor)
        while node is not None and node.op_type in passthrough:
            path.append(node.name)
            node = producer.get(node.input[0])
        return node, path

    for sm in graph.node:
        if sm.op_type != "Softmax":
            continue
        out.add(sm.name)
        mm, path = walk_back(sm.input[0], (*DATA_MOVEMENT, "Cast"))
        if mm is None or mm.op_type != "MatMul":
            continue
        out |= {mm.name, *path}
        for tensor in mm.input:
            scale, path = walk_back(tensor, DATA_MOVEMENT)
            if scale is not None and scale.op_type in ("Mul", "Div") and any(i in scalar for i in scale.input):
                out |= {scale.name, *path}
    return out


def sensitive_nodes(graph: Any, head_layers: int = 2) -> dict[str, set[str]]:
    """Node names by part: `grid_path` (uv head + grid coordinates), `vertex_head`, `token_regressor`
    (everything downstream of GridSample), `depthwise` (grouped convolutions) and `attention_scores`
    (see `attention_scores`). Names nodes first.

    The vertex head is the last `head_layers` weighted layers on the path to `vertices`: the final
    token upsample (336 -> 778 tokens, a learned mix of hundreds of terms per vertex) and the 64 -> 3
    projection. Measured on a trained tiny model, keeping the upsample float too lowers FP16 mean
    vertex drift from 0.050 to 0.035 mm for ~17 MFLOP of FP32 work.
    """
    name_nodes(graph)
    grid: set[str] = set()
    for node in graph.node:
        if node.op_type == "GridSample":
            grid |= ancestors(graph, node.input[1]) - ancestors(graph, node.input[0])
    producer = producers(graph)
    head: set[str] = set()
    node = producer.get("vertices")
    layers = 0
    while node is not None and (layers < head_layers or node.op_type in DATA_MOVEMENT):
        head.add(node.name)
        layers += node.op_type in ("MatMul", "Gemm")
        # follow the activation (the input some node produces), not a weight or bias initializer
        node = next((producer[i] for i in node.input if i in producer), None)
    return {"grid_path": grid, "vertex_head": head, "token_regressor": descendants(graph, grid_outputs(graph)),
            "depthwise": {n.name for n in graph.node if is_depthwise(n)}, "attention_scores": attention_scores(graph)}


def activation_matmuls(graph: Any, within: set[str] | None = None) -> set[str]:
    """Names of the MatMuls that multiply two activations (no initializer input): attention scores and attention
    x values; `within` limits them to those node names."""
    inits = {t.name for t in graph.initializer}
    return {n.name for n in graph.node if n.op_type == "MatMul" and not any(i in inits for i in n.input)
            and (within is None or n.name in within)}


def resolve_exclude(graph: Any, exclude: Sequence[str]) -> set[str]:
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
