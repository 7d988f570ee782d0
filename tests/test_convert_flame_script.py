"""scripts/convert_flame_pkl.py turns chumpy-style values into arrays our reader accepts."""

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import scipy.sparse

from backend.body.build.model_files import read_flame

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "convert_flame_pkl.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("convert_flame_pkl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _ValueHolder:
    """Has chumpy's interface for reading a value: the ``.r`` attribute."""

    def __init__(self, value):
        self.r = value


def test_converted_file_installs(model_files, tmp_path):
    script = _load_script()
    with open(model_files.flame, "rb") as handle:
        model = pickle.load(handle, encoding="latin1")
    wrapped = {k: (_ValueHolder(v) if k in ("shapedirs", "v_template") else v)
               for k, v in model.items()}
    wrapped["bs_style"] = "lbs"  # official files carry strings too
    arrays = script.plain_arrays(wrapped)
    assert "bs_style" not in arrays
    assert isinstance(model["J_regressor"], scipy.sparse.spmatrix | scipy.sparse.sparray)
    out = tmp_path / "flame.npz"
    np.savez(out, **arrays)
    flame = read_flame(out)
    np.testing.assert_array_equal(flame["shapedirs"], model["shapedirs"].astype(np.float32))
