"""Each `simplehand-deploy` command builds one config value (`XConfig.from_cli`), calls one library
function and renders its result. The configs hold the commands' defaults; the options the CLI declares must show
the same ones, and `from_cli` refuses bad options before any work."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import typer

from simplehand_deploy.artifact import Int8Recipe, OnnxArtifact, SensitivityRepair
from simplehand_deploy.bench.sensitivity import SensitivityConfig
from simplehand_deploy.calibration import CalibSetConfig
from simplehand_deploy.cli import _run, deploy
from simplehand_deploy.config import DEFAULT_CONFIG
from simplehand_deploy.data.synthetic import SynthConfig
from simplehand_deploy.drift import DriftConfig
from simplehand_deploy.errors import UsageError
from simplehand_deploy.evaluate import EvalConfig
from simplehand_deploy.export import ExportConfig
from simplehand_deploy.precision import Fp16Config, Int8Config, Int8Result
from simplehand_deploy.precision.qat import QatConfig
from simplehand_deploy.predict import PredictConfig
from simplehand_deploy.train import TrainConfig

CONFIGS = {"predict": PredictConfig, "synth": SynthConfig, "calib-set": CalibSetConfig, "train": TrainConfig,
           "eval": EvalConfig, "export": ExportConfig, "fp16": Fp16Config, "int8": Int8Config, "drift": DriftConfig,
           "qat": QatConfig, "int8-sensitivity": SensitivityConfig}
SEED_NOTE = "note: no --checkpoint given: using seed-initialised tiny weights (not a trained model)"


def _defaults(cls: type) -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_cli_shows_the_configs_defaults(name):
    """Every option the command declares with a value (what --help shows) has that value in the config."""
    command = typer.main.get_command(deploy).commands[name]  # type: ignore[attr-defined]
    defaults = _defaults(CONFIGS[name])
    compared = 0
    for param in command.params:
        if param.name in defaults and param.default is not None:
            assert param.default == defaults[param.name], (name, param.name)
            compared += 1
        if param.name == "quiet":  # --quiet off by default = progress on by default
            assert param.default is False and defaults.get("progress") is True, name
    assert "config" not in defaults or defaults["config"] == DEFAULT_CONFIG or name == "qat"  # qat: --config required
    assert compared >= {"fp16": 0, "drift": 1, "int8-sensitivity": 1}.get(name, 2), (name, compared)


def test_from_cli_none_means_the_default(tmp_path):
    out = tmp_path / "x"
    assert SynthConfig.from_cli(out=out, num=None, seed=None) == SynthConfig(out=out)
    assert CalibSetConfig.from_cli(out=out, synthetic=True, num=None).num == 64
    assert ExportConfig.from_cli(out=out, opset=None, config=None) == ExportConfig(out=out)
    assert Int8Config.from_cli(onnx=out, calib=out, out=out, method=None, exclude=None) == Int8Config(out, out, out)
    assert Fp16Config.from_cli(onnx=out, out=out, block=None) == Fp16Config(out, out)
    cfg = TrainConfig.from_cli(out=out, steps=3, rotation=None, freihand=None)
    assert cfg.rotation is None and cfg.config == DEFAULT_CONFIG and cfg.synthetic_num == 2048


def test_from_cli_converts_the_command_line(tmp_path):
    assert SynthConfig.from_cli(out=tmp_path, quiet=True).progress is False
    exp = ExportConfig.from_cli(out=tmp_path, no_simplify=True, quiet=True)
    assert exp.simplify is False and exp.progress is False
    assert ExportConfig.from_cli(out=tmp_path).simplify is True
    assert Fp16Config.from_cli(onnx=tmp_path, out=tmp_path, block=[]).block is None  # no --block: the default ops
    assert Fp16Config.from_cli(onnx=tmp_path, out=tmp_path, block=["Softmax"]).block == ("Softmax",)
    i8 = Int8Config.from_cli(onnx=tmp_path, calib=tmp_path, out=tmp_path, exclude=["a", "b"], quiet=True)
    assert i8.exclude == ("a", "b") and i8.progress is False
    drift = DriftConfig.from_cli(onnx=[tmp_path / "a.onnx"], calib=tmp_path, quiet=True)
    assert drift.onnx == (tmp_path / "a.onnx",) and drift.progress is False
    train = TrainConfig.from_cli(out=tmp_path, freihand=tmp_path / "f", mano=Path("m.pkl"), epochs=1, quiet=True)
    assert train.out == str(tmp_path) and train.freihand == str(tmp_path / "f") and train.mano == "m.pkl"
    assert train.progress is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        train.steps = 5  # type: ignore[misc]


@pytest.mark.parametrize(("make", "flag"), [
    (lambda p: PredictConfig.from_cli(input=p / "i.npy", output=p / "o.npy"), "must end in .npz"),
    (lambda p: PredictConfig.from_cli(input=p / "i.npy", output=p / "o.npz", mano=p / "m", regressor=p / "r"),
     "--mano or --regressor"),
    (lambda p: SynthConfig.from_cli(out=p, num=0), "--num"),
    (lambda p: CalibSetConfig.from_cli(out=p), "--freihand DIR or --synthetic"),
    (lambda p: CalibSetConfig.from_cli(out=p, freihand=p, synthetic=True), "--freihand DIR or --synthetic"),
    (lambda p: CalibSetConfig.from_cli(out=p, synthetic=True, split="bogus"), "--split"),
    (lambda p: CalibSetConfig.from_cli(out=p, synthetic=True, scale_enlarge=0.0), "--scale-enlarge"),
    (lambda p: TrainConfig.from_cli(out=p, config="nope", steps=1), "unknown config 'nope'"),
    (lambda p: TrainConfig.from_cli(out=p, config="tiny"), "--steps N or --epochs E"),
    (lambda p: ExportConfig.from_cli(out=p, opset=20), "--opset 20"),
    (lambda p: Int8Config.from_cli(onnx=p, calib=p, out=p, method="bogus"), "--method"),
    (lambda p: Int8Config.from_cli(onnx=p, calib=p, out=p, placement="bogus"), "--placement"),
    (lambda p: Int8Config.from_cli(onnx=p, calib=p, out=p, target="trt9"), "--target"),
    (lambda p: Int8Config.from_cli(onnx=p, calib=p, out=p, quantizer="bogus"), "--quantizer"),
    (lambda p: Int8Config.from_cli(onnx=p, calib=p, out=p, quantizer="modelopt", max_drift_mm=1.0),
     "--max-drift-mm"),
    (lambda p: DriftConfig.from_cli(onnx=[], calib=p), "--onnx"),
])
def test_from_cli_refuses_bad_options(tmp_path, make, flag):
    with pytest.raises(UsageError, match=re.escape(flag)):
        make(tmp_path)


def _int8_result(tmp_path, met):
    repair = SensitivityRepair(budget_mm=1.0, drift_all_quantised_mm=2.5, final_drift_mm=0.8 if met else 1.4,
                               excluded_groups=(1, 2), met=met, checked_on={"crops": 8})
    recipe = Int8Recipe(placement="dense", target="trt10", int8_mac_share=0.5, sensitivity_repair=repair)
    return Int8Result(OnnxArtifact(path=tmp_path / "q.onnx", precision="int8", int8=recipe))


def test_int8_result_carries_the_verdict(tmp_path):
    good, bad = _int8_result(tmp_path, True), _int8_result(tmp_path, False)
    assert good.ok and good.failure() is None
    assert not bad.ok
    assert bad.failure() == (f"{tmp_path / 'q.onnx'}: sensitivity repair missed its budget (1.400 mm > 1.0 mm on 8 "
                             "held-out crops, 2 layer group(s) kept float); raise --max-drift-mm or calibrate on "
                             "more crops")
    assert good.lines() == [
        "sensitivity repair: drift 2.500 -> 0.800 mm (budget 1.0 mm, on 8 held-out crops), 2 layer group(s) kept "
        "float", f"wrote {tmp_path / 'q.onnx'} (target trt10, placement dense, 50.0% of weighted-layer MACs in INT8)"]
    plain = Int8Result(OnnxArtifact(path=tmp_path / "q.onnx", precision="int8", int8=Int8Recipe(placement="all")))
    assert plain.ok and plain.failure() is None and len(plain.lines()) == 1


def test_seed_weights_are_announced_as_before(tmp_path, capsys):
    """predict on seed weights says so on stderr, word for word; a given checkpoint or a quiet config does not."""
    from simplehand_deploy.checkpoint import load_announced

    images = tmp_path / "x.npy"
    np.save(images, np.zeros((1, 3, 224, 224), np.float32))
    assert _run(deploy, ["predict", "--config", "tiny", "--input", str(images), "--output",
                         str(tmp_path / "o.npz")]) == 0
    assert SEED_NOTE in capsys.readouterr().err.splitlines()
    load_announced(None, "tiny", announce=False)
    assert capsys.readouterr().err == ""
    load_announced(None, "tiny")
    assert capsys.readouterr().err.strip() == SEED_NOTE


def test_each_command_builds_one_config_and_calls_one_function():
    """The command bodies hold no computation: one `XConfig.from_cli(...)`, one `run_*`/`train` call, then render;
    no weights, regressors or variants are looked up in the CLI."""
    import ast

    import simplehand_deploy.cli as cli

    tree = ast.parse(Path(cli.__file__).read_text())
    bodies = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    names = {"predict": "predict", "synth": "synth", "calib-set": "calib_set", "train": "train", "eval": "eval_cmd",
             "export": "export", "fp16": "fp16", "int8": "int8", "drift": "drift", "qat": "qat",
             "int8-sensitivity": "int8_sensitivity"}
    assert set(names) == set(CONFIGS)
    for command, func in names.items():
        calls = [n.func for n in ast.walk(bodies[func]) if isinstance(n, ast.Call)]
        called = [c.attr if isinstance(c, ast.Attribute) else getattr(c, "id", "") for c in calls]
        assert called.count("from_cli") == 1, (command, called)
        runs = [c for c in called if c.startswith("run_")]
        assert len(runs) == 1, (command, called)
        assert not {"load_checkpoint", "load_announced", "load_regressor", "get_config"} & set(called), command
        assert "UsageError" not in ast.dump(bodies[func]), command
