"""Readers for the user-installed, licensed model files: SMPL-X (.npz), FLAME (.pkl / .npz),
the SMPL-X<->FLAME vertex correspondence (.npy), FLAME eyelid blend shapes (.npz / .npy pair)
and SMPL's rest joints (.npz / .pkl; training's Eq. 4 offset needs nothing else of SMPL).

Each reader checks keys and array ranks and raises ModelFileError naming the file, the key and
what was expected. Pickles are read with an unpickler that only rebuilds numpy arrays and scipy
sparse matrices: a model file can never run code.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse

from ..errors import ModelFileError

SMPLX_NUM_JOINTS = 55
FLAME_NUM_JOINTS = 5
SMPL_NUM_JOINTS = 24
FLAME_CONVERT_HINT = (
    "Official FLAME and SMPL .pkl files store 'chumpy' objects, which cannot be read on "
    "Python 3.11. Convert the file once with scripts/convert_flame_pkl.py in any Python where "
    "chumpy imports (e.g. `python3.10 -m pip install chumpy numpy && python3.10 "
    "scripts/convert_flame_pkl.py generic_model.pkl flame.npz`, likewise for SMPL files) and "
    "use the resulting .npz."
)

_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("scipy.sparse.csc", "csc_matrix"),
    ("scipy.sparse._csc", "csc_matrix"),
    ("scipy.sparse.csr", "csr_matrix"),
    ("scipy.sparse._csr", "csr_matrix"),
    ("_codecs", "encode"),  # numpy arrays pickled by Python 2 carry their bytes through this
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        if module.startswith("chumpy"):
            raise ModelFileError(f"{self._path}: holds chumpy objects ({module}.{name}). "
                                 + FLAME_CONVERT_HINT)
        raise ModelFileError(
            f"{self._path}: refuses to unpickle {module}.{name}; model pickles may only hold "
            "numpy arrays and scipy sparse matrices"
        )


def _load_mapping(path: Path, what: str) -> dict[str, object]:
    """Read an .npz or .pkl file into a plain dict."""
    if not path.is_file():
        raise ModelFileError(f"{what} file not found: {path}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise ModelFileError(f"{path}: not a readable {what} .npz file ({exc})") from exc
    if path.suffix == ".pkl":
        try:
            with open(path, "rb") as handle:
                data = _ArraysOnlyUnpickler(handle, path).load()
        except ModelFileError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
            raise ModelFileError(f"{path}: not a readable {what} .pkl file ({exc})") from exc
        if not isinstance(data, dict):
            raise ModelFileError(f"{path}: expected a dict of arrays, found {type(data).__name__}")
        return data
    raise ModelFileError(f"{path}: {what} must be a .npz or .pkl file")


def _array(
    path: Path, data: dict, key: str, ndim: int, shape: dict[int, int] | None = None,
    dtype: type = np.float32,
) -> np.ndarray:
    """Fetch ``data[key]`` as a dense array of rank ``ndim`` with the given fixed axes."""
    if key not in data:
        raise ModelFileError(f"{path}: key {key!r} is missing (found keys: {sorted(data)})")
    value = data[key]
    if scipy.sparse.issparse(value):
        value = value.toarray()
    try:
        value = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: {key!r} is not a numeric array ({exc})") from exc
    if value.ndim != ndim:
        raise ModelFileError(f"{path}: {key!r} must have {ndim} dimensions, found {value.shape}")
    for axis, size in (shape or {}).items():
        if value.shape[axis] != size:
            raise ModelFileError(
                f"{path}: {key!r} axis {axis} must be {size}, found shape {value.shape}"
            )
    return value


def _rigged_mesh(path: Path, data: dict, num_joints: int) -> dict[str, np.ndarray]:
    """The arrays SMPL-X and FLAME files share, checked against each other."""
    j = num_joints
    model = {
        "v_template": _array(path, data, "v_template", 2, {1: 3}),
        "f": _array(path, data, "f", 2, {1: 3}, np.int64),
        "J_regressor": _array(path, data, "J_regressor", 2, {0: j}),
        "weights": _array(path, data, "weights", 2, {1: j}),
        "kintree_table": _array(path, data, "kintree_table", 2, {0: 2, 1: j}, np.int64),
        "shapedirs": _array(path, data, "shapedirs", 3, {1: 3}),
        "posedirs": _array(path, data, "posedirs", 3, {1: 3}),
    }
    num_vertices = model["v_template"].shape[0]
    for key, axis in (("shapedirs", 0), ("posedirs", 0), ("weights", 0)):
        if model[key].shape[axis] != num_vertices:
            raise ModelFileError(f"{path}: {key!r} has {model[key].shape[axis]} vertices, "
                                 f"v_template has {num_vertices}")
    if model["J_regressor"].shape[1] != num_vertices:
        raise ModelFileError(f"{path}: 'J_regressor' covers {model['J_regressor'].shape[1]} "
                             f"vertices, v_template has {num_vertices}")
    if model["posedirs"].shape[2] != (num_joints - 1) * 9:
        raise ModelFileError(f"{path}: 'posedirs' must have {(num_joints - 1) * 9} pose "
                             f"features, found {model['posedirs'].shape[2]}")
    if model["f"].min() < 0 or model["f"].max() >= num_vertices:
        raise ModelFileError(f"{path}: 'f' indexes vertices outside [0, {num_vertices})")
    return model


def read_smplx(path: str | Path) -> dict[str, np.ndarray]:
    """An SMPL-X model file (``SMPLX_NEUTRAL.npz`` and friends)."""
    path = Path(path)
    data = _load_mapping(path, "SMPL-X")
    model = _rigged_mesh(path, data, SMPLX_NUM_JOINTS)
    if model["shapedirs"].shape[2] < 20:
        raise ModelFileError(f"{path}: 'shapedirs' must hold >= 20 components (shape + "
                             f"expression), found {model['shapedirs'].shape[2]}")
    if "lmk_faces_idx" in data and "lmk_bary_coords" in data:
        model["lmk_faces_idx"] = _array(path, data, "lmk_faces_idx", 1, dtype=np.int64)
        model["lmk_bary_coords"] = _array(path, data, "lmk_bary_coords", 2, {1: 3})
    return model


def smplx_shape_split(num_components: int) -> tuple[int, int]:
    """Where SMPL-X's expression components start and how many there are.

    SMPL-X 1.1 files hold 300 shape + 100 expression components; 1.0 files hold 10 + 10.
    (The same rule as the ``smplx`` package, so that both read a file identically.)
    """
    if num_components >= 400:
        return 300, 100
    return 10, 10


def read_flame(path: str | Path) -> dict[str, np.ndarray]:
    """A FLAME 2020 / 2023 model file (.pkl holding plain arrays, or .npz)."""
    path = Path(path)
    data = _load_mapping(path, "FLAME")
    model = _rigged_mesh(path, data, FLAME_NUM_JOINTS)
    if model["shapedirs"].shape[2] < 400:
        raise ModelFileError(f"{path}: FLAME 'shapedirs' must hold 300 shape + 100 expression "
                             f"components, found {model['shapedirs'].shape[2]}")
    return model


def read_smpl_rest_joints(path: str | Path) -> np.ndarray:
    """SMPL's 24 T-pose joints, ``J_regressor @ v_template``, from a SMPL model file
    (``SMPL_NEUTRAL.npz``, or a .pkl holding plain arrays)."""
    path = Path(path)
    data = _load_mapping(path, "SMPL")
    template = _array(path, data, "v_template", 2, {1: 3}, np.float64)
    regressor = _array(path, data, "J_regressor", 2, {0: SMPL_NUM_JOINTS}, np.float64)
    if regressor.shape[1] != template.shape[0]:
        raise ModelFileError(f"{path}: 'J_regressor' covers {regressor.shape[1]} vertices, "
                             f"v_template has {template.shape[0]}")
    return regressor @ template


def read_correspondence(path: str | Path, num_flame: int, num_smplx: int) -> np.ndarray:
    """SMPL-X vertex id of every FLAME vertex (``SMPL-X__FLAME_vertex_ids.npy``)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"SMPL-X<->FLAME correspondence file not found: {path}")
    try:
        ids = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ModelFileError(f"{path}: not a readable .npy array ({exc})") from exc
    if ids.shape != (num_flame,) or not np.issubdtype(ids.dtype, np.integer):
        raise ModelFileError(f"{path}: expected {num_flame} integer SMPL-X vertex ids (one per "
                             f"FLAME vertex), found {ids.dtype} array of shape {ids.shape}")
    if ids.min() < 0 or ids.max() >= num_smplx or len(np.unique(ids)) != len(ids):
        raise ModelFileError(f"{path}: ids must be distinct and lie in [0, {num_smplx})")
    return ids.astype(np.int64)


def read_eyelids(path: str | Path, num_flame: int) -> np.ndarray:
    """Eyelid blend shapes (2, H, 3), left then right: an .npz with ``l_eyelid``, ``r_eyelid``."""
    path = Path(path)
    data = _load_mapping(path, "eyelid blend shape")
    left = _array(path, data, "l_eyelid", 2, {0: num_flame, 1: 3})
    right = _array(path, data, "r_eyelid", 2, {0: num_flame, 1: 3})
    return np.stack([left, right])
