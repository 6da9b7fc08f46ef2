"""Build TensorRT engines from our ONNX artifacts, one code path for TensorRT 8.5/8.6 (JetPack 5) to 11.

Precision strategy forks on the TensorRT major version (docs/precision.md):
* TRT < 10: weak typing. FP16 = `BuilderFlag.FP16` on the FP32 graph; INT8 = the Q/DQ graph with
  `INT8` + `FP16` flags (explicit quantisation still needs the flag there).
* TRT >= 10: strong typing. Precision comes from the graph: the FP16 ONNX for FP16, the Q/DQ ONNX
  for INT8. TRT 11 removed the flags and calibrators altogether.
Flags and enum members are looked up by *name* (their integers were renumbered in 11). A requested
precision that cannot be honoured raises; we never hand back a silent FP32 engine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from .._deps import require_tensorrt
from ..artifact import EngineArtifact, OnnxArtifact, engine_artifact, plan_layers_path, rejected_layers_path
from ..defaults import DEFAULT_PROFILE, DEFAULT_WORKSPACE_MB, profile_text
from ..env import GPU_PROBES, require_cuda_device
from ..errors import UsageError, VerificationError
from ..fileio import write_bytes_atomic, write_json_atomic
from ..literals import PRECISIONS, Precision, Target
from .cache import current_key_inputs, engine_key, merge_timing_cache, plan_paths, timing_cache_name
from .inspect import (
    PrecisionReport,
    Verdict,
    analyse,
    expected_share,
    judge,
    onnx_int8_mac_share,
    onnx_int8_weight_share,
    onnx_macs,
)

BUFFERS = ("auto", *GPU_PROBES)  # `--buffers`: how CUDA memory and the device are reached


def parse_profile(text: str) -> tuple[int, int, int]:
    """`--profile MIN,OPT,MAX` (batch sizes of the optimisation profile); UsageError with an example."""
    try:
        lo, opt, hi = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--profile {text!r}: expected MIN,OPT,MAX batch sizes, e.g. {profile_text()}") from None
    if not 1 <= lo <= opt <= hi:
        raise UsageError(f"--profile {text!r}: need 1 <= MIN <= OPT <= MAX, e.g. {profile_text()}")
    return lo, opt, hi


@dataclass(frozen=True)
class BuildConfig:
    """`simplehand-deploy build`: one engine from one ONNX artifact; every default is the library's."""

    onnx: Path
    precision: str = "fp16"
    out: Path = Path("engines")
    profile: tuple[int, int, int] = DEFAULT_PROFILE
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    opt_level: int | None = None
    force: bool = False
    tf32: bool = True
    buffers: str = "auto"  # how the CUDA device is reached: auto | torch | cuda-python | pycuda

    @classmethod
    def from_cli(cls, *, profile: str | None = None, **options: Any) -> BuildConfig:
        """Options left at None take the defaults above; `profile` is the command line's MIN,OPT,MAX text."""
        given = {k: v for k, v in options.items() if v is not None}
        if profile is not None:
            given["profile"] = parse_profile(profile)
        return cls(**given)


def run_build(cfg: BuildConfig) -> EngineArtifact:
    """The `build` command: build (or reuse) the engine `cfg` describes (`build_engine`)."""
    return build_engine(cfg.onnx, precision=cfg.precision, profile=cfg.profile, workspace_mb=cfg.workspace_mb,
                        opt_level=cfg.opt_level, out_dir=cfg.out, force=cfg.force, tf32=cfg.tf32,
                        buffers=cfg.buffers)


def trt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def check_buffers(buffers: str) -> str:
    if buffers not in BUFFERS:
        raise UsageError(f"--buffers {buffers!r}: choose one of {', '.join(BUFFERS)}")
    return buffers


def _flag(name: str) -> Any:
    import tensorrt as trt

    flag = getattr(trt.BuilderFlag, name, None)
    if flag is None:
        raise VerificationError(f"TensorRT {trt.__version__} has no BuilderFlag.{name}: cannot build this precision")
    return flag


