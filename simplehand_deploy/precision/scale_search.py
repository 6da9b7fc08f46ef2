"""Output-aware activation-scale search: tune a quantised graph's per-tensor activation scales against the
FP32 graph's outputs on the calibration crops.

Calibration (minmax, entropy, percentile) picks each activation scale from that tensor's own values,
one tensor at a time; what matters is the error at the graph's outputs. Starting from the calibrated
scales, this searches multipliers of each activation scale by coordinate descent: tensors in order of
sensitivity (how much the objective moves when the scale is scaled by the probe multiplier, largest
first), each tried at every multiplier with the others fixed, keeping a change only when it lowers the
objective. The objective is the mean vertex drift (mm, `drift.drift_row`) of the fake-quant graph
(ONNX Runtime CPU, optimisations off: TensorRT's Q/DQ semantics) against the FP32 graph on the
calibration crops, so it can only go down from the calibrated starting point on those crops. Crops
held out for checking (the repair's last 25%, any separate held-out set) are never seen.

In the spirit of MSE-optimal / output-aware post-training quantisation (AdaQuant and friends), written
here for explicit Q/DQ graphs: it changes only scale values, never the placement, so the INT8 MAC share
is unchanged. One ONNX Runtime session is built once with the activation scales as overridable inputs,
so each trial is one forward pass of the crops, not a new session.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MULTIPLIERS = (0.5, 0.6, 0.7, 0.85, 1.0, 1.2)
DEFAULT_SWEEPS = 1
# Search only this many of the most sensitive scales (None: all of them).
DEFAULT_TOP: int | None = None
# The multiplier whose effect ranks the tensors (sensitivity) before the first sweep.
PROBE_MULTIPLIER = 0.7


def activation_scales(model: Any) -> list[tuple[str, str]]:
    """(scale initializer, quantised tensor) of every QuantizeLinear on an activation (its input is not an
    initializer), in graph order, one entry per scale initializer (a Q/DQ pair shares one)."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for n in g.node:
        if n.op_type != "QuantizeLinear" or n.input[0] in inits or len(n.input) < 2:
            continue
        scale = n.input[1]
        if scale in inits and scale not in seen and int(np.prod(inits[scale].dims)) == 1:
            seen.add(scale)
            out.append((scale, n.input[0]))
    return out


class _Objective:
    """Mean vertex drift (mm) of the Q/DQ graph, activation scales fed as inputs, vs fixed reference outputs."""

    def __init__(self, model: Any, scales: list[str], images: np.ndarray, ref: dict[str, np.ndarray],
                 batch: int, threads: int | None) -> None:
        import onnx
        from onnx import helper, numpy_helper

        from ..ort import make_session

        m = onnx.ModelProto()
        m.CopyFrom(model)
        inits = {t.name: t for t in m.graph.initializer}
        self.start = {s: numpy_helper.to_array(inits[s]).copy() for s in scales}
        for s in scales:  # an initializer listed as a graph input is a default the caller may override
            t = inits[s]
            m.graph.input.append(helper.make_tensor_value_info(s, t.data_type, list(t.dims)))
        self.images, self.ref, self.batch = images, ref, batch
        self.evaluations = 0
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "search.onnx"
            onnx.save(m, str(path))
            self.session = make_session(path, threads=threads, fake_quant=True)

    def __call__(self, scales: dict[str, np.ndarray]) -> float:
        from ..drift import drift_row

        outs: dict[str, list[np.ndarray]] = {"uv": [], "vertices": []}
        for i in range(0, len(self.images), self.batch):
            feed = {"image": np.ascontiguousarray(self.images[i : i + self.batch]), **scales}
            uv, vertices = self.session.run(["uv", "vertices"], feed)
            outs["uv"].append(np.asarray(uv, np.float32))
            outs["vertices"].append(np.asarray(vertices, np.float32))
        self.evaluations += 1
        mean = drift_row(self.ref, {k: np.concatenate(v) for k, v in outs.items()})["vertex_drift_mean_mm"]
        assert mean is not None
        return mean


def search_scales(
    path: str | Path,
    fp32: str | Path,
    images: np.ndarray,
    *,
    multipliers: tuple[float, ...] | None = None,
    sweeps: int | None = None,
    top: int | None = None,
    batch_size: int = 8,
    threads: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Tune the activation scales of the Q/DQ graph at `path` (rewritten in place) on `images`; returns the record
    kept in the sidecar (`int8.extra.scale_search`): objective before/after, multipliers kept, evaluations.

    `fp32` is the graph the quantised one was made from (the reference). The objective never rises: a
    multiplier is kept only when it strictly lowers the calibration-crop drift, and the start is measured
    with the calibrated scales. None for `multipliers`, `sweeps`, `top` means the module's DEFAULT_* values
    (`top`: search only the most sensitive scales).
    """
    import onnx
    from onnx import numpy_helper

    from ..ort import make_session, run
    from ..progress import track

    multipliers = tuple(DEFAULT_MULTIPLIERS if multipliers is None else multipliers)
    sweeps = DEFAULT_SWEEPS if sweeps is None else sweeps
    top = DEFAULT_TOP if top is None else top
    t0 = time.perf_counter()
    path = Path(path)
    model = onnx.load(str(path))
    pairs = activation_scales(model)
    names = [s for s, _ in pairs]
    ref = run(make_session(fp32, threads=threads), images, batch_size)
    objective = _Objective(model, names, images, ref, batch_size, threads)
    current = dict(objective.start)
    chosen = dict.fromkeys(names, 1.0)

    def scaled(name: str, mult: float) -> np.ndarray:
        base = objective.start[name]
        return np.asarray(base.astype(np.float32) * mult, dtype=base.dtype)

    def trial(name: str, mult: float) -> float:
        return objective({**current, name: scaled(name, mult)})

    start = best = objective(current)
    # sensitivity: how far the objective moves when one scale alone is multiplied by the probe
    sensitivity = {n: abs(trial(n, PROBE_MULTIPLIER) - start) for n in track(names, "scale search: ranking", progress)}
    order = sorted(names, key=lambda n: -sensitivity[n])[:top]
    history = [start]
    for sweep in range(sweeps):
        for name in track(order, f"scale search: sweep {sweep + 1}/{sweeps}", progress):
            for mult in multipliers:
                if mult == chosen[name]:
                    continue
                err = trial(name, mult)
                if err < best:
                    best, chosen[name] = err, mult
                    current[name] = scaled(name, mult)
        history.append(best)
    inits = {t.name: t for t in model.graph.initializer}
    for name in names:
        if chosen[name] != 1.0:
            inits[name].CopyFrom(numpy_helper.from_array(current[name], name))
    onnx.save(model, str(path))
    tensors = dict(pairs)
    return {"objective": "mean vertex drift (mm) of the fake-quant graph vs the FP32 graph on the calibration crops",
            "crops": len(images), "multipliers": list(multipliers), "sweeps": sweeps,
            "probe_multiplier": PROBE_MULTIPLIER, "activation_scales": len(names), "searched": len(order),
            "start_mm": start, "final_mm": best, "per_sweep_mm": history, "evaluations": objective.evaluations,
            "seconds": round(time.perf_counter() - t0, 1),
            "changed": {tensors[n]: chosen[n] for n in order if chosen[n] != 1.0}}
