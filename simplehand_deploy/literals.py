"""The small vocabularies shared across layers (a leaf module: it imports nothing of the package).

Each `Literal` type is the one spelling of a choice; the tuple beside it is the same set at run time
(for validation and help texts), derived from the type so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Literal, get_args

Precision = Literal["fp32", "fp16", "int8"]
Method = Literal["minmax", "entropy", "percentile"]
Placement = Literal["dense", "all", "matched"]
Target = Literal["trt10", "trt8"]
Quantizer = Literal["ort", "modelopt"]
StepStatus = Literal["built", "reused", "skipped", "failed"]

PRECISIONS: tuple[Precision, ...] = get_args(Precision)
METHODS: tuple[Method, ...] = get_args(Method)
PLACEMENTS: tuple[Placement, ...] = get_args(Placement)
TARGETS: tuple[Target, ...] = get_args(Target)
QUANTIZERS: tuple[Quantizer, ...] = get_args(Quantizer)
STEP_STATUSES: tuple[StepStatus, ...] = get_args(StepStatus)

MODELOPT_METHODS: dict[str, str] = {"minmax": "max", "entropy": "entropy"}
"""ModelOpt's `--calibration_method` name for each of ours it has (its INT8 calibration has no percentile)."""
