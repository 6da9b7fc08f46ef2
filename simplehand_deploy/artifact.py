"""Artifacts as values: an ONNX graph or a TensorRT plan, and the JSON sidecar written beside it.

This module is the only one that knows where a sidecar lives (`x.onnx` -> `x.json`, `<key>.plan` ->
`<key>.json`, `<key>.layers.json`) and how it is spelled. Everyone else reads an `OnnxArtifact` or an
`EngineArtifact` (frozen values with typed recipes), and every producer (export, fp16, int8 with either
quantizer, the engine builder) returns the value it wrote.

Compatibility: the typed fields carry the JSON keys' own names; every key the types do not know
(older or newer writers, informational fields) is kept verbatim in `extra` and written back, so a
sidecar read and written again holds the same content.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

from .errors import UsageError
from .fileio import utc_now, write_json_atomic
from .literals import PRECISIONS, TARGETS, Precision, Target

R = TypeVar("R", bound="_Record")


# Paths ------------------------------------------------------------------------------------------------------


def onnx_sidecar_path(onnx_path: str | os.PathLike[str]) -> Path:
    """`x.onnx` -> `x.json` (any other name: `name.json` appended)."""
    p = Path(onnx_path)
    return p.with_suffix(".json") if p.suffix == ".onnx" else Path(f"{p}.json")


def plan_sidecar_path(plan: str | os.PathLike[str]) -> Path:
    """`<key>.plan` -> `<key>.json`."""
    return Path(plan).with_suffix(".json")


def plan_layers_path(plan: str | os.PathLike[str]) -> Path:
    """The builder's engine-inspector dump beside a plan: `<key>.layers.json`."""
    return Path(plan).with_suffix(".layers.json")


def rejected_layers_path(plan: str | os.PathLike[str]) -> Path:
    """The inspector dump of an engine the builder refused: `<key>.rejected.layers.json`."""
    return Path(plan).with_suffix(".rejected.layers.json")


# Records ----------------------------------------------------------------------------------------------------


def _extra() -> Any:
    return field(default_factory=dict, repr=False)


def _local(default: Any) -> Any:
    """A field of the value that is not part of the sidecar (where the file is, what this run did)."""
    return field(default=default, compare=False, metadata={"local": True})


