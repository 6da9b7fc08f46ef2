"""INT8 through NVIDIA's TensorRT Model Optimizer (`nvidia-modelopt`, ONNX PTQ): the peer every user compares with.

ModelOpt's `[onnx]` extra pins onnx ~= 1.21 and onnxruntime-gpu ~= 1.24, which cannot share our
environment, so it runs in its own virtualenv as a subprocess (`python -m modelopt.onnx.quantization`):
`make modelopt` creates `.venv-modelopt/` in the repository root; `SIMPLEHAND_MODELOPT_VENV` names
another one. The same calibration crops as ours go in (as a .npz keyed by the graph's input name),
calibration runs on the CPU through ONNX Runtime (CUDA first where a GPU is present), and the
output gets the same checks and sidecar fields as our own INT8 artifacts: it must load in our ONNX
Runtime, and its INT8 MAC share and Q/DQ count are read from the graph (`macs`), never taken from
ModelOpt's log.

ModelOpt writes opset >= 19 (FP16 scales on DequantizeLinear), so it serves TensorRT >= 10 only
(`target="trt10"`); its remainder is FP16 there (ModelOpt's default `high_precision_dtype`), or FP32
when asked (the peers comparison measures both).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import Int8Recipe, OnnxArtifact
from ..defaults import DEFAULT_METHOD
from ..errors import UsageError, VerificationError
from ..export import ARTIFACT_FORMAT, load_onnx
from ..fileio import atomic_path, sha256_file
from ..literals import MODELOPT_METHODS
from .graph import resolve_exclude
from .macs import int8_mac_share, qdq_count

MODELOPT_VERSION = "0.47.0"
VENV_ENV = "SIMPLEHAND_MODELOPT_VENV"
VENV_DIR = ".venv-modelopt"
HIGH_PRECISION = ("fp16", "fp32")
TARGETS = ("trt10",)
_REPO_ROOT = Path(__file__).resolve().parents[2]
_HOW = (f"create it with `make modelopt` in the repository root (a {VENV_DIR}/ venv with "
        f"nvidia-modelopt[onnx]=={MODELOPT_VERSION}) or point {VENV_ENV} at a venv that has it")


def check_options(method: str, target: str, high_precision: str | None) -> str:
    """Validate the ModelOpt route's options (before any venv is looked for); returns ModelOpt's method name."""
    if method == "percentile":
        raise UsageError("--quantizer modelopt --method percentile: ModelOpt's INT8 calibration has max and entropy "
                         "only; use --method minmax (ModelOpt: max) or entropy")
    if method not in MODELOPT_METHODS:
        raise UsageError(f"--method {method!r}: choose minmax or entropy with --quantizer modelopt")
    if target == "trt8":
        raise UsageError("--quantizer modelopt --target trt8: ModelOpt writes opset >= 19 (FP16 scales on "
                         "DequantizeLinear), which TensorRT 8.6 cannot parse; use --target trt10, or --quantizer ort "
                         "for TensorRT 8.6")
    if target not in TARGETS:
        raise UsageError(f"--target {target!r}: choose trt10 with --quantizer modelopt")
    if high_precision is not None and high_precision not in HIGH_PRECISION:
        raise UsageError(f"high_precision {high_precision!r}: choose fp16 or fp32")
    return MODELOPT_METHODS[method]


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def find_venv() -> Path:
    """The ModelOpt venv: $SIMPLEHAND_MODELOPT_VENV, else ./.venv-modelopt, else <repo>/.venv-modelopt."""
    named = os.environ.get(VENV_ENV)
    if named:
        venv = Path(named).expanduser()
        if not _python(venv).is_file():
            raise UsageError(f"{VENV_ENV}={named}: no Python at {_python(venv)}; {_HOW}")
        return venv
    for venv in (Path.cwd() / VENV_DIR, _REPO_ROOT / VENV_DIR):
        if _python(venv).is_file():
            return venv
    raise UsageError(f"--quantizer modelopt: no ModelOpt venv found ({Path.cwd() / VENV_DIR} is missing); {_HOW}")


_PROBE = """
import json, importlib.metadata as md
out = {}
for name in ("nvidia-modelopt", "onnx", "onnxruntime-gpu", "onnxruntime"):
    try:
        out[name] = md.version(name)
    except md.PackageNotFoundError:
        pass
