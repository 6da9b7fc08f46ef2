"""Triton Inference Server model repository from a TensorRT plan or an ONNX graph.

Teams that already serve with Triton want the engine dropped into their repository with a correct
`config.pbtxt`: dims without the batch axis, the batch limit the engine was actually built for
(a larger `max_batch_size` than the optimisation profile makes Triton send batches the engine
rejects), and dynamic batching on. The text is written by hand (no protobuf needed at runtime) and
can be checked against Triton's own model-config schema with `validate_config` when `tritonclient`
is installed (the `dev` extra).
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .artifact import EngineArtifact, plan_sidecar_path
from .config import IMAGE_SIZE, NUM_JOINTS, NUM_VERTICES
from .errors import UsageError
from .fileio import atomic_path

PLATFORMS = {"plan": "tensorrt_plan", "onnx": "onnxruntime_onnx"}
DEFAULT_ONNX_MAX_BATCH = 32
_ONNX_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 11: "TYPE_FP64", 16: "TYPE_BF16"}
_EXPECTED = {"image": (3, IMAGE_SIZE, IMAGE_SIZE), "uv": (NUM_JOINTS, 2), "vertices": (NUM_VERTICES, 3)}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dims: tuple[int, ...]  # without the batch axis
    data_type: str = "TYPE_FP32"


@dataclass(frozen=True)
class ModelSpec:
    """What Triton needs to know about the model file."""

    kind: str  # "plan" | "onnx"
    max_batch: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def _sidecar_max_batch(plan: Path) -> int | None:
    """The profile's max batch recorded beside a plan (None without a sidecar; UsageError for a bad one)."""
    return EngineArtifact.read(plan).max_batch if EngineArtifact.has_sidecar(plan) else None


def inspect_onnx(path: Path) -> ModelSpec:
    """Named I/O, dtypes and batch handling of an ONNX graph (dynamic batch -> any max is allowed)."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:
        raise UsageError(f"--onnx {path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    init_names = {i.name for i in graph.initializer}
    static_batch: set[int] = set()

    def spec(values: Any) -> tuple[TensorSpec, ...]:
        out = []
        for v in values:
            if v.name in init_names:
                continue
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            if not dims:
                raise UsageError(f"--onnx {path}: tensor {v.name!r} has no shape; export with a batch axis")
            if dims[0] > 0:
                static_batch.add(dims[0])
            dtype = _ONNX_TYPES.get(t.elem_type)
            if dtype is None:
                raise UsageError(f"--onnx {path}: tensor {v.name!r} has ONNX element type {t.elem_type}, "
                                 "which this exporter does not map to Triton")
            out.append(TensorSpec(v.name, tuple(dims[1:]), dtype))
        return tuple(out)

    inputs, outputs = spec(graph.input), spec(graph.output)
    if static_batch:
        batch = max(static_batch)
        if batch != 1:
            raise UsageError(f"--onnx {path}: batch axis is fixed at {batch}; Triton batches need batch 1 or a "
                             "dynamic batch axis: re-export with `simplehand-deploy export` (dynamic batch)")
        return ModelSpec("onnx", 1, inputs, outputs)
    return ModelSpec("onnx", DEFAULT_ONNX_MAX_BATCH, inputs, outputs)


def _max_batch_from_plan(path: Path) -> tuple[int | None, tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Read the profile and I/O from the plan itself when TensorRT is really present (never faked)."""
    from ._deps import tensorrt_or_none

    trt = tensorrt_or_none()
    if trt is None:
        return None, (), ()
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise UsageError(f"--engine {path}: TensorRT {trt.__version__} cannot deserialize it (built by another "
                         "TensorRT version or GPU?); rebuild with `simplehand-deploy build`")
    ins, outs, max_batch = [], [], None
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        shape = tuple(engine.get_tensor_shape(name))
        dtype = "TYPE_FP16" if str(engine.get_tensor_dtype(name)).endswith("HALF") else "TYPE_FP32"
        spec = TensorSpec(name, tuple(int(d) for d in shape[1:]), dtype)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            ins.append(spec)
            dynamic = shape[0] == -1
            max_batch = int(engine.get_tensor_profile_shape(name, 0)[2][0]) if dynamic else int(shape[0])
        else:
            outs.append(spec)
    return max_batch, tuple(ins), tuple(outs)