class _Record:
    """JSON object <-> frozen dataclass: typed fields by their JSON names, unknown keys kept in `extra`.

    Every typed field defaults to None = absent from the JSON, so reading and writing again gives the
    same object (a precision recipe feeds the TensorRT engine key: it must not gain keys on the way)."""

    _nested: ClassVar[dict[str, type[_Record]]] = {}
    _tuples: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def _json_fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cast(Any, cls)) if f.name != "extra" and not f.metadata.get("local")]

    @classmethod
    def from_json(cls: type[R], doc: Mapping[str, Any], where: str, **local: Any) -> R:
        names = set(cls._json_fields())
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in doc.items():
            if key not in names or value is None:
                extra[key] = value  # unknown keys and explicit nulls are written back as they were
                continue
            if key in cls._nested:
                if not isinstance(value, Mapping):
                    raise UsageError(f"{where}: field {key!r} is {type(value).__name__}, expected an object; "
                                     "rebuild the artifact")
                value = cls._nested[key].from_json(value, f"{where} [{key}]")
            elif key in cls._tuples:
                if not isinstance(value, list | tuple):
                    raise UsageError(f"{where}: field {key!r} is {type(value).__name__}, expected a list; "
                                     "rebuild the artifact")
                value = tuple(value)
            kwargs[key] = value
        try:
            made = cls(**kwargs, **local, extra=extra)  # type: ignore[call-arg]
        except TypeError as exc:  # a required field absent
            raise UsageError(f"{where}: {exc}; rebuild the artifact") from None
        made._check(where)
        return made

    def _check(self, where: str) -> None:
        """Value checks of the typed fields (UsageError naming the sidecar and the field)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(cast(Any, self).extra)
        for name in self._json_fields():
            value = getattr(self, name)
            if value is None:
                continue
            out[name] = value.to_json() if isinstance(value, _Record) else list(value) if isinstance(value, tuple) \
                else value
        return out


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Fp16Recipe(_Record):
    """How the FP16 graph was made: op types and node names kept FP32, float32 I/O."""

    fp32_op_types: tuple[str, ...] | None = None
    fp32_nodes: tuple[str, ...] | None = None
    io: str | None = None
    extra: Mapping[str, Any] = _extra()

    _tuples: ClassVar[frozenset[str]] = frozenset({"fp32_op_types", "fp32_nodes"})


@dataclass(frozen=True)
class SensitivityRepair(_Record):
    """What `int8 --max-drift-mm` did: drift before and after, the layer groups it kept float."""

    budget_mm: float | None = None
    drift_all_quantised_mm: float | None = None
    final_drift_mm: float | None = None
    excluded_groups: tuple[int, ...] | None = None
    excluded_nodes: tuple[str, ...] | None = None
    met: bool | None = None
    layers_int8: int | None = None
    layers_weighted: int | None = None
    cpu_ms_fp32: float | None = None
    cpu_ms_all_int8: float | None = None
    cpu_ms_repaired: float | None = None
    group_sensitivity_mm: tuple[Any, ...] | None = None
    checked_on: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = _extra()

    _tuples: ClassVar[frozenset[str]] = frozenset({"excluded_groups", "excluded_nodes", "group_sensitivity_mm"})

    @property
    def checked_on_crops(self) -> int | None:
        """How many crops the budget was checked on (held out from calibration); None for older sidecars."""
        crops = (self.checked_on or {}).get("crops")
        return int(crops) if isinstance(crops, int) else None


@dataclass(frozen=True)
class Int8Recipe(_Record):
    """How the Q/DQ graph was made: quantiser, calibration method, placement, target, and what it gave."""

    quantizer: str | None = None  # as recorded: "onnxruntime.quantize_static" | "modelopt.onnx.quantization"
    method: str | None = None
    placement: str | None = None  # dense | all | modelopt
    target: str | None = None
    int8_mac_share: float | None = None
    excluded_nodes: tuple[str, ...] | None = None
    sensitivity_repair: SensitivityRepair | None = None
    calibration: Mapping[str, Any] | None = None
    # ModelOpt's own fields
    modelopt_method: str | None = None
    high_precision_dtype: str | None = None
    qdq_nodes: int | None = None
    versions: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = _extra()

    _nested: ClassVar[dict[str, type[_Record]]] = {"sensitivity_repair": SensitivityRepair}
    _tuples: ClassVar[frozenset[str]] = frozenset({"excluded_nodes"})

    def _check(self, where: str) -> None:
        share = self.int8_mac_share
        if share is not None and (_number(share) is None or not 0 <= float(share) <= 1):
            raise UsageError(f"{where}: field 'int8_mac_share' is {share!r}, expected a number in [0, 1]; "
                             "rebuild the artifact")

    @property
    def is_modelopt(self) -> bool:
        return str(self.quantizer or "").startswith("modelopt")

    def describe(self) -> str:
        """One line: what this INT8 graph is (printed by `int8` and the benchmarks)."""
        share = self.int8_mac_share
        tail = f", {share:.1%} of weighted-layer MACs in INT8" if share is not None else ""
        if self.is_modelopt:
            version = (self.versions or {}).get("nvidia-modelopt", "?")
            return (f"ModelOpt {version} {self.modelopt_method}, {self.high_precision_dtype} remainder, "
                    f"{self.qdq_nodes} Q/DQ nodes{tail}")
        target = f"target {self.target}, " if self.target else ""
        return f"{target}placement {self.placement}{tail}"


def _load_json(side: Path, what: str) -> dict[str, Any]:
    """Parse one sidecar; UsageError (one line, naming the file and the fix) when missing or unreadable."""
    try:
        text = side.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{side}: no sidecar beside the {what}; make the {what} with simplehand-deploy "
                         "(it writes the sidecar) or pass the file it wrote") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{side}: cannot read the sidecar ({type(exc).__name__}); rebuild the {what}") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{side}: sidecar is not valid JSON ({str(exc).splitlines()[0][:80]}); rebuild the "
                         f"{what} or remove it") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{side}: sidecar holds {type(doc).__name__}, expected a JSON object; rebuild the {what}")
    return doc


A = TypeVar("A", "OnnxArtifact", "EngineArtifact")


def _written(art: A) -> A:
    """Write `art`'s sidecar; the value returned is what reading it gives (JSON types: lists, not tuples)."""
    doc = json.loads(json.dumps(art.to_json(), default=str))
    write_json_atomic(art.sidecar, doc)
    local = {f.name: getattr(art, f.name) for f in dataclasses.fields(art) if f.metadata.get("local")}
    return type(art).from_json(doc, str(art.sidecar), **local)