import modelopt.onnx.quantization  # noqa: F401  (importable, not just installed)
print(json.dumps(out))
"""


def venv_versions(venv: Path) -> dict[str, str]:
    """Package versions inside the ModelOpt venv; a UsageError when ModelOpt cannot be imported there."""
    try:
        proc = subprocess.run([str(_python(venv)), "-c", _PROBE], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"ModelOpt venv {venv}: its Python does not run ({exc}); {_HOW}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise UsageError(f"ModelOpt venv {venv}: cannot import modelopt.onnx.quantization ({last}); {_HOW}")
    versions: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    if versions.get("nvidia-modelopt") != MODELOPT_VERSION:
        print(f"note: ModelOpt venv {venv} has nvidia-modelopt {versions.get('nvidia-modelopt')}; "
              f"this toolkit was checked with {MODELOPT_VERSION}", file=sys.stderr)
    return versions


def default_eps() -> list[str]:
    """Calibration execution providers: CUDA first where a GPU is present, else CPU only."""
    from ..env import gpu_info

    return ["cuda:0", "cpu"] if gpu_info() else ["cpu"]


def modelopt_command(python: Path, src: Path, data: Path, out: Path, *, method: str, high_precision: str,
                     eps: Sequence[str], exclude: Sequence[str] = ()) -> list[str]:
    """The ModelOpt ONNX PTQ command line (ModelOpt's own placement; `exclude` = node names kept float)."""
    cmd = [str(python), "-m", "modelopt.onnx.quantization", "--onnx_path", str(src), "--quantize_mode", "int8",
           "--calibration_data_path", str(data), "--calibration_method", method, "--calibration_eps", *eps,
           "--high_precision_dtype", high_precision, "--output_path", str(out), "--log_level", "WARNING"]
    if exclude:
        cmd += ["--nodes_to_exclude", *(f"^{re.escape(n)}$" for n in exclude)]
    return cmd


def quantize_modelopt(
    src: str | os.PathLike[str],
    calib: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    method: str = DEFAULT_METHOD,
    target: str = "trt10",
    high_precision: str | None = None,
    calibration_eps: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    progress: bool = True,
) -> OnnxArtifact:
    """Q/DQ INT8 graph made by ModelOpt's ONNX PTQ on our calibration crops; sidecar like ours; returns the
    artifact written.

    `high_precision` is the remainder's type (None: follows the target, FP16 for trt10); `exclude` = node
    names kept float (ModelOpt's own placement otherwise).
    """
    mo_method = check_options(method, target, high_precision)
    high = high_precision or "fp16"
    venv = find_venv()
    versions = venv_versions(venv)
    from ..calibration import load_calibration_set
    from ..ort import make_session

    cal = load_calibration_set(calib)
    images = cal.images
    graph = load_onnx(src)
    input_name = graph.graph.input[0].name
    exclude = sorted(resolve_exclude(graph.graph, exclude or ()))  # node names or op types, checked
    eps = list(calibration_eps or default_eps())
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="simplehand-modelopt-") as tmpdir:
        data = Path(tmpdir) / "calibration.npz"
        feeds: dict[str, Any] = {input_name: np.ascontiguousarray(images, dtype=np.float32)}
        np.savez(data, **feeds)
        # ModelOpt writes its intermediates beside the input graph: give it a private copy
        private = Path(tmpdir) / Path(src).name
        private.write_bytes(Path(src).read_bytes())
        with atomic_path(out) as tmp:
            produced = Path(tmpdir) / "modelopt-int8.onnx"
            cmd = modelopt_command(_python(venv), private, data, produced, method=mo_method, high_precision=high,
                                   eps=eps, exclude=exclude)
            t0 = time.perf_counter()
            if progress:
                print(f"ModelOpt {versions.get('nvidia-modelopt')} INT8 PTQ ({mo_method}, {high} remainder, "
                      f"{len(images)} crops, eps {','.join(eps)}) ...", file=sys.stderr)
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
            seconds = time.perf_counter() - t0
            if proc.returncode != 0 or not produced.is_file():
                tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
                raise VerificationError(f"ModelOpt quantization of {src} failed (exit {proc.returncode}): {tail}")
            tmp.write_bytes(produced.read_bytes())
            make_session(tmp)  # load check in our ONNX Runtime: a graph it cannot load is never written
            quantised = load_onnx(tmp)
    recipe = Int8Recipe(
        quantizer="modelopt.onnx.quantization", method=method, modelopt_method=mo_method, placement="modelopt",
        target=target, high_precision_dtype=high, int8_mac_share=int8_mac_share(quantised),
        qdq_nodes=qdq_count(quantised), versions=versions, excluded_nodes=tuple(exclude),
        calibration={"path": str(cal.path), "num": len(images), "fingerprint": cal.fingerprint},
        extra={"format": "QDQ", "remainder": high, "calibration_eps": eps, "seconds": round(seconds, 2)})
    opset = max((o.version for o in quantised.opset_import if o.domain in ("", "ai.onnx")), default=None)
    return OnnxArtifact.source(src).derive(out, artifact_format=ARTIFACT_FORMAT, precision="int8", opset=opset,
                                           int8_target=target, int8=recipe, onnx_sha256=sha256_file(out)).write()


def modelopt_available() -> tuple[bool, str]:
    """(True, venv) when a ModelOpt venv is usable here, else (False, why): for tests and presets."""
    try:
        venv = find_venv()
        venv_versions(venv)
    except UsageError as exc:
        return False, str(exc)
    return True, str(venv)