def inspect_plan(path: Path) -> ModelSpec:
    """Batch limit from the plan's profile (TensorRT present) or its sidecar; I/O names per our contract."""
    max_batch, ins, outs = _max_batch_from_plan(path)
    if max_batch is None:
        max_batch = _sidecar_max_batch(path)
    if not ins:
        ins = (TensorSpec("image", _EXPECTED["image"]),)
        outs = (TensorSpec("uv", _EXPECTED["uv"]), TensorSpec("vertices", _EXPECTED["vertices"]))
    return ModelSpec("plan", max_batch or 0, ins, outs)


def _dims(dims: tuple[int, ...]) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def render_config(name: str, spec: ModelSpec) -> str:
    """config.pbtxt text: platform, max_batch_size, named I/O without the batch axis, dynamic batching."""
    lines = [f'name: "{name}"', f'platform: "{PLATFORMS[spec.kind]}"', f"max_batch_size: {spec.max_batch}"]
    for section, tensors in (("input", spec.inputs), ("output", spec.outputs)):
        lines.append(f"{section} [")
        body = [f'  {{\n    name: "{t.name}"\n    data_type: {t.data_type}\n    dims: {_dims(t.dims)}\n  }}'
                for t in tensors]
        lines.append(",\n".join(body))
        lines.append("]")
    preferred = sorted({b for b in (1, 2, 4, 8, 16, 32, 64) if b <= spec.max_batch} | {spec.max_batch})
    lines.append("dynamic_batching {")
    lines.append(f"  preferred_batch_size: {_dims(tuple(preferred))}")
    lines.append("  max_queue_delay_microseconds: 100")
    lines.append("}")
    if spec.kind == "plan":
        lines.append("instance_group [\n  {\n    kind: KIND_GPU\n    count: 1\n  }\n]")
    return "\n".join(lines) + "\n"


def _check_io(spec: ModelSpec, source: Path) -> None:
    """The served model must keep the toolkit's contract, or clients of the repository break silently."""
    got = {t.name: t.dims for t in (*spec.inputs, *spec.outputs)}
    for name, dims in _EXPECTED.items():
        have = got.get(name)
        if have is not None and all(d > 0 for d in have) and have != dims:
            raise UsageError(f"{source}: tensor {name!r} has dims {list(have)}, expected {list(dims)} "
                             "(batch axis excluded); is this a SimpleHand artifact?")
    if "image" not in got:
        raise UsageError(f"{source}: no input named 'image'; export with `simplehand-deploy export`")