def build_engine(
    onnx_path: str | os.PathLike[str],
    *,
    precision: str,
    profile: tuple[int, int, int] = DEFAULT_PROFILE,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    opt_level: int | None = None,
    timing_cache_dir: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] = "engines",
    force: bool = False,
    tf32: bool = True,
    buffers: str = "auto",
) -> EngineArtifact:
    """Build (or reuse) `<out_dir>/<key>.plan` + `<key>.json` (+ `<key>.layers.json`) for one ONNX artifact.

    The timing cache (default `<out_dir>/timing-cache/`) is one file per TensorRT build and device identity,
    locked and merged on its own (builds with different keys keep each other's entries); the engine key
    never depends on it. The built engine's compute layers must show the requested precision (the
    `check-engine` rules; for INT8 at least the artifact's own INT8 share minus a margin), else the build
    fails and no plan is written. `tf32=False` clears TensorRT's default TF32 (recorded in key and sidecar).
    `buffers` names how the CUDA device is probed (`env.cuda_device`); it is not part of the key.

    The steps: check the request, check the graph suits this TensorRT, key it, and under the plan's lock
    reuse a cached engine or build, verify and record a new one.
    """
    onnx_path = check_request(onnx_path, precision, profile)
    check_buffers(buffers)
    trt = require_tensorrt()
    device = require_cuda_device(buffers)
    from ..ort import graph_kind

    trt_version = str(trt.__version__)
    kind = graph_kind(onnx_path)
    check_source_graph(precision, kind, trt_version, name=onnx_path.name,
                       int8_target=int8_target_of(onnx_path)[0] if kind == "int8" else None)
    preview = preview_features(trt_major(trt), getattr(getattr(trt, "PreviewFeature", None), "__members__", {}))
    inputs = current_key_inputs(onnx_path, precision, profile, workspace_mb=workspace_mb, opt_level=opt_level,
                                trt_version=trt_version, device=device, tf32=tf32, preview=preview)
    key = engine_key(inputs)
    plan, sidecar = plan_paths(key, out_dir)
    from filelock import FileLock

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with FileLock(str(plan) + ".lock"):
        cached = None if force else _cached_engine(plan, sidecar)
        if cached is not None:
            return cached
        t0 = time.time()
        island = fp32_island(onnx_path) if needs_fp32_pins(precision, trt_major(trt)) else set()
        data, layers, engine_mem = _build(onnx_path, precision, profile, workspace_mb, opt_level,
                                          Path(timing_cache_dir or Path(out_dir) / "timing-cache"), device,
                                          tf32=tf32, island=island, preview=preview)
        verdict, need = verify_built(layers, precision, onnx_path)
        _enforce_verdict(verdict, layers, plan, onnx_path, precision,
                         context=f"GPU {device['name']} SM {device['sm']}, TensorRT {trt_version}")
        return _write_engine(plan, data, layers, key=key, precision=cast(Precision, precision), onnx_path=onnx_path,
                             profile=profile, key_inputs=asdict(inputs), started=t0, tf32=tf32, verdict=verdict,
                             need=need, island_size=len(island), engine_mem=engine_mem)


# -- the steps of build_engine, each one job ------------------------------------------------------------------------

def check_request(onnx_path: str | os.PathLike[str], precision: str, profile: tuple[int, int, int]) -> Path:
    """The request itself, before TensorRT is looked for: a known precision, an existing ONNX file, an ordered
    profile. Returns the ONNX path; UsageError names the option to fix."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    path = Path(onnx_path)
    if not path.is_file():
        raise UsageError(f"--onnx {path}: no such file")
    lo, opt, hi = profile
    if not 1 <= lo <= opt <= hi:
        raise UsageError(f"profile {profile}: need 1 <= min <= opt <= max")
    return path


WEAK_SOURCES: dict[str, tuple[str, ...]] = {"fp32": ("fp32",), "fp16": ("fp32", "fp16"), "int8": ("int8",)}
"""TensorRT < 10 (precision by builder flag): which ONNX graph kinds each precision builds from."""


def check_source_graph(precision: str, kind: str, trt_version: str, *, int8_target: str | None = None,
                       name: str = "this graph") -> None:
    """Does this graph (`ort.graph_kind`: fp32, fp16 or int8) give `precision` on this TensorRT? Strongly typed
    (>= 10): only the graph of that precision; weak typing (< 10): the kinds in `WEAK_SOURCES`. An INT8 graph
    must also be made for this TensorRT (`int8_target`, see `int8_target_of`). UsageError says which graph to
    make."""
    if int(trt_version.split(".")[0]) >= 10:
        if precision != kind:
            raise UsageError(f"TensorRT {trt_version} builds strongly typed: {precision} needs the {precision} ONNX "
                             f"(this graph is {kind}); make it with `simplehand-deploy {precision} ...`")
    else:
        sources = WEAK_SOURCES[precision]
        if kind not in sources:
            raise UsageError(f"TensorRT {trt_version} ({precision} by builder flag) needs the "
                             f"{' or '.join(sources)} ONNX, not this {kind} graph"
                             + (" (INT8 = the Q/DQ graph from `simplehand-deploy int8`; no implicit calibration)"
                                if precision == "int8" else ""))
    if precision == "int8" and int8_target is not None:
        check_int8_target(int8_target, trt_version, name)


def int8_target_for(trt_version: str) -> Target:
    """The INT8 artifact a TensorRT version builds as intended: trt10 (opset 19, FP16 scales: an FP16
    remainder) from 10 on, trt8 (opset 17, FP32 scales) below."""
    return "trt10" if int(trt_version.split(".")[0]) >= 10 else "trt8"


_TARGET_WHAT = {"trt10": "opset 19, FP16 scales: for TensorRT >= 10",
                "trt8": "opset 17 (16 from an opset-16 export), FP32 scales: for TensorRT 8.5 to 9.x"}


def check_int8_target(target: str, trt_version: str, name: str = "this graph") -> None:
    """Refuse an INT8 artifact made for another TensorRT: a trt8 graph (FP32 scales) on >= 10 builds an
    int8+fp32 engine that passes the precision check; a trt10 graph (opset 19) fails deep in 8.x's parser."""
    want = int8_target_for(trt_version)
    if target != want:
        raise UsageError(f"{name} is the INT8 artifact for {target} ({_TARGET_WHAT.get(target, '?')}); TensorRT "
                         f"{trt_version} needs the {want} one: use the *-int8-{want}.onnx that `make engine` writes, "
                         f"or `simplehand-deploy int8 --target {want} ...`")


