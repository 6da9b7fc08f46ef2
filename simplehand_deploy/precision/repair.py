"""Sensitivity repair: keep the most sensitive layer groups of an INT8 graph float until drift fits a budget.

Drift is the shared accuracy code (`drift.drift_row`) and CPU time the shared timing loop
(`timing`), both on ONNX Runtime sessions (fake-quant semantics for Q/DQ graphs).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .graph import INT8_OPS

# quantise(src, out, excluded_nodes, progress): writes the INT8 graph with those nodes kept float
Quantise = Callable[[Path, Path, list[str], bool], None]


def drift_mm(ref: dict[str, np.ndarray], path: Path, images: np.ndarray) -> float:
    """Mean vertex drift (mm) of the graph at `path` against reference outputs on the same images."""
    from ..drift import drift_row
    from ..ort import make_session, run

    mean = drift_row(ref, run(make_session(path), images))["vertex_drift_mean_mm"]
    assert mean is not None  # always present: vertices are always compared
    return mean


class _SessionRunner:
    """The smallest runner `timing.measure` times: one ONNX Runtime session, one fixed input."""

    device = "cpu"

    def __init__(self, path: Path, image: np.ndarray) -> None:
        from ..ort import make_session

        self.session = make_session(path)
        self.image = np.ascontiguousarray(image)

    def prepare(self, batch: int) -> None:
        pass

    def launch(self, batch: int) -> None:
        self.session.run(None, {"image": self.image})

    def synchronize(self) -> None:
        pass


def cpu_p50_ms(path: Path, image: np.ndarray, iterations: int = 5) -> float:
    """Median CPU latency of one ONNX Runtime run (a simulation figure for Q/DQ graphs, not TensorRT speed)."""
    from ..timing import measure

    return float(measure(_SessionRunner(path, image), len(image), duration=0.0, iterations=iterations,
                         warmup=0.01)["latency_p50_ms"])


def repair(src: Path, out: Path, quantise: Quantise, excluded: list[str], budget_mm: float, *,
           check_images: np.ndarray, progress: bool, groups: int = 8) -> dict[str, Any]:
    """Keep the most sensitive layer groups float until mean drift on `check_images` <= budget_mm.

    `out` holds the INT8 graph quantised with `excluded` kept float; it is rewritten as groups are
    excluded. Groups are contiguous runs of quantisable nodes in graph order (names are unreliable
    after onnxsim). Each group's sensitivity = drift when only that group is quantised; groups are
    then excluded, most sensitive first, re-quantising the rest each time. Drift is against the FP32
    graph in ONNX Runtime (fake-quant for Q/DQ) on `check_images`, crops the calibration never saw.
    """
    import onnx

    from ..ort import make_session, run

    ref = run(make_session(src), check_images)
    first = drift_mm(ref, out, check_images)
    report: dict[str, Any] = {"budget_mm": budget_mm, "drift_all_quantised_mm": first, "excluded_groups": [],
                              "cpu_ms_all_int8": cpu_p50_ms(out, check_images[:1])}
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
        # each group's sensitivity: the quantised graph with only that group's Q/DQ kept (the per-layer
        # sensitivity report's bypass, `sensitivity.group_drift`), the same scales as the full graph
        from .sensitivity import group_drift

        quantised = onnx.load(str(out))
        sens = [group_drift(quantised, chunk, check_images, ref) for chunk in chunks]
        order = sorted(range(len(chunks)), key=lambda k: -sens[k])
        report["group_sensitivity_mm"] = [{"group": k, "first": chunks[k][0], "nodes": len(chunks[k]),
                                           "drift_mm": sens[k]} for k in range(len(chunks))]
        keep_float = list(excluded)
        drift = first
        for k in order:
            keep_float += chunks[k]
            report["excluded_groups"].append(k)
            quantise(src, out, keep_float, progress)
            drift = drift_mm(ref, out, check_images)
            if drift <= budget_mm:
                break
        report.update(final_drift_mm=drift, excluded_nodes=keep_float, met=drift <= budget_mm,
                      layers_int8=len([n for n in weighted if n not in set(keep_float)]),
                      cpu_ms_fp32=cpu_p50_ms(src, check_images[:1]),
                      cpu_ms_repaired=cpu_p50_ms(out, check_images[:1]),
                      note="CPU latencies are fake-quant simulation figures, not TensorRT speed")
    finally:
        probe.unlink(missing_ok=True)
    return report
