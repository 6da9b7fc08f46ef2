"""Shared fixtures; `gpu`/`trt` tests skip with the reason where the hardware or TensorRT is absent."""

from __future__ import annotations

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
    """A seed-initialised `tiny` model saved in our checkpoint format."""
    from simplehand_deploy.checkpoint import save_checkpoint
    from simplehand_deploy.model import create_model

    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    save_checkpoint(path, create_model("tiny", seed=0), step=0)
    return path
