"""Build TensorRT engines from our ONNX artifacts, one code path for TensorRT 8.6 (JetPack 5) to 11.

Precision strategy forks on the TensorRT major version (notes/tensorrt.md, Recommendations):
* TRT < 10: weak typing. FP16 = `BuilderFlag.FP16` on the FP32 graph; INT8 = the Q/DQ graph with
  `INT8` + `FP16` flags (explicit quantisation still needs the flag there).
* TRT >= 10: strong typing. Precision comes from the graph: the FP16 ONNX for FP16, the Q/DQ ONNX
  for INT8. TRT 11 removed the flags and calibrators altogether.
Flags and enum members are looked up by *name* (their integers were renumbered in 11). A requested
precision that cannot be honoured raises; we never hand back a silent FP32 engine.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._deps import INSTALL_HINTS, tensorrt_or_none
from ..errors import UsageError, VerificationError
from ..fileio import atomic_path, write_bytes_atomic, write_json_atomic
from .cache import current_key_inputs, engine_key, plan_paths

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_PROFILE = (1, 8, 64)


@dataclass
class EngineArtifact:
    plan: Path
    sidecar: Path
    key: str
    cached: bool
    seconds: float


def require_tensorrt() -> Any:
    """The real tensorrt module, or a UsageError with the install route (desktop and JetPack)."""
    trt = tensorrt_or_none()
    if trt is None:
        raise UsageError(INSTALL_HINTS["tensorrt"])
    return trt


def trt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def cuda_device() -> dict[str, str]:
    """Name, SM and CUDA major of device 0 (torch, else cuda-python); UsageError without a CUDA device."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return {"name": torch.cuda.get_device_name(0), "sm": f"{major}.{minor}",
                    "cuda_major": str(torch.version.cuda or "").split(".")[0]}
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    found = _cuda_python_device()
    if found is None:
        raise UsageError("no CUDA device: TensorRT engines are built and run on an NVIDIA GPU "
                         "(neither torch nor cuda-python sees one)")
    return found