def infer_int8_target(opset: int, scale_types: set[str]) -> Target:
    """A Q/DQ graph's target from the graph alone (no sidecar): FP16 DequantizeLinear scales or an opset
    above 17 (8.x parsers stop at 17) mean trt10; FP32 scales at opset <= 17 mean trt8."""
    return "trt10" if opset > 17 or "float16" in scale_types else "trt8"


def int8_target_of(onnx_path: Path) -> tuple[Target, str]:
    """(target, how it is known) of a Q/DQ graph: the sidecar's `int8_target`, else `infer_int8_target`."""
    art = OnnxArtifact.read_or_none(onnx_path)
    if art is not None and art.int8_target is not None:
        return art.int8_target, "sidecar"
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    inits = {t.name: t.data_type for t in model.graph.initializer}
    consts = {o: a.t.data_type for n in model.graph.node if n.op_type == "Constant"
              for a in n.attribute if a.name == "value" for o in n.output}
    types = {**inits, **consts}
    scales = {onnx.helper.tensor_dtype_to_np_dtype(types[n.input[1]]).name for n in model.graph.node
              if n.op_type == "DequantizeLinear" and len(n.input) > 1 and n.input[1] in types}
    return infer_int8_target(opset, scales), f"opset {opset}, {'/'.join(sorted(scales)) or 'no'} scales"


def needs_fp32_pins(precision: str, major: int) -> bool:
    """Weak typing (< 10) with FP16/INT8 flags would run the FP32 island in reduced precision unless pinned."""
    return major < 10 and precision in ("fp16", "int8")


def _cached_engine(plan: Path, sidecar: Path) -> EngineArtifact | None:
    """The engine already built under this key, if its plan and sidecar exist and this runtime loads the plan."""
    if not (plan.is_file() and sidecar.is_file() and _loads(plan)):
        return None
    cached = EngineArtifact.read_or_none(plan)
    return None if cached is None else dataclasses.replace(cached, cached=True, seconds=0.0)


def required_share(onnx_path: Path, precision: str, *, by_weights: bool = False) -> float:
    """The share of compute layers the built engine must run in `precision`. For INT8: the graph's own INT8
    MAC share (read from the graph, else its sidecar) minus the margin; `by_weights` (engine layers weighed
    by Weights.Count): the lower of that and the graph's INT8 weight-count share, so both sides share a unit."""
    if precision != "int8":
        return expected_share(precision, None)
    share = _quietly(onnx_int8_mac_share, onnx_path)
    if share is None:
        source = OnnxArtifact.read_or_none(onnx_path)
        share = source.int8_share if source is not None else None
    return expected_share(precision, share, _quietly(onnx_int8_weight_share, onnx_path) if by_weights else None)


def _quietly(read: Any, onnx_path: Path) -> Any:
    try:
        return read(onnx_path)
    except UsageError:
        return None


