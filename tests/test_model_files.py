"""Readers of the licensed SMPL-X / FLAME / SMPL files: layouts, and errors naming file and key."""

import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse

from backend.body.build import model_files as readers
from backend.body.errors import ModelFileError


def load_pickle(path):
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="latin1")


def dump_pickle(data, path):
    with open(path, "wb") as handle:
        pickle.dump(data, handle, protocol=2)


def test_smplx_and_flame_layouts(model_files):
    smplx = readers.read_smplx(model_files.smplx)
    assert smplx["v_template"].shape == (10475, 3)
    assert smplx["J_regressor"].shape == (55, 10475)
    assert smplx["posedirs"].shape == (10475, 3, 486)
    flame = readers.read_flame(model_files.flame)
    assert flame["v_template"].shape == (5023, 3)
    assert flame["J_regressor"].shape == (5, 5023)  # stored sparse, read dense
    assert flame["shapedirs"].shape == (5023, 3, 400)
    ids = readers.read_correspondence(model_files.correspondence, 5023, 10475)
    assert len(np.unique(ids)) == 5023


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ModelFileError, match="SMPL-X file not found: .*nothing.npz"):
        readers.read_smplx(tmp_path / "nothing.npz")


def test_missing_key_is_named(model_files, tmp_path):
    with np.load(model_files.smplx) as data:
        payload = {k: data[k] for k in data.files if k != "posedirs"}
    path = tmp_path / "SMPLX_BROKEN.npz"
    np.savez(path, **payload)
    with pytest.raises(ModelFileError, match=r"SMPLX_BROKEN.npz: key 'posedirs' is missing"):
        readers.read_smplx(path)


def test_wrong_shape_is_named(model_files, tmp_path):
    with np.load(model_files.smplx) as data:
        payload = {k: data[k] for k in data.files}
    payload["J_regressor"] = payload["J_regressor"][:24]
    path = tmp_path / "SMPL.npz"
    np.savez(path, **payload)
    with pytest.raises(ModelFileError, match=r"'J_regressor' axis 0 must be 55"):
        readers.read_smplx(path)


def test_flame_with_too_few_components_is_rejected(model_files, tmp_path):
    data = load_pickle(model_files.flame)
    data["shapedirs"] = data["shapedirs"][:, :, :100]
    path = tmp_path / "flame_small.pkl"
    dump_pickle(data, path)
    with pytest.raises(ModelFileError, match="300 shape \\+ 100 expression"):
        readers.read_flame(path)


def test_flame_npz_is_accepted(model_files, tmp_path):
    data = load_pickle(model_files.flame)
    data["J_regressor"] = data["J_regressor"].toarray()
    path = tmp_path / "flame.npz"
    np.savez(path, **data)
    assert readers.read_flame(path)["v_template"].shape == (5023, 3)


def test_chumpy_pickle_explains_the_conversion(tmp_path, monkeypatch):
    """A pickle naming chumpy classes (as the official FLAME files do) gets the conversion hint."""
    module = types.ModuleType("chumpy.ch")

    class Ch:  # stands in for chumpy.ch.Ch only to produce a pickle that names it
        def __init__(self, x):
            self.x = x

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    module.Ch = Ch
    monkeypatch.setitem(sys.modules, "chumpy", types.ModuleType("chumpy"))
    monkeypatch.setitem(sys.modules, "chumpy.ch", module)
    path = tmp_path / "generic_model.pkl"
    dump_pickle({"shapedirs": Ch(np.zeros((3, 3)))}, path)
    monkeypatch.delitem(sys.modules, "chumpy.ch")
    with pytest.raises(ModelFileError, match="chumpy.*convert_flame_pkl.py"):
        readers.read_flame(path)


def test_pickle_cannot_run_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pkl"
    dump_pickle({"v_template": Exploit()}, path)
    with pytest.raises(ModelFileError, match="refuses to unpickle .*print"):
        readers.read_flame(path)


@pytest.mark.parametrize(
    "ids, message",
    [
        (np.arange(10), "expected 5023 integer SMPL-X vertex ids"),
        (np.zeros(5023, np.int64), "must be distinct"),
        (np.arange(5023) * 1.0, "expected 5023 integer"),
    ],
)
def test_bad_correspondence(tmp_path, ids, message):
    path = tmp_path / "ids.npy"
    np.save(path, ids)
    with pytest.raises(ModelFileError, match=message):
        readers.read_correspondence(path, 5023, 10475)


def test_smplx_10_and_300_component_layouts_split_like_the_smplx_package():
    assert readers.smplx_shape_split(20) == (10, 10)
    assert readers.smplx_shape_split(400) == (300, 100)


def test_smpl_rest_joints_from_npz_and_plain_pickle(tmp_path):
    rng = np.random.default_rng(0)
    template = rng.normal(size=(40, 3))
    regressor = rng.random((24, 40))
    regressor /= regressor.sum(1, keepdims=True)
    np.savez(tmp_path / "SMPL_NEUTRAL.npz", v_template=template, J_regressor=regressor,
             f=np.zeros((1, 3), np.int64))
    joints = readers.read_smpl_rest_joints(tmp_path / "SMPL_NEUTRAL.npz")
    assert joints == pytest.approx(regressor @ template)
    # SMPL's pickles store the regressor sparse (after conversion: no chumpy left).
    dump_pickle({"v_template": template, "J_regressor": scipy.sparse.csc_matrix(regressor)},
                tmp_path / "SMPL_NEUTRAL.pkl")
    assert readers.read_smpl_rest_joints(tmp_path / "SMPL_NEUTRAL.pkl") == pytest.approx(joints)
    np.savez(tmp_path / "SMPL_BAD.npz", v_template=template, J_regressor=regressor[:, :30])
    with pytest.raises(ModelFileError, match="SMPL_BAD.npz: 'J_regressor' covers 30 vertices"):
        readers.read_smpl_rest_joints(tmp_path / "SMPL_BAD.npz")
    np.savez(tmp_path / "SMPL_22.npz", v_template=template, J_regressor=regressor[:22])
    with pytest.raises(ModelFileError, match="'J_regressor' axis 0 must be 24"):
        readers.read_smpl_rest_joints(tmp_path / "SMPL_22.npz")
