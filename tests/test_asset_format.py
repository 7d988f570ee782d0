"""The asset file: round trip, and validation errors that name the offending field."""

import json

import numpy as np
import pytest

from backend.archive import META_KEY
from backend.body.asset import Asset, load_asset, save_asset
from backend.body.errors import AssetFormatError


def _copy(asset: Asset, **arrays) -> dict:
    return {**{k: v.copy() for k, v in asset.arrays.items()}, **arrays}


def test_round_trip_preserves_arrays_meta_and_landmarks(ehm_asset, tmp_path):
    path = save_asset(ehm_asset, tmp_path / "ehm.npz")
    loaded = load_asset(path)
    assert loaded.meta["asset_id"] == ehm_asset.asset_id
    assert loaded.spec_hash == ehm_asset.spec_hash
    assert set(loaded.arrays) == set(ehm_asset.arrays)
    for name, array in ehm_asset.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[name], array)
    assert set(loaded.landmarks) == {"smplx_face_static"}
    np.testing.assert_array_equal(loaded.landmarks["smplx_face_static"].weights,
                                  ehm_asset.landmarks["smplx_face_static"].weights)
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize(
    "field, change, message",
    [
        ("v_template", lambda a: a[:, :2], "v_template: axis 1 must be 3"),
        ("faces", lambda a: a.astype(np.int64), "faces: expected dtype int32"),
        ("lbs_weights", lambda a: a[:-1], "lbs_weights: axis 0 is V="),
        ("shapedirs", lambda a: a[..., 0], "shapedirs: expected 3 dimensions"),
        ("posedirs", lambda a: a[..., :-9], "posedirs: expected 486 pose features"),
        ("faces", lambda a: a + 100000, "faces: indices must lie in"),
        ("parents", lambda a: a[::-1].copy(), "parents: the root must come first"),
    ],
)
def test_malformed_array_names_the_field(smplx_asset, field, change, message):
    arrays = _copy(smplx_asset)
    arrays[field] = change(arrays[field])
    with pytest.raises(AssetFormatError, match=message.replace("(", r"\(")):
        Asset(arrays=arrays, meta=dict(smplx_asset.meta))


def test_missing_required_array_is_named(smplx_asset):
    arrays = _copy(smplx_asset)
    del arrays["J_regressor"]
    with pytest.raises(AssetFormatError, match="J_regressor: required array is missing"):
        Asset(arrays=arrays, meta=dict(smplx_asset.meta))


def test_incomplete_head_model_is_rejected(ehm_asset):
    arrays = _copy(ehm_asset)
    del arrays["head_posedirs"]
    with pytest.raises(AssetFormatError, match="head model is incomplete.*head_posedirs"):
        Asset(arrays=arrays, meta=dict(ehm_asset.meta))


def test_newer_format_version_asks_for_an_update(smplx_asset):
    meta = dict(smplx_asset.meta, format_version=99)
    with pytest.raises(AssetFormatError, match="newer than this backend reads"):
        Asset(arrays=_copy(smplx_asset), meta=meta)


def test_unreadable_files_give_typed_errors(tmp_path, smplx_asset):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(AssetFormatError, match="not a readable asset"):
        load_asset(garbage)
    no_meta = tmp_path / "no_meta.npz"
    np.savez(no_meta, v_template=np.zeros((3, 3), np.float32))
    with pytest.raises(AssetFormatError, match="no meta.json entry"):
        load_asset(no_meta)
    bad_json = tmp_path / "bad_json.npz"
    np.savez(bad_json, **{META_KEY: np.frombuffer(b"{oops", np.uint8)})
    with pytest.raises(AssetFormatError, match="not valid JSON"):
        load_asset(bad_json)
    with pytest.raises(AssetFormatError, match="no such asset file"):
        load_asset(tmp_path / "missing.npz")


def test_asset_files_never_unpickle(tmp_path, smplx_asset):
    """An object array smuggled into an asset is refused, not executed."""
    path = save_asset(smplx_asset, tmp_path / "a.npz")
    with np.load(path) as data:
        payload = {k: data[k] for k in data.files}
    payload["uv_coords"] = np.array([object()], dtype=object)
    np.savez(path, **payload)
    with pytest.raises(AssetFormatError):
        load_asset(path)


def test_meta_is_plain_json(smplx_asset, tmp_path):
    path = save_asset(smplx_asset, tmp_path / "a.npz")
    with np.load(path) as data:
        meta = json.loads(data[META_KEY].tobytes())
    assert meta["format"] == "pear-ehm-asset"
    assert [p["name"] for p in meta["param_spec"]][:2] == ["global_orient", "body_pose"]