def preview_features(major: int, available: Iterable[str]) -> tuple[str, ...]:
    """Build-time preview features: on TensorRT < 10, `PROFILE_SHARING_0806` where it exists (8.6, 9.x), so
    every execution context (one per batch size) can select profile 0; 8.5 lacks it (the runtime falls back
    to one re-bound context), and from 10 every context gets profile 0 anyway."""
    return ("PROFILE_SHARING_0806",) if major < 10 and "PROFILE_SHARING_0806" in set(available) else ()


def _enforce_verdict(verdict: Verdict, layers: Any, plan: Path, onnx_path: Path, precision: str, *,
                     context: str) -> None:
    """A failed verdict keeps the layer dump beside the (unwritten) plan and raises; an unverifiable one warns."""
    if verdict.share is not None and not verdict.ok:
        rejected = rejected_layers_path(plan)
        write_json_atomic(rejected, layers)
        raise VerificationError(f"TensorRT built {onnx_path.name} as {precision} in name only: {verdict.message} "
                                f"({context}); layer dump: {rejected}")
    if verdict.share is None:
        print(f"WARNING: {plan.name}: {precision} precision UNVERIFIED: {verdict.message}", file=sys.stderr)


def _write_engine(plan: Path, data: bytes, layers: Any, *, key: str, precision: Precision, onnx_path: Path,
                  profile: tuple[int, int, int], key_inputs: dict[str, Any], started: float, tf32: bool,
                  verdict: Verdict, need: float, island_size: int, engine_mem: float | None) -> EngineArtifact:
    """Layer dump, plan, then the sidecar (each atomically; a plan counts only with its sidecar). The build time
    runs from `started` to the plan on disk."""
    layers_file = plan_layers_path(plan)
    report = _report_or_none(layers)
    write_json_atomic(layers_file, layers)
    write_bytes_atomic(plan, data)
    seconds = time.time() - started
    lo, opt, hi = profile
    art = engine_artifact(
        plan, key=key, precision=precision, onnx=str(onnx_path), profile=(lo, opt, hi),
        key_inputs=key_inputs, build_seconds=round(seconds, 1), tf32=tf32,
        precision_verified=verdict.ok if verdict.share is not None else None,
        precision_check=verdict.message, precision_share_required=round(need, 4),
        precision_mix=report.mix if report else None, precision_summary=report.summary() if report else None,
        fp32_island_layers=island_size, engine_device_memory_mb=engine_mem, layers_file=layers_file.name)
    return dataclasses.replace(art.write(), cached=False, seconds=seconds)


def _report_or_none(layers: Any) -> PrecisionReport | None:
    try:
        return analyse(layers)
    except UsageError:
        return None


def verify_precision(layers: Any, precision: str, min_share: float, macs: dict[str, int] | None = None) -> Verdict:
    """The `check-engine` verdict over the builder's own inspector dump (unusable dump = unverifiable);
    `macs`: weigh layers by the ONNX graph's MACs (`check-engine --onnx`)."""
    report = _report_or_none(layers)
    if report is None:
        why = layers.get("error") if isinstance(layers, dict) and layers.get("error") else "no \"Layers\" list"
        return Verdict(False, None, f"the engine inspector gave nothing usable ({why})")
    return judge(report if macs is None else analyse(layers, macs=macs), precision, min_share)


def verify_built(layers: Any, precision: str, onnx_path: Path) -> tuple[Verdict, float]:
    """The builder's check, as `check-engine --onnx <its ONNX>`: layers weighted by the graph's MACs against
    the graph's own MAC share. Where no compute layer matches a node name (a graph without node names),
    Weights.Count on both sides instead, said so. (verdict, the share required)."""
    macs = _quietly(onnx_macs, onnx_path)
    report = _report_or_none(layers)
    if macs is not None and report is not None and analyse(layers, macs=macs).total_weight:
        need = required_share(onnx_path, precision)
        return verify_precision(layers, precision, need, macs), need
    need = required_share(onnx_path, precision, by_weights=True)
    verdict = verify_precision(layers, precision, need)
    if macs is not None and report is not None:
        verdict = Verdict(verdict.ok, verdict.share, verdict.message + "; weighted by Weights.Count: no compute "
                                                                       "layer matches an ONNX node name")
    return verdict, need


def fp32_island(onnx_path: Path) -> set[str]:
    """The ONNX node names the FP16 conversion keeps FP32 (`precision.fp16.fp32_island`, the one definition):
    on weak-typed TensorRT (< 10) the builder flags would run them in FP16 unless pinned."""
    import onnx

    from ..precision.fp16 import fp32_island as island_of

    return island_of(onnx.load(str(onnx_path), load_external_data=False).graph)


