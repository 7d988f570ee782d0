"""Building assets from SMPL-X (+ FLAME) files."""

import numpy as np
import pytest

from backend.body.build.smplx_asset import build_smplx_asset
from backend.body.errors import ModelFileError


def test_ehm_asset_has_the_flame_head_and_guava_parameters(ehm_asset, model_files):
    summary = ehm_asset.summary()
    assert summary["kind"] == "smplx+flame"
    assert summary["vertices"] == 10475 and summary["joints"] == 55
    assert summary["params"]["shape"] == 20 and summary["params"]["expression"] == 20
    assert summary["params"]["eyelids"] == 2 and summary["params"]["head_scale"] == 3
    assert summary["params"]["joints_offset"] == 165
    # FLAME articulates jaw and eyes; SMPL-X's own jaw/eye joints are driven by nothing.
    driven = {j for joints in ehm_asset.meta["pose_joints"].values() for j in joints}
    assert driven.isdisjoint({22, 23, 24})
    ids = np.load(model_files.correspondence)
    np.testing.assert_array_equal(ehm_asset.arrays["head_vertex_ids"], ids)
    assert "non-commercial" in summary["license"]


def test_plain_smplx_asset_uses_its_own_expression_space(smplx_asset):
    summary = smplx_asset.summary()
    assert summary["kind"] == "smplx"
    assert "shape" not in summary["params"] and "head_scale" not in summary["params"]
    assert smplx_asset.arrays["exprdirs"].shape == (10475, 3, 10)


def test_without_eyelid_file_there_is_no_eyelid_parameter(model_files):
    asset = build_smplx_asset(model_files.smplx, flame_path=model_files.flame,
                              correspondence_path=model_files.correspondence,
                              num_head_shape=5, num_expression=5)
    assert "eyelids" not in asset.summary()["params"]


def test_flame_without_correspondence_says_what_is_missing(model_files):
    with pytest.raises(ModelFileError, match="needs the SMPL-X<->FLAME vertex correspondence"):
        build_smplx_asset(model_files.smplx, flame_path=model_files.flame)


def test_correspondence_without_flame_is_an_error(model_files):
    with pytest.raises(ModelFileError, match="without a FLAME file"):
        build_smplx_asset(model_files.smplx, correspondence_path=model_files.correspondence)


def test_sizes_are_clipped_to_what_the_files_hold(model_files):
    asset = build_smplx_asset(model_files.smplx, num_betas=300, num_expression=100)
    assert asset.summary()["params"]["betas"] == 10  # a 10+10 component file
    assert asset.summary()["params"]["expression"] == 10


def test_spec_hash_tells_configurations_apart(model_files, ehm_asset, smplx_asset):
    assert ehm_asset.spec_hash != smplx_asset.spec_hash
    again = build_smplx_asset(model_files.smplx, num_betas=10, num_expression=10)
    assert again.spec_hash == smplx_asset.spec_hash
