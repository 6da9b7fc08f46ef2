from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse

from simplehand_deploy.errors import UsageError
from simplehand_deploy.joints import FINGERTIP_VERTICES, MANO_TO_FREIHAND, load_regressor


def _fake_jreg(seed=0):
    rng = np.random.default_rng(seed)
    j = rng.random((16, 778)) * (rng.random((16, 778)) > 0.9)
    return j / j.sum(1, keepdims=True)


def test_plain_numpy_mano_pickle(tmp_path):
    j = _fake_jreg()
    with open(tmp_path / "MANO_RIGHT.pkl", "wb") as f:
        pickle.dump({"J_regressor": j, "f": np.zeros((1538, 3), np.uint32)}, f)
    r = load_regressor(tmp_path / "MANO_RIGHT.pkl")
    assert r.shape == (21, 778) and r.dtype == np.float32
    np.testing.assert_allclose(r[0], j[0], rtol=1e-6)  # wrist stays first
    np.testing.assert_allclose(r[1], j[13], rtol=1e-6)  # thumb base comes from MANO row 13
    assert r[4, FINGERTIP_VERTICES[0]] == 1.0 and r[4].sum() == 1.0  # thumb tip is vertex 744
    assert r[20, FINGERTIP_VERTICES[4]] == 1.0  # pinky tip is vertex 672
    assert sorted(MANO_TO_FREIHAND) == list(range(21))


def test_sparse_regressor_and_chumpy_objects_load_without_chumpy(tmp_path):
    """The official MANO release: scipy-sparse J_regressor beside chumpy objects."""
    import types

    fake = types.ModuleType("chumpy.ch")

    class Ch:  # a stand-in with chumpy's module path
        def __init__(self, x):
            self.x = x

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    fake.Ch = Ch
    import sys

    sys.modules["chumpy"] = types.ModuleType("chumpy")
    sys.modules["chumpy.ch"] = fake
    try:
        j = _fake_jreg(1)
        data = {"J_regressor": scipy.sparse.csc_matrix(j), "shapedirs": Ch(np.zeros(3))}
        with open(tmp_path / "mano.pkl", "wb") as f:
            pickle.dump(data, f, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    r = load_regressor(tmp_path / "mano.pkl")
    np.testing.assert_allclose(r[5], j[1], rtol=1e-6)  # index base = MANO row 1


def test_bad_regressors(tmp_path):
    np.save(tmp_path / "r.npy", np.zeros((16, 778), np.float32))
    with pytest.raises(UsageError, match=r"\(21, 778\)"):
        load_regressor(tmp_path / "r.npy")
    (tmp_path / "x.pkl").write_text("not a pickle")
    with pytest.raises(UsageError, match=r"x\.pkl"):
        load_regressor(tmp_path / "x.pkl")
    with pytest.raises(UsageError, match="no such file"):
        load_regressor(tmp_path / "missing.pkl")
