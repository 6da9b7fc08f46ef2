"""The two places where we patch ONNX Runtime's quantisation tools, pinned to the versions they were checked on.

Each patch replaces one ORT function for the duration of a `with` block. A patch is only right for
the code it was written against, so the source of every function it replaces or relies on is hashed
(`PATCH_TARGETS`) and compared with what that ORT version shipped (`CHECKED`). On another ORT (or a
changed function) the patch still runs but says so once on stderr, and the INT8 sidecar records
`ort_patches_verified: false`; `tests/test_precision_patches.py` fails until someone re-reads the
changed function and adds the new hashes.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import numpy as np

# function -> sha256 of its dedented source, per ORT version the patches were checked against.
CHECKED: dict[str, dict[str, str]] = {
    "1.32.0": {
        # percentile_guard replaces it
        "onnxruntime.quantization.calibrate:HistogramCollector.collect_absolute_value": "1b6fe72be40c5ab0",
        # entropy_bins wraps it ...
        "onnxruntime.quantization.quantize:create_calibrator": "f520ccefa29adc0f",
        # ... because this one calls it by module-global name without histogram sizes
        "onnxruntime.quantization.quantize:quantize_static": "7d666adc0cd6398a",
    },
}


def _target(path: str) -> Any:
    module, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def source_hash(path: str) -> str:
    """First 16 hex digits of the sha256 of the function's dedented source ("" when it has none)."""
    try:
        src = textwrap.dedent(inspect.getsource(_target(path)))
    except (OSError, TypeError, AttributeError):
        return ""
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def unverified() -> list[str]:
    """Patched (or relied-on) functions whose source differs from what the installed ORT was checked with;
    every target when the installed ORT version was never checked."""
    known = CHECKED.get(ort_version())
    targets = list(next(iter(CHECKED.values())))
    if known is None:
        return targets
    return [t for t in targets if source_hash(t) != known.get(t)]


_warned = False


def patches_verified() -> bool:
    global _warned
    bad = unverified()
    if bad and not _warned:
        _warned = True
        print(f"warning: ONNX Runtime {ort_version()}: the INT8 calibration patches were checked on "
              f"{', '.join(CHECKED)} only; changed or unchecked: {', '.join(t.split(':')[1] for t in bad)} "
              "(entropy/percentile calibration may differ)", file=sys.stderr)
    return not bad


@contextlib.contextmanager
def percentile_guard() -> Iterator[None]:
    """Let ORT's percentile calibrator take a tensor whose |values| are (nearly) all equal.

    It histograms |x| over [min |x|, max |x|], which numpy refuses when that span is below float32
    resolution for 2048 bins: a softmax over 49 tokens of an untrained model is 1/49 everywhere.
    Such a tensor gets one extra 0 sample, so the span is [0, max]; its percentile threshold is then
    max |x|, as it should be.
    """
    from onnxruntime.quantization.calibrate import HistogramCollector

    patches_verified()
    original = HistogramCollector.collect_absolute_value

    def collect_absolute_value(self: Any, name_to_arr: dict[str, Any]) -> Any:
        fixed = dict(name_to_arr)
        for name, arr in name_to_arr.items():
            if name in self.histogram_dict:  # later batches merge into the first histogram's range
                continue
            flat = np.concatenate([np.ravel(a) for a in arr]) if isinstance(arr, list) else np.ravel(arr)
            if flat.size:
                mag = np.abs(flat)
                edges = np.linspace(mag.min(), mag.max(), self.num_bins + 1, dtype=flat.dtype)
                if np.any(edges[:-1] >= edges[1:]):
                    fixed[name] = np.append(flat, flat.dtype.type(0))
        return original(self, fixed)

    setattr(HistogramCollector, "collect_absolute_value", collect_absolute_value)  # noqa: B010
    try:
        yield
    finally:
        setattr(HistogramCollector, "collect_absolute_value", original)  # noqa: B010


@contextlib.contextmanager
def entropy_bins(num_bins: int = 512, num_quantized_bins: int = 128) -> Iterator[None]:
    """Give ORT's entropy calibrator a real histogram for the KL threshold search.

    quantize_static does not pass histogram sizes through (only a few Calib* keys), so its entropy
    calibrator runs with 128 bins and 128 quantised bins: a single candidate threshold, the full
    range, which is exactly MinMax (measured: identical scales). TensorRT's entropy calibrator uses
    2048 bins searched down to 128; ORT's search is a Python loop (about 1 s per tensor at 2048 bins
    on this 2-core host, too slow for fastvit_ma36's ~1000 tensors), so 512 bins: 192 candidate
    thresholds per tensor. Trained tiny, default placement: 2.27 mm (minmax) -> 2.13 mm (2048 bins).
    """
    patches_verified()
    # the package re-exports a *function* named `quantize`, so `import ... as` would bind that
    ort_quantize = importlib.import_module("onnxruntime.quantization.quantize")
    original = getattr(ort_quantize, "create_calibrator")  # noqa: B009 - a module typed as ModuleType

    def create_calibrator(*args: Any, **kwargs: Any) -> Any:
        extra = dict(kwargs.get("extra_options") or {})
        extra.setdefault("num_bins", num_bins)
        extra.setdefault("num_quantized_bins", num_quantized_bins)
        kwargs["extra_options"] = extra
        return original(*args, **kwargs)

    setattr(ort_quantize, "create_calibrator", create_calibrator)  # noqa: B010
    try:
        yield
    finally:
        setattr(ort_quantize, "create_calibrator", original)  # noqa: B010