def export_triton(
    out: Path,
    *,
    engine: Path | None = None,
    onnx: Path | None = None,
    name: str = "simplehand",
    max_batch: int | None = None,
) -> Path:
    """Write `<out>/<name>/config.pbtxt` and `<out>/<name>/1/model.plan|onnx`; returns the model folder.

    Args:
        out: the model repository root (created; other models in it are left alone).
        engine: a TensorRT plan (platform tensorrt_plan), or
        onnx: an ONNX graph (platform onnxruntime_onnx); exactly one of the two.
        name: the model name (folder and `name:` field).
        max_batch: override; must not exceed the engine profile's max batch.
    """
    if (engine is None) == (onnx is None):
        raise UsageError("give exactly one of --engine PLAN or --onnx MODEL")
    source = Path(engine or onnx)  # type: ignore[arg-type]
    flag = "--engine" if engine else "--onnx"
    if not source.is_file():
        raise UsageError(f"{flag} {source}: file not found")
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise UsageError(f"--name {name!r}: use letters, digits, '-', '_' or '.'")
    spec = inspect_plan(source) if engine else inspect_onnx(source)
    _check_io(spec, source)
    if max_batch is not None:
        if max_batch < 1:
            raise UsageError(f"--max-batch {max_batch}: must be >= 1")
        if spec.max_batch and max_batch > spec.max_batch and (spec.kind == "plan" or spec.max_batch == 1):
            raise UsageError(f"--max-batch {max_batch}: the model only accepts batches up to {spec.max_batch}")
        spec = ModelSpec(spec.kind, max_batch, spec.inputs, spec.outputs)
    if spec.max_batch < 1:
        raise UsageError(f"--engine {source}: max batch unknown (no TensorRT here and no profile in the sidecar "
                         f"{plan_sidecar_path(source).name}); pass --max-batch N with the profile's max batch")
    model_dir = Path(out) / name
    with atomic_path(model_dir, is_dir=True) as tmp:
        tmp.chmod(0o755)  # mkdtemp makes 0700; a Triton container running as another user must read it
        (tmp / "1").mkdir()
        shutil.copyfile(source, tmp / "1" / f"model.{spec.kind}")
        (tmp / "config.pbtxt").write_text(render_config(name, spec))
    return model_dir


@functools.cache
def model_config_pb2() -> ModuleType:
    """Triton's model-config protobuf module from `tritonclient`, loaded without its gRPC client.

    `tritonclient.grpc/__init__` imports grpcio (and its extra pins protobuf < 7); the generated
    `model_config_pb2.py` itself needs only protobuf, so it is loaded from its file directly.
    """
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("validating config.pbtxt needs tritonclient: `pip install tritonclient` "
                         "(or `pip install -e '.[dev]'`)")
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    if not path.is_file():
        raise UsageError(f"tritonclient at {path.parent.parent} has no grpc/model_config_pb2.py; reinstall it")
    mod_spec = importlib.util.spec_from_file_location("simplehand_triton_model_config_pb2", path)
    assert mod_spec is not None and mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def validate_config(text: str) -> Any:
    """Parse config.pbtxt text with Triton's ModelConfig schema; returns the message, UsageError if invalid."""
    from google.protobuf import text_format

    pb2 = model_config_pb2()
    try:
        return text_format.Parse(text, pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise UsageError(f"config.pbtxt does not parse as Triton ModelConfig: {exc}") from None


@dataclass(frozen=True)
class TritonConfig:
    """`simplehand-deploy triton`: which artifact goes into which repository under which name."""

    out: Path
    engine: Path | None = None
    onnx: Path | None = None
    name: str = "simplehand"
    max_batch: int | None = None  # None: the engine profile's max (from TensorRT or the sidecar)
    check: bool = True  # parse config.pbtxt with Triton's schema when tritonclient is installed

    @classmethod
    def from_cli(cls, **options: Any) -> TritonConfig:
        return cls(**{k: v for k, v in options.items() if v is not None})


@dataclass(frozen=True)
class TritonModel:
    """What `write_repository` wrote: the model folder, and whether Triton's schema checked its config."""

    model_dir: Path
    checked: bool


def write_repository(cfg: TritonConfig) -> TritonModel:
    """The `triton` command: write the model (`export_triton`), then check its config when asked and possible."""
    model_dir = export_triton(cfg.out, engine=cfg.engine, onnx=cfg.onnx, name=cfg.name, max_batch=cfg.max_batch)
    return TritonModel(model_dir, cfg.check and validate_repository(model_dir))


def validate_repository(model_dir: Path) -> bool:
    """Check `<model_dir>/config.pbtxt` against Triton's schema when tritonclient is installed (False: it is not,
    nothing checked); UsageError when the text does not parse."""
    if importlib.util.find_spec("tritonclient") is None:
        return False
    validate_config((model_dir / "config.pbtxt").read_text())
    return True
