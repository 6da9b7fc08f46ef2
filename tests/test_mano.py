"""MANO forward pass on a MANO-shaped random model: each part of the skinning checked against a closed form."""

from __future__ import annotations

import dataclasses
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from simplehand_deploy import mano
from simplehand_deploy.errors import UsageError
from simplehand_deploy.testing import MANO_PARENTS, write_mano_like


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> mano.ManoModel:
    return mano.load_mano(write_mano_like(tmp_path_factory.mktemp("mano") / "MANO_RIGHT.pkl", seed=3))


def _pose(global_aa=(0, 0, 0), fingers=None) -> np.ndarray:
    p = np.zeros((1, 48))
    p[0, :3] = global_aa
    if fingers is not None:
        p[0, 3:] = fingers
    return p


def test_rest_pose_is_the_template(model: mano.ManoModel) -> None:
    v, j = mano.forward(model, _pose(), np.zeros(10), flat_hand_mean=True)
    np.testing.assert_allclose(v[0], model.v_template, atol=1e-12)
    np.testing.assert_allclose(j[0], model.j_regressor @ model.v_template, atol=1e-12)
    assert list(model.parents) == list(MANO_PARENTS)


def test_shape_blend_and_translation(model: mano.ManoModel) -> None:
    betas = np.linspace(-2, 2, 10)
    t = np.array([[0.1, -0.05, 0.6]])
    v, j = mano.forward(model, _pose(), betas, t, flat_hand_mean=True)
    shaped = model.v_template + model.shapedirs @ betas
    np.testing.assert_allclose(v[0], shaped + t, atol=1e-12)
    np.testing.assert_allclose(j[0], model.j_regressor @ shaped + t, atol=1e-12)


def test_global_rotation_turns_the_hand_about_the_wrist(model: mano.ManoModel) -> None:
    aa = np.array([0.3, -1.1, 0.7])
    v, j = mano.forward(model, _pose(aa), np.zeros(10), flat_hand_mean=True)
    r = Rotation.from_rotvec(aa).as_matrix()
    j0 = model.j_regressor[0] @ model.v_template
    np.testing.assert_allclose(v[0], (model.v_template - j0) @ r.T + j0, atol=1e-10)
    np.testing.assert_allclose(j[0, 0], j0, atol=1e-12)


def test_pose_correctives_and_the_kinematic_chain(model: mano.ManoModel) -> None:
    """Joint 2's child vertices follow joint 1's rotation about joint 1; posedirs add (R - I) per finger joint."""
    weights = np.zeros_like(model.weights)
    weights[:, 2] = 1.0  # every vertex rides on joint 2 (child of 1, child of the root)
    rigid = dataclasses.replace(model, weights=weights, posedirs=np.zeros_like(model.posedirs))
    aa1 = np.array([0.0, 0.4, -0.9])
    fingers = np.zeros(45)
    fingers[0:3] = aa1  # joint 1 = first finger value triple
    v, j = mano.forward(rigid, _pose(fingers=fingers), np.zeros(10), pca=False, flat_hand_mean=True)
    r1 = Rotation.from_rotvec(aa1).as_matrix()
    rest_j = model.j_regressor @ model.v_template
    np.testing.assert_allclose(v[0], (model.v_template - rest_j[1]) @ r1.T + rest_j[1], atol=1e-10)
    np.testing.assert_allclose(j[0, 2], (rest_j[2] - rest_j[1]) @ r1.T + rest_j[1], atol=1e-10)

    rooted = np.zeros_like(model.weights)
    rooted[:, 0] = 1.0
    corrective = dataclasses.replace(model, weights=rooted)
    v, _ = mano.forward(corrective, _pose(fingers=fingers), np.zeros(10), pca=False, flat_hand_mean=True)
    feature = np.zeros(135)
    feature[0:9] = (r1 - np.eye(3)).ravel()
    np.testing.assert_allclose(v[0], model.v_template + model.posedirs @ feature, atol=1e-10)


def test_pca_pose_adds_the_mean_hand(model: mano.ManoModel) -> None:
    coeffs = np.random.default_rng(0).normal(0, 0.5, 45)
    v_pca, _ = mano.forward(model, _pose((0.1, 0.2, 0.3), coeffs), np.ones(10))
    aa = coeffs @ model.hands_components + model.hands_mean
    v_aa, _ = mano.forward(model, _pose((0.1, 0.2, 0.3), aa), np.ones(10), pca=False, flat_hand_mean=True)
    np.testing.assert_allclose(v_pca, v_aa, atol=1e-12)
    v_flat, _ = mano.forward(model, _pose((0.1, 0.2, 0.3), coeffs), np.ones(10), flat_hand_mean=True)
    assert np.abs(v_flat - v_pca).max() > 1e-3  # the mean pose matters


def test_chumpy_pickles_load_without_chumpy(tmp_path: Path, model: mano.ManoModel) -> None:
    """The official files hold chumpy arrays; a stand-in class pickled under chumpy's module name loads too."""
    fake = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x: np.ndarray) -> None:
            self.x = x

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    fake.Ch = Ch  # type: ignore[attr-defined]
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = types.ModuleType("chumpy"), fake
    try:
        data = pickle.loads((Path(model.path)).read_bytes())
        data["v_template"] = Ch(data["v_template"])
        data["shapedirs"] = Ch(data["shapedirs"])
        (tmp_path / "m.pkl").write_bytes(pickle.dumps(data))
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    loaded = mano.load_mano(tmp_path / "m.pkl")
    np.testing.assert_array_equal(loaded.v_template, model.v_template)
    np.testing.assert_array_equal(loaded.shapedirs, model.shapedirs)


def test_bad_files_name_the_file(tmp_path: Path, model: mano.ManoModel) -> None:
    with pytest.raises(UsageError, match="no such file"):
        mano.load_mano(tmp_path / "missing.pkl")
    data = pickle.loads(Path(model.path).read_bytes())
    del data["posedirs"]
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(data))
    with pytest.raises(UsageError, match=r"cut\.pkl: no 'posedirs' entry"):
        mano.load_mano(tmp_path / "cut.pkl")