def _check_precision(value: Any, where: str) -> None:
    if value is not None and value not in PRECISIONS:
        raise UsageError(f"{where}: field 'precision' is {value!r}, expected one of {', '.join(PRECISIONS)}; "
                         "rebuild the artifact")


@dataclass(frozen=True)
class OnnxArtifact(_Record):
    """An ONNX graph written by export / fp16 / int8, with what its sidecar records."""

    path: Path = field(metadata={"local": True})
    precision: Precision | None = None
    artifact_format: int | None = None
    config: str | None = None
    weights_short: str | None = None
    onnx_sha256: str | None = None
    source_onnx: str | None = None
    source_sha256: str | None = None
    opset: int | None = None
    int8_target: Target | None = None
    fp16: Fp16Recipe | None = None
    int8: Int8Recipe | None = None
    created: str | None = None
    extra: Mapping[str, Any] = _extra()

    _nested: ClassVar[dict[str, type[_Record]]] = {"fp16": Fp16Recipe, "int8": Int8Recipe}

    def _check(self, where: str) -> None:
        _check_precision(self.precision, where)
        if self.int8_target is not None and self.int8_target not in TARGETS:
            raise UsageError(f"{where}: field 'int8_target' is {self.int8_target!r}, expected one of "
                             f"{', '.join(TARGETS)}; rebuild the artifact")

    @property
    def sidecar(self) -> Path:
        return onnx_sidecar_path(self.path)

    @staticmethod
    def has_sidecar(path: str | os.PathLike[str]) -> bool:
        return onnx_sidecar_path(path).is_file()

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> OnnxArtifact:
        """The artifact at `path` as its sidecar describes it; UsageError when the sidecar is missing or bad."""
        side = onnx_sidecar_path(path)
        return cls.from_json(_load_json(side, "ONNX artifact"), str(side), path=Path(path))

    @classmethod
    def read_or_none(cls, path: str | os.PathLike[str]) -> OnnxArtifact | None:
        """`read`, or None where there is no usable sidecar (caches and reuse checks: then rebuild)."""
        try:
            return cls.read(path)
        except UsageError:
            return None

    @classmethod
    def source(cls, path: str | os.PathLike[str]) -> OnnxArtifact:
        """The graph a producer starts from: as recorded, or recording nothing (a graph made elsewhere)."""
        return cls.read_or_none(path) or cls(path=Path(path))

    def write(self) -> OnnxArtifact:
        """Write the sidecar atomically (after the graph itself); returns the value written, as `read` gives it."""
        return _written(self)

    def derive(self, path: str | os.PathLike[str], **changes: Any) -> OnnxArtifact:
        """A new artifact made from this one: its records carried over, the source and the time noted,
        `changes` applied (the producer's own fields, e.g. `precision`, `int8`, `onnx_sha256`)."""
        from .fileio import sha256_file

        base = {"source_onnx": str(self.path), "source_sha256": sha256_file(self.path), "created": utc_now()}
        return dataclasses.replace(self, path=Path(path), **{**base, **changes})

    def recipe(self, precision: str) -> dict[str, Any]:
        """The precision recipe as recorded (what the TensorRT engine key hashes): {} when none."""
        section = self.fp16 if precision == "fp16" else self.int8 if precision == "int8" else None
        return section.to_json() if section is not None else {}

    @property
    def int8_share(self) -> float | None:
        """INT8 share of weighted-layer MACs: the int8 section's, or top-level (earlier ModelOpt sidecars)."""
        share = self.int8.int8_mac_share if self.int8 is not None else None
        if share is None:
            top = _number(self.extra.get("int8_mac_share"))
            share = top if top is not None and 0 < top <= 1 else None
        return share


@dataclass(frozen=True)
class Profile:
    """The optimisation profile's batch sizes."""

    min: int
    opt: int
    max: int


