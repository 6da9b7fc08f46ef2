"""Per-layer INT8 sensitivity of a Q/DQ graph: the drift each quantised layer causes on its own.

For every weighted node that reads a DequantizeLinear, two variants of the graph are run: only that layer's
activation input(s) quantised, and only its weight quantised; every other Q/DQ pair is bypassed (its
consumer reads the float tensor or the float weight). The reference is the same graph with every Q/DQ
bypassed, so the figure isolates the rounding of that one tensor with the graph's own placement and
scales (ours, QAT's or ModelOpt's). Drift is mean vertex drift in mm on the given crops (ONNX Runtime, CPU,
optimisations off: TensorRT's Q/DQ semantics). `repair` probes its layer groups with the same bypass.

Cost: two ONNX Runtime sessions and two passes over the crops per quantised layer: tiny (56 layers, 64
crops) a few minutes on 2 cores; fastvit_ma36 about an hour.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from .graph import INT8_OPS

Edge = tuple[str, int]  # (weighted node name, input index) fed through a DequantizeLinear


def _producers(g: Any) -> dict[str, Any]:
    return {o: n for n in g.node for o in n.output}


def _dq_source(producer: dict[str, Any], tensor: str) -> Any:
    """The DequantizeLinear feeding `tensor` directly or through Casts, else None."""
    node = producer.get(tensor)
    while node is not None and node.op_type == "Cast":
        node = producer.get(node.input[0])
    return node if node is not None and node.op_type == "DequantizeLinear" else None


def quantised_edges(model: Any) -> dict[str, dict[str, list[int]]]:
    """node name -> {"activation": [input indices], "weight": [input index]} for every weighted node that reads a
    DequantizeLinear, in graph order (a weight: the DQ reads an initializer, or a Q of one)."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    producer = _producers(g)
    out: dict[str, dict[str, list[int]]] = {}
    for n in g.node:
        if n.op_type not in INT8_OPS:
            continue
        kinds: dict[str, list[int]] = {"activation": [], "weight": []}
        for k, tensor in enumerate(n.input[:2]):
            dq = _dq_source(producer, tensor)
            if dq is None:
                continue
            q = producer.get(dq.input[0])
            weight = dq.input[0] in inits or (q is not None and q.op_type == "QuantizeLinear" and q.input[0] in inits)
            kinds["weight" if weight else "activation"].append(k)
        if kinds["activation"] or kinds["weight"]:
            out[n.name] = kinds
    return out


def keep_only(model: Any, keep: Iterable[Edge]) -> Any:
    """A copy of `model` where every weighted node input fed by a Q/DQ pair reads the float value instead,
    except the (node, input) edges in `keep`; Q/DQ nodes left unread are removed."""
    import onnx
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    keep = set(keep)
    inits = {t.name: t for t in g.initializer}
    producer = _producers(g)
    added: dict[str, str] = {}
    for n in g.node:
        if n.op_type not in INT8_OPS:
            continue
        for k, tensor in enumerate(list(n.input[:2])):
            if (n.name, k) in keep:
                continue
            dq = _dq_source(producer, tensor)
            if dq is None:
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                src = q.input[0]
            elif dq.input[0] in inits:  # int8 weight stored as such: its dequantised value, in the DQ's float type
                if dq.output[0] not in added:
                    data = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float32)
                    scale = numpy_helper.to_array(inits[dq.input[1]])
                    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
                    shape = [1] * data.ndim
                    if scale.size > 1:
                        shape[axis] = scale.size
                    value = (data * scale.astype(np.float32).reshape(shape)).astype(scale.dtype)
                    name = f"{dq.output[0]}__float"
                    g.initializer.append(numpy_helper.from_array(value, name))
                    added[dq.output[0]] = name
                src = added[dq.output[0]]
            else:
                continue
            if tensor != dq.output[0]:  # a Cast between DQ and the layer: keep it, feed it the float value
                cast = producer[tensor]
                while cast.input[0] != dq.output[0]:
                    cast = producer[cast.input[0]]
                cast.input[0] = src
            else:
                n.input[k] = src
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Cast")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    return m


class _Runner:
    """Mean vertex drift of graph variants against a reference output set, one temporary file per variant."""

    def __init__(self, images: np.ndarray, batch_size: int = 16) -> None:
        self.images = images
        self.batch_size = batch_size
        self._dir = tempfile.TemporaryDirectory(prefix="sensitivity-")
        self.ref: dict[str, np.ndarray] | None = None

    def outputs(self, model: Any) -> dict[str, np.ndarray]:
        import onnx

        from ..ort import make_session, run

        path = Path(self._dir.name) / "variant.onnx"
        onnx.save(model, str(path))
        return run(make_session(path, fake_quant=True), self.images, self.batch_size)

    def drift(self, model: Any) -> float:
        from ..drift import drift_row

        assert self.ref is not None
        mean = drift_row(self.ref, self.outputs(model))["vertex_drift_mean_mm"]
        assert mean is not None
        return float(mean)

    def close(self) -> None:
        self._dir.cleanup()


def group_drift(model: Any, nodes: Iterable[str], images: np.ndarray, ref: dict[str, np.ndarray]) -> float:
    """Mean vertex drift (mm) vs `ref` when only `nodes`' Q/DQ inputs stay quantised (the repair's probe)."""
    edges = quantised_edges(model)
    keep = [(n, k) for n in nodes for kind in edges.get(n, {}).values() for k in kind]
    run = _Runner(images)
    run.ref = ref
    try:
        return run.drift(keep_only(model, keep))
    finally:
        run.close()


def layer_sensitivity(path: str | os.PathLike[str], images: np.ndarray, *, progress: bool = False
                      ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per quantised layer of the Q/DQ graph at `path`: op, MACs and share, drift (mm) with only its
    activation INT8 and with only its weight INT8; and a summary (all quantised, the reference, seconds)."""
    import onnx

    from ..progress import track
    from .macs import layer_macs

    t0 = time.perf_counter()
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--onnx {p}: no such file")
    try:
        model = onnx.load(str(p))
    except Exception as exc:
        raise UsageError(f"--onnx {p}: not an ONNX model ({type(exc).__name__}); pass the .onnx that int8 or qat "
                         "wrote") from None
    edges = quantised_edges(model)
    if not edges:
        raise UsageError(f"--onnx {p}: no Q/DQ on any weighted layer; pass an INT8 graph (simplehand-deploy int8 "
                         "or qat), not the FP32/FP16 one")
    macs = layer_macs(model) or {}
    total = sum(macs.values()) or None
    ops = {n.name: n.op_type for n in model.graph.node}
    run = _Runner(images)
    try:
        run.ref = run.outputs(keep_only(model, ()))
        everything = run.drift(model)
        rows = []
        for name, kinds in track(list(edges.items()), "sensitivity", progress):
            row: dict[str, Any] = {"layer": name, "op_type": ops[name], "macs": macs.get(name),
                                   "mac_share": macs[name] / total if total and name in macs else None,
                                   "activation_inputs": len(kinds["activation"]),
                                   "weight_quantised": bool(kinds["weight"])}
            for kind, col in (("activation", "drift_activation_only_mm"), ("weight", "drift_weight_only_mm")):
                row[col] = run.drift(keep_only(model, [(name, k) for k in kinds[kind]])) if kinds[kind] else None
            rows.append(row)
    finally:
        run.close()
    summary = {"onnx": str(p), "crops": len(images), "layers": len(rows), "drift_all_quantised_mm": everything,
               "reference": "the same graph with every Q/DQ bypassed", "seconds": round(time.perf_counter() - t0, 1)}
    return rows, summary
