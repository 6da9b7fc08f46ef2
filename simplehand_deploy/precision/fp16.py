"""FP16 graphs with FP32 inputs/outputs and an FP32 island, written directly (no onnxconverter-common).

The island: LayerNormalization, Softmax and GridSample by op type (`--block`), plus, always, the grid
path, the vertex head and the attention scores found by `graph.sensitive_nodes`. The same rewrite
(`to_fp16`) makes the FP16 remainder of the INT8 artifact for TensorRT >= 10, so the island is built
one way everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import Fp16Recipe, OnnxArtifact
from ..export import ARTIFACT_FORMAT, load_onnx
from ..fileio import atomic_path, sha256_file
from .graph import sensitive_nodes

FP16_BLOCK_OPS = ("LayerNormalization", "Softmax", "GridSample")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# Float inputs that are parameters, not data: ONNX types them float32 whatever the data's precision (Resize's
# roi and scales: HRNet's fuse layers upsample with Resize). They are never converted or cast.
FLOAT32_INPUTS = {"Resize": (1, 2)}


def _is_float32_param(node: Any, position: int) -> bool:
    return position in FLOAT32_INPUTS.get(node.op_type, ())


def island(graph: Any) -> set[str]:
    """Node names that stay FP32 whatever --block says: grid path, vertex head, attention scores."""
    marks = sensitive_nodes(graph)
    return marks["grid_path"] | marks["vertex_head"] | marks["attention_scores"]


def fp32_island(graph: Any, block_ops: Iterable[str] = FP16_BLOCK_OPS) -> set[str]:
    """THE FP32 island: every node the FP16 graph keeps FP32 (`island` plus the op types or node names in
    `block_ops`). `to_fp16` keeps exactly these FP32 here, and the TensorRT builder pins exactly these on
    weak-typed TensorRT (< 10), so the two can never drift apart."""
    block = set(block_ops)
    return island(graph) | {n.name for n in graph.node if n.op_type in block or n.name in block}


def to_fp16(model: Any, fp32_nodes: Iterable[str], block_ops: Iterable[str] = FP16_BLOCK_OPS) -> Any:
    """Rewrite `model` (in place, returned) to FP16 outside `fp32_nodes` and the op types/names in `block_ops`.

    Every float tensor gets one precision, decided by its producer; a Cast is inserted wherever a
    consumer runs at the other precision; graph inputs and outputs stay FP32. Float initializers
    become FP16 when every consumer runs in FP16. Q/DQ graphs (opset >= 19): a DequantizeLinear runs
    at its consumers' precision (its output takes its scale's type) and a QuantizeLinear at its
    DequantizeLinear's, so a pair shares one scale initializer of one type, and an FP16 layer reads
    FP16 straight from its DQs.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    model.graph.ClearField("value_info")
    model.graph.value_info.extend(inferred.graph.value_info)
    g = model.graph
    block = set(block_ops)
    fp32 = set(fp32_nodes)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.value_info, *g.input, *g.output]}
    inits = {t.name: t for t in g.initializer}
    for name, t in inits.items():
        types[name] = t.data_type
    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    params = {i for n in g.node for k, i in enumerate(n.input) if _is_float32_param(n, k)}

    def is_half(node: Any) -> bool:
        if node.op_type in block or node.name in block or node.name in fp32 or node.op_type in QDQ_OPS:
            return False
        if node.output and all(o in params for o in node.output):  # makes a float32 parameter (a Constant)
            return False
        return any(types.get(o) == FLOAT for o in node.output)

    half_nodes = {n.name for n in g.node if is_half(n)}
    for op in QDQ_OPS[::-1]:  # DQ follows its readers, then Q follows its DQ
        for n in g.node:
            readers = [c for o in n.output for c in consumers.get(o, [])]
            if n.op_type == op and readers and all(c.name in half_nodes for c in readers):
                half_nodes.add(n.name)
    precision: dict[str, int] = {i.name: FLOAT for i in g.input}  # tensor -> its stored float type
    new_inits = []
    for name, t in inits.items():
        if (t.data_type == FLOAT and name not in params and consumers.get(name)
                and all(c.name in half_nodes for c in consumers[name])):
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
            if have in (FLOAT, HALF) and have != want and n.op_type != "Cast" and not _is_float32_param(n, k):
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
    return model


def convert_fp16(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    blocklist: Sequence[str] | None = None,
    progress: bool = False,
) -> OnnxArtifact:
    """FP16 graph with FP32 inputs/outputs and an FP32 island (op types or node names in `blocklist`); returns
    the artifact written.

    Written directly rather than with onnxconverter-common, whose output for this model does not
    load (Cast nodes left at FLOAT inside the FP16 region; graph outputs read internally wired to the
    FP32 copy). The graph is load-checked in ONNX Runtime with its default session options.
    """
    import onnx

    model = load_onnx(src)
    block = set(blocklist if blocklist is not None else FP16_BLOCK_OPS)
    fp32_nodes = island(model.graph)  # the recipe records the island; blocked op types are recorded apart
    to_fp16(model, fp32_island(model.graph, block), block)
    out = Path(out)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
        from ..ort import make_session

        make_session(tmp)  # load check (default options): a graph ORT cannot load is never written
    recipe = Fp16Recipe(fp32_op_types=tuple(sorted(block & set(FP16_BLOCK_OPS) | {b for b in block if "/" not in b})),
                        fp32_nodes=tuple(sorted(fp32_nodes)), io="float32")
    return OnnxArtifact.source(src).derive(out, artifact_format=ARTIFACT_FORMAT, precision="fp16", fp16=recipe,
                                           onnx_sha256=sha256_file(out)).write()


@dataclass(frozen=True)
class Fp16Config:
    """`simplehand-deploy fp16`: source graph, output, what stays FP32 besides the island."""

    onnx: Path
    out: Path
    block: tuple[str, ...] | None = None  # op types or node names kept FP32; None: FP16_BLOCK_OPS

    @classmethod
    def from_cli(cls, **options: Any) -> Fp16Config:
        """Options left at None (or an empty --block list) take the defaults above."""
        given: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                 for k, v in options.items() if v is not None}
        return cls(**{k: v for k, v in given.items() if v != ()})


def run_fp16(cfg: Fp16Config) -> OnnxArtifact:
    """Convert the graph `cfg` names; the artifact written."""
    return convert_fp16(cfg.onnx, cfg.out, blocklist=cfg.block)
