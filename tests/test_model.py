"""The SimpleHand network: official parity, key layout, fusion, tiny variant contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from teeth import assert_discriminates

from simplehand_deploy.checkpoint import load_checkpoint
from simplehand_deploy.config import CONFIGS, get_config
from simplehand_deploy.model import create_model, fuse, sine_position_map
from simplehand_deploy.testing import read_layout, recipe_input


def test_official_key_layout_matches_reference(fixtures_dir):
    model = create_model("fastvit_ma36")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ref = {k: shape for k, _, shape in read_layout(fixtures_dir / "state_dict_fastvit_ma36.tsv")}
    assert len(ref) == 1325
    assert ours == ref


def test_fused_key_layout_matches_reference(fixtures_dir):
    model = fuse(create_model("fastvit_ma36"))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ref = {k: shape for k, _, shape in read_layout(fixtures_dir / "state_dict_fastvit_ma36_reparam.tsv")}
    assert ours == ref


@pytest.mark.parametrize("fused", [False, True])
def test_official_parity(parity_checkpoint, fixtures_dir, fused):
    model, info = load_checkpoint(parity_checkpoint, "fastvit_ma36", fused=fused)
    assert info.kind == "official" and info.epoch == 200
    x = torch.from_numpy(np.load(fixtures_dir / "parity" / "input.npy"))
    assert torch.equal(x, recipe_input(2))  # the fixture input is the documented seed recipe
    with torch.no_grad():
        uv, vertices = model(x)
    expected_uv = np.load(fixtures_dir / "parity" / "expected_uv.npy").reshape(2, 21, 2)
    expected_v = np.load(fixtures_dir / "parity" / "expected_vertices.npy")
    assert_discriminates(expected_v, 1e-4)  # the parity weights' outputs follow the image (by ~1 m)
    assert_discriminates(expected_uv, 1e-5, what="uv")
    np.testing.assert_allclose(uv.numpy(), expected_uv, atol=1e-5, rtol=0)
    np.testing.assert_allclose(vertices.numpy(), expected_v, atol=1e-4, rtol=0)


def test_sine_position_map_matches_definition():
    pos = sine_position_map(256, 28, 28).numpy()[0]
    assert pos.shape == (256, 28, 28)
    i, j, k = 4, 9, 6  # row 5, column 10 (1-based), channel pair 3
    y = (i + 1) / (28 + 1e-6) * 2 * np.pi
    x = (j + 1) / (28 + 1e-6) * 2 * np.pi
    div = 10000 ** (2 * (k // 2) / 128)
    assert pos[k, i, j] == pytest.approx(np.sin(y / div), abs=1e-6)
    assert pos[k + 1, i, j] == pytest.approx(np.cos(y / div), abs=1e-6)
    assert pos[128 + k, i, j] == pytest.approx(np.sin(x / div), abs=1e-6)


def test_tiny_contract_and_fusion(trained_tiny, held_out):
    model, _ = load_checkpoint(trained_tiny)
    assert not model.is_fused
    x = torch.from_numpy(np.load(held_out / "images.npy")[:3])
    with torch.no_grad():
        uv, v = model(x)
        assert uv.shape == (3, 21, 2) and v.shape == (3, 778, 3)
        fuse(model)
        assert model.is_fused
        uv2, v2 = model(x)
    assert_discriminates(v.numpy(), 1e-4)
    assert_discriminates(uv.numpy(), 1e-5, what="uv")
    assert (v - v2).abs().max().item() < 1e-4
    assert (uv - uv2).abs().max().item() < 1e-5


def test_seeded_models_are_reproducible():
    a = create_model("tiny", seed=3).state_dict()
    b = create_model("tiny", seed=3).state_dict()
    c = create_model("tiny", seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_unknown_config_names_the_choices():
    from simplehand_deploy.errors import UsageError

    with pytest.raises(UsageError, match="fastvit_ma36"):
        get_config("resnet")
    assert set(CONFIGS) >= {"fastvit_ma36", "tiny"}


def test_batch_is_independent(trained_tiny, held_out):
    model, _ = load_checkpoint(trained_tiny)
    x = torch.from_numpy(np.load(held_out / "images.npy")[:4])
    with torch.no_grad():
        _, full = model(x)
        _, single = model(x[2:3])
    assert_discriminates(full.numpy(), 1e-5)
    torch.testing.assert_close(full[2:3], single, atol=1e-5, rtol=0)
