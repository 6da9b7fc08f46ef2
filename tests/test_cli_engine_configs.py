"""`build`, `engine`, `triton` and `regress` hold their defaults in the library's config; the options the
CLI declares (what --help shows) must show the same ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import typer

from simplehand_deploy.bench.baseline import GateConfig
from simplehand_deploy.cli import bench, deploy
from simplehand_deploy.pipeline import EngineJobConfig
from simplehand_deploy.triton import TritonConfig
from simplehand_deploy.trt.build import BuildConfig, parse_profile

CONFIGS: dict[tuple[str, str], tuple[type, int]] = {  # (app, command) -> (config, options compared at least)
    ("deploy", "build"): (BuildConfig, 6), ("deploy", "engine"): (EngineJobConfig, 8),
    ("deploy", "triton"): (TritonConfig, 2), ("bench", "regress"): (GateConfig, 3)}


def _same(name: str, shown: Any, default: Any) -> bool:
    if name == "profile":
        return parse_profile(shown) == default
    if name == "precisions":
        return EngineJobConfig.from_cli(precisions=shown).precisions == default
    if isinstance(shown, Path) or name == "out":
        return Path(shown) == Path(default)
    return bool(shown == default)


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_cli_shows_the_configs_defaults(key):
    app, name = key
    cls, least = CONFIGS[key]
    command = typer.main.get_command(deploy if app == "deploy" else bench).commands[name]  # type: ignore[attr-defined]
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    compared = 0
    for param in command.params:
        if param.name in defaults and param.default is not None:
            assert _same(param.name, param.default, defaults[param.name]), (name, param.name, param.default)
            compared += 1
    assert compared >= least, (name, compared)


def test_none_means_the_default(tmp_path):
    assert BuildConfig.from_cli(onnx=tmp_path, profile=None, opt_level=None) == BuildConfig(onnx=tmp_path)
    assert TritonConfig.from_cli(out=tmp_path, name=None, max_batch=None) == TritonConfig(out=tmp_path)
    assert GateConfig.from_cli(baseline=tmp_path, current=tmp_path, latency_tol=None, device=None) == GateConfig(
        tmp_path, tmp_path)
    assert EngineJobConfig.from_cli(precisions=None, profile=None, freihand=None) == EngineJobConfig()
