"""The defaults that several layers show, each written once.

A default the command line, a job config (`XConfig`) and a keyword function all need lives here, and all of them
read it: `--help` shows the value from here, the configs and functions default to it, so the copies cannot drift.
A leaf module (it imports nothing of the package at run time), so `cli` reads it without loading numpy, onnx or
TensorRT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .literals import Method

DEFAULT_PROFILE: tuple[int, int, int] = (1, 8, 64)
"""TensorRT optimisation profile, batch MIN, OPT, MAX (`build --profile`, `engine --profile`)."""

DEFAULT_WORKSPACE_MB = 4096
"""TensorRT builder workspace limit in MiB (`build --workspace-mb`)."""

DEFAULT_METHOD: Method = "minmax"
"""INT8 activation calibration method (`int8 --method`, `engine --method`)."""

DEFAULT_CALIB_NUM = 64
"""Crops in a calibration set (`calib-set --num`, `engine --calib-num`)."""


def profile_text(profile: tuple[int, int, int] = DEFAULT_PROFILE) -> str:
    """A profile the way `--profile` takes it: MIN,OPT,MAX."""
    return ",".join(str(b) for b in profile)
