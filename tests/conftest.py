"""Shared fixtures; `gpu`/`trt` tests skip with the reason where the hardware or TensorRT is absent."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from simplehand_deploy._deps import tensorrt_or_none

    has_cuda = _cuda_available()
    has_trt = has_cuda and tensorrt_or_none() is not None
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    skip_trt = pytest.mark.skip(reason="needs TensorRT (real `tensorrt` module with Builder) and a CUDA device")
    for item in items:
        if "trt" in item.keywords and not has_trt:
            item.add_marker(skip_trt)
        elif "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def parity_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The official-parity weights regenerated from the recipe, wrapped as an official checkpoint file."""
    from simplehand_deploy.testing import recipe_state_dict, save_official

    path = tmp_path_factory.mktemp("parity") / "epoch_200"
    save_official(path, recipe_state_dict(FIXTURES / "state_dict_fastvit_ma36.tsv"), epoch=200)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seed-initialised `tiny` model saved in our checkpoint format (file-format tests only: its outputs hardly
    depend on the image, so vertex-level checks use `trained_tiny`)."""
    from simplehand_deploy.checkpoint import save_checkpoint
    from simplehand_deploy.model import create_model

    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    save_checkpoint(path, create_model("tiny", seed=0), step=0)
    return path


# Dev convenience, never set by make/CI: a folder where the trained tiny is kept between test sessions, keyed by
# the sources that decide its weights (a change to any of them trains a new one).
CACHE_ENV = "SIMPLEHAND_TEST_CACHE"
_TRAINING_SOURCES = ("model.py", "config.py", "train.py", "checkpoint.py", "testing.py", "data")


def _training_key() -> str:
    pkg = Path(__file__).resolve().parents[1] / "simplehand_deploy"
    h = hashlib.sha256()
    for name in _TRAINING_SOURCES:
        for f in sorted((pkg / name).rglob("*.py")) if (pkg / name).is_dir() else [pkg / name]:
            h.update(f.relative_to(pkg).as_posix().encode() + f.read_bytes())
    return h.hexdigest()[:12]


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny` trained 300 steps on synthetic hands (`testing.quick_tiny_checkpoint`), once per test session.

    Held-out PA-MPVPE ~41 -> ~23 mm, and its vertices follow the image (mm apart between images, where the seed
    weights move them by ~0.04 mm): the model every vertex-level check runs on (see tests/teeth.py).
    """
    from simplehand_deploy.testing import quick_tiny_checkpoint

    cache = os.environ.get(CACHE_ENV)
    root = Path(cache) / f"trained-tiny-{_training_key()}" if cache else tmp_path_factory.mktemp("trained-tiny")
    return quick_tiny_checkpoint(root / "train")  # the recipe (steps included) is the library's


@pytest.fixture(scope="session")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 synthetic crops (a calibration-set folder: images.npy, labels.npz) from a seed no training or calibration
    set here uses."""
    from simplehand_deploy.calibration import build_calibration_set

    return build_calibration_set(tmp_path_factory.mktemp("held-out") / "synthetic-8-seed777", synthetic=True, num=8,
                                 seed=777, progress=False)


@pytest.fixture(scope="session")
def trained_engines(trained_tiny: Path, held_out: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`make engine`'s code path on the trained tiny: its fp32/fp16/int8 ONNX artifacts (8 synthetic calibration
    crops), the calibration set, and the held-out crops to measure them on."""
    from simplehand_deploy.pipeline import int8_targets, run_engine_job

    root = tmp_path_factory.mktemp("trained-engines")
    rows = run_engine_job(config="tiny", checkpoint=trained_tiny, calib_num=8, out=root / "engines",
                          calib_dir=root / "calibration", quiet=True)
    # "ONNX fp32" -> fp32, "ONNX int8 trt10" -> int8-trt10; "int8": the artifact TensorRT here would build from
    out = {r.artifact.removeprefix("ONNX ").replace(" ", "-"): Path(r.path) for r in rows
           if r.artifact.startswith("ONNX")}
    out["int8"] = out[f"int8-{int8_targets()[0]}"]
    out["calib"] = Path(next(r.path for r in rows if r.artifact == "calibration set"))
    out["held_out"] = held_out
    out["checkpoint"] = trained_tiny
    return out