def _cuda_python_device() -> dict[str, str] | None:
    """Device 0 through cuda-python (for machines whose torch has no CUDA, e.g. Jetson without NVIDIA's wheel)."""
    try:
        try:
            from cuda.bindings import runtime as rt
        except ImportError:
            from cuda import cudart as rt
        err, count = rt.cudaGetDeviceCount()
        if int(err) != 0 or count < 1:
            return None
        err, props = rt.cudaGetDeviceProperties(0)
        err2, version = rt.cudaRuntimeGetVersion()
        if int(err) != 0:
            return None
        name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
        return {"name": name, "sm": f"{props.major}.{props.minor}",
                "cuda_major": str(version // 1000) if int(err2) == 0 else ""}
    except Exception:
        return None


def _flag(name: str) -> Any:
    import tensorrt as trt

    flag = getattr(trt.BuilderFlag, name, None)
    if flag is None:
        raise VerificationError(f"TensorRT {trt.__version__} has no BuilderFlag.{name}: cannot build this precision")
    return flag


def graph_precision(onnx_path: Path) -> str:
    from ..ort import graph_kind

    return graph_kind(onnx_path)


def build_engine(
    onnx_path: str | os.PathLike[str],
    *,
    precision: str,
    profile: tuple[int, int, int] = DEFAULT_PROFILE,
    workspace_mb: int = 4096,
    opt_level: int | None = None,
    timing_cache_dir: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] = "engines",
    force: bool = False,
) -> EngineArtifact:
    """Build (or reuse) `<out_dir>/<key>.plan` + `<key>.json` for one ONNX artifact and precision.

    The timing cache (default `<out_dir>/timing-cache/`) is one file per TensorRT version + GPU/SM, so
    rebuilds after an ONNX change reuse tactic timings; the engine key never depends on it.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UsageError(f"--onnx {onnx_path}: no such file")
    lo, opt, hi = profile
    if not 1 <= lo <= opt <= hi:
        raise UsageError(f"profile {profile}: need 1 <= min <= opt <= max")
    trt = require_tensorrt()
    device = cuda_device()
    kind = graph_precision(onnx_path)
    major = trt_major(trt)
    if major >= 10 and precision != kind:
        raise UsageError(f"TensorRT {trt.__version__} builds strongly typed: {precision} needs the {precision} ONNX "
                         f"(this graph is {kind}); make it with `simplehand-deploy {precision} ...`")
    weak_sources = {"fp32": ("fp32",), "fp16": ("fp32", "fp16"), "int8": ("int8",)}[precision]
    if major < 10 and kind not in weak_sources:
        raise UsageError(f"TensorRT {trt.__version__} ({precision} by builder flag) needs the "
                         f"{' or '.join(weak_sources)} ONNX, not this {kind} graph"
                         + (" (INT8 = the Q/DQ graph from `simplehand-deploy int8`; no implicit calibration)"
                            if precision == "int8" else ""))
    inputs = current_key_inputs(onnx_path, precision, profile, workspace_mb=workspace_mb, opt_level=opt_level,
                                trt_version=str(trt.__version__), device=device)
    key = engine_key(inputs)
    plan, sidecar = plan_paths(key, out_dir)
    from filelock import FileLock

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with FileLock(str(plan) + ".lock"):
        if not force and plan.is_file() and sidecar.is_file() and _loads(plan):
            return EngineArtifact(plan, sidecar, key, True, 0.0)
        t0 = time.time()
        data, layers = _build(onnx_path, precision, profile, workspace_mb, opt_level,
                              Path(timing_cache_dir or Path(out_dir) / "timing-cache"), device)
        honoured = precision_honoured(layers, precision)
        if honoured is False:
            raise VerificationError(f"TensorRT built no {precision} layer from {onnx_path.name}: refusing to hand back "
                                    f"an engine that is {precision} in name only (GPU {device['name']} "
                                    f"SM {device['sm']}); see the engine inspector dump with --force")
        write_bytes_atomic(plan, data)
        meta = {"kind": "simplehand-trt-plan", "key": key, "precision": precision, "onnx": str(onnx_path),
                "profile": {"image": {"min": lo, "opt": opt, "max": hi}}, "key_inputs": asdict(inputs),
                "build_seconds": round(time.time() - t0, 1), "precision_verified": honoured, "layers": layers,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_json_atomic(sidecar, meta)
        return EngineArtifact(plan, sidecar, key, False, time.time() - t0)


def precision_honoured(layers: Any, precision: str) -> bool | None:
    """Did the engine inspector see any layer run in the requested precision? None when it cannot tell.

    The DETAILED dump names tensor formats per layer ("Half ...", "Int8 ..."; TRT 11 splits a
    DataType field out), so a text search over it is schema-tolerant across 8.6 -> 11.
    """
    if precision == "fp32":
        return True
    if not isinstance(layers, dict) or not layers.get("Layers"):
        return None
    if all(isinstance(layer, str) for layer in layers["Layers"]):  # names only: not a DETAILED dump
        return None
    text = json.dumps(layers["Layers"]).lower()
    needles = {"fp16": ("half", "fp16", "float16"), "int8": ("int8",)}[precision]
    return any(n in text for n in needles)


def _loads(plan: Path) -> bool:
    """A cached plan counts only if this runtime deserialises it (a failure is a cache miss)."""
    import tensorrt as trt

    try:
        runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
        return runtime.deserialize_cuda_engine(plan.read_bytes()) is not None
    except Exception:
        return False


def _network(builder: Any, major: int) -> Any:
    import tensorrt as trt

    ndcf = trt.NetworkDefinitionCreationFlag
    flags = 0
    if major < 10 and hasattr(ndcf, "EXPLICIT_BATCH"):
        flags |= 1 << int(ndcf.EXPLICIT_BATCH)
    if major >= 10 and hasattr(ndcf, "STRONGLY_TYPED"):
        flags |= 1 << int(ndcf.STRONGLY_TYPED)
    return builder.create_network(flags)


def _build(onnx_path: Path, precision: str, profile: tuple[int, int, int], workspace_mb: int,
           opt_level: int | None, cache_dir: Path, device: dict[str, str]) -> tuple[bytes, Any]:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = trt_major(trt)
    network = _network(builder, major)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise VerificationError(f"TensorRT cannot parse {onnx_path.name}: {errors[:400]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if opt_level is not None and hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = opt_level
    if hasattr(config, "profiling_verbosity"):
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if major < 10:  # weak typing: precision through flags
        if precision in ("fp16", "int8"):
            config.set_flag(_flag("FP16"))
        if precision == "int8":
            config.set_flag(_flag("INT8"))
    prof = builder.create_optimization_profile()
    lo, opt, hi = profile
    prof.set_shape("image", trt.Dims([lo, 3, 224, 224]), trt.Dims([opt, 3, 224, 224]), trt.Dims([hi, 3, 224, 224]))
    config.add_optimization_profile(prof)
    cache_file = cache_dir / f"trt{trt.__version__}-{device['name'].replace(' ', '_')}-sm{device['sm']}.cache"
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise VerificationError(f"TensorRT failed to build a {precision} engine from {onnx_path.name} (see log above)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache_file) as tmp:
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    data = bytes(plan)
    return data, _inspect(data)


def _inspect(data: bytes) -> Any:
    """Engine inspector layer dump (JSON); its schema changed in TRT 11, so it is stored as parsed."""
    import tensorrt as trt

    try:
        engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(data)
        inspector = engine.create_engine_inspector()
        if inspector is None:
            return {}
        info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        return json.loads(info)
    except Exception as exc:  # inspection is diagnostic only
        return {"error": f"{type(exc).__name__}: {exc}"}