def _batch(value: Any) -> int | None:
    """A batch size from a profile entry: an int, or a shape whose first element is the batch."""
    if isinstance(value, list | tuple) and value:
        value = value[0]
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _profile(doc: Mapping[str, Any]) -> Profile | None:
    """Our builder's `{"profile": {"image": {"min": 1, "opt": 8, "max": 64}}}`, or the older
    `{"profiles": [{"image": {"min": [1, 3, 224, 224], ...}}]}` (the largest max over all profiles)."""
    found: list[Profile] = []
    entries: list[Any] = [doc.get("profile"), *(doc.get("profiles") or [])]
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        for tensor in entry.values():
            if isinstance(tensor, Mapping):
                lo, opt, hi = (_batch(tensor.get(k)) for k in ("min", "opt", "max"))
                if hi is not None:
                    found.append(Profile(lo or 1, opt or hi, hi))
    return max(found, key=lambda p: p.max) if found else None


@dataclass(frozen=True)
class EngineArtifact(_Record):
    """A TensorRT plan written by the builder (`<key>.plan`), with what its sidecar records."""

    path: Path = field(metadata={"local": True})
    key: str | None = None
    precision: Precision | None = None
    onnx: str | None = None
    key_inputs: Mapping[str, Any] | None = None
    tf32: bool | None = None
    build_seconds: float | None = None
    precision_verified: bool | None = None
    precision_check: str | None = None
    precision_share_required: float | None = None
    precision_mix: str | None = None
    precision_summary: str | None = None
    fp32_island_layers: int | None = None
    engine_device_memory_mb: float | None = None
    layers_file: str | None = None
    created: str | None = None
    extra: Mapping[str, Any] = _extra()
    # what this run did (not in the sidecar)
    cached: bool = _local(False)
    seconds: float = _local(0.0)

    def _check(self, where: str) -> None:
        _check_precision(self.precision, where)
        if self.key_inputs is not None and not isinstance(self.key_inputs, Mapping):
            raise UsageError(f"{where}: field 'key_inputs' is {type(self.key_inputs).__name__}, expected an "
                             "object; rebuild the engine")

    @property
    def plan(self) -> Path:
        return self.path

    @property
    def sidecar(self) -> Path:
        return plan_sidecar_path(self.path)

    @staticmethod
    def has_sidecar(plan: str | os.PathLike[str]) -> bool:
        return plan_sidecar_path(plan).is_file()

    @classmethod
    def read(cls, plan: str | os.PathLike[str]) -> EngineArtifact:
        """The plan at `plan` as its sidecar describes it; UsageError when the sidecar is missing or bad."""
        side = plan_sidecar_path(plan)
        return cls.from_json(_load_json(side, "TensorRT plan"), str(side), path=Path(plan))

    @classmethod
    def read_or_none(cls, plan: str | os.PathLike[str]) -> EngineArtifact | None:
        """`read`, or None where there is no usable sidecar."""
        try:
            return cls.read(plan)
        except UsageError:
            return None

    def write(self) -> EngineArtifact:
        """Write the sidecar atomically (after the plan itself); returns the value written, as `read` gives it."""
        return _written(self)

    @property
    def profile(self) -> Profile | None:
        return _profile(self.extra)

    @property
    def max_batch(self) -> int | None:
        """The largest batch the plan accepts: its profile's max, else a recorded `max_batch`."""
        prof = self.profile
        if prof is not None:
            return prof.max
        found = [b for k in ("max_batch", "max_batch_size", "batch_max") if (b := _batch(self.extra.get(k)))]
        return max(found) if found else None

    def built_with(self, name: str) -> Any:
        """One input of the engine key as recorded (None where the sidecar lacks it)."""
        return (self.key_inputs or {}).get(name)


def engine_artifact(plan: str | os.PathLike[str], *, key: str, precision: Precision, onnx: str,
                    profile: tuple[int, int, int], key_inputs: Mapping[str, Any], **fields: Any) -> EngineArtifact:
    """The value the builder writes beside a new plan (the profile spelled as the builder always did)."""
    lo, opt, hi = profile
    extra = {"kind": "simplehand-trt-plan", "profile": {"image": {"min": lo, "opt": opt, "max": hi}}}
    return EngineArtifact(path=Path(plan), key=key, precision=precision, onnx=onnx, key_inputs=dict(key_inputs),
                          created=utc_now(), extra=extra, **fields)
