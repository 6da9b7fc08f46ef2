"""FP16 graph with FP32 inputs/outputs and an FP32 island, written directly (no onnxconverter-common).

The island: LayerNormalization, Softmax and GridSample by op type, plus the grid path and the vertex
head found by `graph.sensitive_nodes`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..export import ARTIFACT_FORMAT, load_onnx, read_sidecar, sidecar_path
from ..fileio import atomic_path, sha256_file, write_json_atomic
from .graph import sensitive_nodes

FP16_BLOCK_OPS = ("LayerNormalization", "Softmax", "GridSample")


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
        from ..ort import make_session

        make_session(tmp)  # load check: a graph ORT cannot load is never written
    meta = {**read_sidecar(src), "artifact_format": ARTIFACT_FORMAT, "precision": "fp16", "source_onnx": str(src),
            "source_sha256": sha256_file(src),
            "fp16": {"fp32_op_types": sorted(block & set(FP16_BLOCK_OPS) | {b for b in block if "/" not in b}),
                     "fp32_nodes": sorted(fp32_nodes), "io": "float32"},
            "onnx_sha256": sha256_file(out), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json_atomic(sidecar_path(out), meta)
    return out
