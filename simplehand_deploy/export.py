"""PyTorch -> ONNX for TensorRT 8.6 .. 11: fused FastViT, opset 17, dynamic batch, verified.

What is checked on every export, because each has bitten someone:
* GridSample must say `bilinear` (opset >= 20 exports `linear`, which TensorRT parses as nearest);
* opset <= 17 by default (16 for TensorRT 8.5, whose parser lacks LayerNormalization);
* only the batch axis is dynamic (the 7x7 pool and the 28x28 position map fix 224x224);
* parity: ONNX Runtime vs PyTorch at batch 1 and 3 (vertices within 1e-4 m, uv within 1e-4);
* onnxsim's output is kept only if it passes the same parity check.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .artifact import OnnxArtifact, utc_now
from .checkpoint import CheckpointInfo, load_announced
from .config import DEFAULT_CONFIG
from .errors import UsageError, VerificationError
from .fileio import atomic_path, sha256_file
from .literals import PRECISIONS, Precision, Target
from .model import SimpleHand, fuse

PARITY_TOL = 1e-4


def artifact_name(config: str, weights_short: str, precision: Precision, target: Target | None = None) -> str:
    """`simplehand-<config>-<weights>-<precision>.onnx`; INT8 names its TensorRT target (`...-int8-trt10.onnx`)."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "int8":
        return f"simplehand-{config}-{weights_short}-int8-{target or 'trt10'}.onnx"
    return f"simplehand-{config}-{weights_short}-{precision}.onnx"