def island_layers(layer_names: list[str], island: set[str]) -> list[int]:
    """Indices of network layers that come from island nodes (the ONNX parser names a layer after its node,
    extra layers of one node as `<node>_<suffix>`)."""
    out = []
    for i, name in enumerate(layer_names):
        if name in island or any(name.startswith(node + "_") for node in island):
            out.append(i)
    return out


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
           opt_level: int | None, cache_dir: Path, device: dict[str, Any], *, tf32: bool = True,
           island: set[str] | None = None, preview: Iterable[str] = ()) -> tuple[bytes, Any, float | None]:
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
    if not tf32:
        config.clear_flag(_flag("TF32"))
    for feature in preview:  # (< 10) PROFILE_SHARING_0806: one execution context per batch size at run time
        config.set_preview_feature(getattr(trt.PreviewFeature, feature), True)
    if major < 10:  # weak typing: precision through flags
        if precision in ("fp16", "int8"):
            config.set_flag(_flag("FP16"))
        if precision == "int8":
            config.set_flag(_flag("INT8"))
        if island:
            _pin_fp32(network, island)
            config.set_flag(_flag("OBEY_PRECISION_CONSTRAINTS"))
    prof = builder.create_optimization_profile()
    lo, opt, hi = profile
    prof.set_shape("image", trt.Dims([lo, 3, 224, 224]), trt.Dims([opt, 3, 224, 224]), trt.Dims([hi, 3, 224, 224]))
    config.add_optimization_profile(prof)
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache_file = cache_dir / timing_cache_name(str(trt.__version__), device)
    from filelock import FileLock

    cache_lock = FileLock(str(cache_file) + ".lock")  # the cache file's own lock, not the plan's
    with cache_lock:
        start = cache_file.read_bytes() if cache_file.is_file() else b""
    _attach_timing_cache(config, start, cache_file)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise VerificationError(f"TensorRT failed to build a {precision} engine from {onnx_path.name} (see log above)")
    built = config.get_timing_cache()
    built_bytes = bytes(built.serialize()) if built is not None else None
    with cache_lock:
        on_disk = cache_file.read_bytes() if cache_file.is_file() else None
        merged = merge_timing_cache(on_disk, built_bytes, config.create_timing_cache,
                                    lambda into, other: into.combine(other, True))
        if merged:
            write_bytes_atomic(cache_file, merged)
    data = bytes(plan)
    layers, engine_mem = _inspect(data)
    return data, layers, engine_mem


def _attach_timing_cache(config: Any, data: bytes, cache_file: Path) -> None:
    """Attach the shared cache; a cache TensorRT rejects (corrupt, other device) falls back to an empty one."""
    for attempt in (data, b""):
        try:
            cache = config.create_timing_cache(attempt)
            if cache is not None and config.set_timing_cache(cache, False):
                return
        except Exception:  # a corrupt file must not fail the build
            pass
        if attempt:
            print(f"note: timing cache {cache_file.name} rejected by TensorRT; building with an empty one",
                  file=sys.stderr)
    print("note: building without a timing cache (TensorRT accepted none)", file=sys.stderr)


def _pin_fp32(network: Any, island: set[str]) -> None:
    """TRT < 10 (weak typing): keep the island's float layers FP32 (layer precision + output types)."""
    import tensorrt as trt

    floats = (trt.float32, trt.float16)
    names = [network.get_layer(i).name for i in range(network.num_layers)]
    for i in island_layers(names, island):
        layer = network.get_layer(i)
        outs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not outs or any(o.dtype not in floats for o in outs):
            continue  # shape / index layers: no float precision to pin
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)


def engine_device_memory_bytes(engine: Any) -> int | None:
    """Device memory one execution context needs: `device_memory_size_v2` (>= 10), `device_memory_size` before."""
    for attr in ("device_memory_size_v2", "device_memory_size"):
        if hasattr(engine, attr):
            return int(getattr(engine, attr))
    return None


def _inspect(data: bytes) -> tuple[Any, float | None]:
    """Engine inspector layer dump (JSON, stored as parsed: its schema changed in TRT 11) + engine memory (MB)."""
    import tensorrt as trt

    try:
        engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(data)
        mem = engine_device_memory_bytes(engine)
        inspector = engine.create_engine_inspector()
        if inspector is None:
            return {"error": "no engine inspector"}, None if mem is None else mem / 2**20
        info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        return json.loads(info), None if mem is None else mem / 2**20
    except Exception as exc:  # inspection is diagnostic: an unusable dump makes the build unverified, loudly
        return {"error": f"{type(exc).__name__}: {exc}"}, None