def load_onnx(path: str | os.PathLike[str]) -> Any:
    """onnx.load with a one-line UsageError for missing or corrupt files."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"ONNX file {p}: no such file")
    try:
        model = onnx.load(str(p))
        onnx.checker.check_model(model)
    except Exception as exc:
        raise UsageError(f"ONNX file {p}: not a valid ONNX model ({type(exc).__name__}: {str(exc)[:120]})") from None
    return model


def graph_problems(model: Any, max_opset: int = 17) -> list[str]:
    """Deployment hazards in a graph (empty list = fine)."""
    problems = []
    opset = _opset(model)
    if opset > max_opset:
        problems.append(f"opset {opset} > {max_opset} (TensorRT parses GridSample 'linear' as nearest at >= 20)")
    for node in model.graph.node:
        if node.op_type == "GridSample":
            mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "bilinear")
            if mode != "bilinear":
                problems.append(f"GridSample {node.name!r} mode {mode!r}, expected 'bilinear'")
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or not isinstance(dims[0], str) or dims[1:] != [3, 224, 224]:
        problems.append(f"input shape {dims}, expected ['batch', 3, 224, 224]")
    return problems


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def downconvert_opset(model: Any, opset: int) -> Any:
    """Bring a graph down to `opset` (the dynamo exporter emits 18 whatever it is asked for).

    onnx's converter needs constant `axes` inputs (so it runs after onnxsim folded them) and leaves
    opset-18's `noop_with_empty_axes` on the Reduce ops it rewrites, which opset 17 rejects for all
    of them but ReduceSum; the default value (0) is what opset 17 does anyway, so it is dropped.
    """
    import onnx

    try:
        converted = onnx.version_converter.convert_version(model, opset)
        for node in converted.graph.node:
            if node.op_type.startswith("Reduce") and node.op_type != "ReduceSum":
                keep = [a for a in node.attribute if not (a.name == "noop_with_empty_axes" and a.i == 0)]
                del node.attribute[:]
                node.attribute.extend(keep)
        onnx.checker.check_model(converted)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise VerificationError(
            f"cannot down-convert the exported graph from opset {_opset(model)} to {opset} ({first}); "
            "export with the legacy exporter (drop --dynamo) or keep onnxsim on"
        ) from None
    return converted


def constants_to_initializers(model: Any) -> int:
    """Move tensor-valued Constant nodes into initializers.

    Some weights reach the graph as Constant nodes (onnxsim folding FastViT's re-parameterised convs);
    quantisers (ORT, ModelOpt) and TensorRT's weight handling expect initializers, e.g. ORT only
    quantises a Conv weight per channel when it is an initializer.
    """
    keep, moved = [], 0
    for node in model.graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and value is not None and len(node.attribute) == 1:
            tensor = value.t
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
            moved += 1
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return moved


def parity_check(model: SimpleHand, onnx_path: Path, batches: tuple[int, ...] = (1, 3)) -> dict[str, float]:
    """Max abs difference ORT vs PyTorch per output over the given batch sizes."""
    from .ort import make_session, run

    sess = make_session(onnx_path, fake_quant=False)
    g = torch.Generator().manual_seed(0)
    worst = {"uv": 0.0, "vertices": 0.0}
    for b in batches:
        x = torch.rand(b, 3, 224, 224, generator=g) * 255
        with torch.no_grad():
            uv, v = model(x)
        out = run(sess, x.numpy(), batch_size=b)
        worst["uv"] = max(worst["uv"], float(np.abs(out["uv"] - uv.numpy()).max()))
        worst["vertices"] = max(worst["vertices"], float(np.abs(out["vertices"] - v.numpy()).max()))
    return worst


def _torch_export(model: SimpleHand, path: Path, opset: int, dynamo: bool) -> None:
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 255  # batch >= 2 for dynamo
    kwargs: dict[str, Any] = dict(input_names=["image"], output_names=["uv", "vertices"], opset_version=opset)
    if dynamo:
        from ._deps import require

        require("onnxscript")
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.onnx.export(model, (x,), str(path), dynamo=True, dynamic_shapes={"image": {0: batch}}, **kwargs)
    else:
        axes = {"image": {0: "batch"}, "uv": {0: "batch"}, "vertices": {0: "batch"}}
        torch.onnx.export(model, (x,), str(path), dynamo=False, dynamic_axes=axes, do_constant_folding=True, **kwargs)


def _check_opset(opset: int) -> None:
    if opset > 17 or opset < 16:
        raise UsageError(f"--opset {opset}: use 17 (TensorRT >= 8.6) or 16 (TensorRT 8.5); >= 20 breaks GridSample")


@dataclass(frozen=True)
class ExportConfig:
    """`simplehand-deploy export`: which weights, where, how; every default is the command's."""

    out: Path
    checkpoint: Path | None = None  # None: seed-initialised weights (announced unless quiet)
    config: str = DEFAULT_CONFIG
    opset: int = 17
    dynamo: bool = False
    simplify: bool = True
    progress: bool = True

    @classmethod
    def from_cli(cls, *, no_simplify: bool = False, quiet: bool = False, **options: Any) -> ExportConfig:
        """Options left at None take the defaults above; the opset is checked before any weights load."""
        cfg = cls(simplify=not no_simplify, progress=not quiet, **{k: v for k, v in options.items() if v is not None})
        _check_opset(cfg.opset)
        return cfg


def run_export(cfg: ExportConfig) -> OnnxArtifact:
    """Load the weights (seed weights announced), export and verify; the artifact written."""
    model, info = load_announced(cfg.checkpoint, cfg.config, announce=cfg.progress)
    return export_onnx(model, cfg.out, opset=cfg.opset, dynamo=cfg.dynamo, simplify=cfg.simplify, info=info,
                       progress=cfg.progress)


def export_onnx(
    model: SimpleHand,
    out: str | os.PathLike[str],
    *,
    opset: int = 17,
    dynamo: bool = False,
    simplify: bool = True,
    parity: bool = True,
    info: CheckpointInfo | None = None,
    progress: bool = True,
) -> OnnxArtifact:
    """Export (fusing first), simplify if it verifies, check the graph and parity, write ONNX + sidecar atomically.

    Returns the artifact written (its path and sidecar record)."""
    import onnx

    _check_opset(opset)
    out = Path(out)
    model = fuse(model.eval()) if not model.is_fused else model.eval()
    log = (lambda m: print(m, flush=True)) if progress else (lambda m: None)
    t0 = time.time()
    with atomic_path(out) as tmp:
        log(f"export: tracing {model.cfg.name} ({'dynamo' if dynamo else 'legacy'} exporter, opset {opset}) ...")
        _torch_export(model, tmp, opset, dynamo)
        graph = onnx.load(str(tmp))
        simplified = False
        if simplify:
            simplified = _try_simplify(model, tmp, graph, log)
            graph = onnx.load(str(tmp))
        constants_to_initializers(graph)
        emitted = _opset(graph)
        if emitted > opset:
            graph = downconvert_opset(graph, opset)
            log(f"export: down-converted the exporter's opset {emitted} to {opset}")
        problems = graph_problems(graph, max_opset=opset)
        if problems:
            raise VerificationError(f"exported graph {out.name}: " + "; ".join(problems))
        figures = parity_check(model, tmp) if parity else {}
        if parity:
            log(f"export: parity vs PyTorch (batch 1, 3): uv {figures['uv']:.2e}, vertices {figures['vertices']:.2e}")
            if figures["vertices"] > PARITY_TOL or figures["uv"] > PARITY_TOL:
                raise VerificationError(f"ONNX Runtime vs PyTorch differ by {figures} (> {PARITY_TOL}) for {out.name}")
        art = _artifact(out, model, info, opset, dynamo, simplified, figures, time.time() - t0, emitted)
        stamp = {"config": art.config, "weights_sha256": info.sha256 if info else None, "precision": art.precision}
        for k, v in (("simplehand", json.dumps(stamp)), ("producer", f"simplehand-deploy {__version__}")):
            entry = graph.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(graph, str(tmp))
    art = dataclasses.replace(art, onnx_sha256=sha256_file(out)).write()
    log(f"export: wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.0f} s")
    return art


def _try_simplify(model: SimpleHand, path: Path, graph: Any, log: Any) -> bool:
    """Replace the file with onnxsim's output only if that output checks and matches PyTorch."""
    import onnx

    try:
        import onnxsim
    except ImportError:
        log("export: onnxsim not installed; keeping the unsimplified graph")
        return False
    try:
        simple, ok = onnxsim.simplify(graph)
    except Exception as exc:  # onnxsim raises assorted errors on exotic graphs
        log(f"export: onnxsim failed ({type(exc).__name__}); keeping the unsimplified graph")
        return False
    if not ok:
        return False
    candidate = path.with_suffix(".sim.onnx")
    try:
        onnx.save(simple, str(candidate))
        fig = parity_check(model, candidate, batches=(2,))
        if fig["vertices"] <= PARITY_TOL and fig["uv"] <= PARITY_TOL:
            os.replace(candidate, path)
            log(f"export: onnxsim {len(graph.graph.node)} -> {len(simple.graph.node)} nodes (verified)")
            return True
        log("export: onnxsim output failed parity; keeping the unsimplified graph")
        return False
    finally:
        candidate.unlink(missing_ok=True)


# Bumped whenever export / fp16 / int8 write a different graph for the same inputs; `make engine` rebuilds
# an artifact whose sidecar records another value (2: Constant weights as initializers, TensorRT-style
# Q/DQ placement; 3: attention scores in the FP32 island, INT8 per TensorRT target).
ARTIFACT_FORMAT = 3


def _artifact(out: Path, model: SimpleHand, info: CheckpointInfo | None, opset: int, dynamo: bool,
              simplified: bool, figures: dict[str, float], seconds: float, emitted: int) -> OnnxArtifact:
    import onnx

    return OnnxArtifact(
        path=out, precision="fp32", artifact_format=ARTIFACT_FORMAT, config=model.cfg.name,
        weights_short=info.short if info else "seed0", opset=opset, created=utc_now(),
        extra={"kind": "simplehand-onnx", "model_config": model.cfg.to_dict(),
               "weights_kind": info.kind if info else "seed", "weights_sha256": info.sha256 if info else None,
               "exporter": "dynamo" if dynamo else "legacy", "simplified": simplified, "fused": True,
               "inputs": {"image": ["batch", 3, 224, 224]},
               "outputs": {"uv": ["batch", 21, 2], "vertices": ["batch", 778, 3]},
               "parity_max_abs": figures,
               "versions": {"simplehand_deploy": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                            "python": platform.python_version()},
               "seconds": round(seconds, 2), "exporter_opset": emitted})
