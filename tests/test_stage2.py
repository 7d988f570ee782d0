"""PEAR stage 2: the photometric loss reaches the regressor through both predicted bodies; the
command trains both networks from their checkpoints, writes a checkpoint each loads, resumes,
and names what is missing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.avatar.checkpoint import build_avatar, load_avatar, save_avatar
from backend.body.landmark_model import LandmarkModel
from backend.body.model import BodyModel
from backend.regressor.checkpoint import load_checkpoint, save_checkpoint
from training.avatar.config import RendererTrainConfig
from training.avatar.stage2 import RENDERER, JointModules, PairsForStage2
from training.avatar.stage2_config import Stage2Config
from training.config import CONFIG_DIR, load_config
from training.data.loader import keypoint_sizes
from training.data.pairs import ShardPairs
from training.stage1 import build_network

from .run_support import logged_losses


@pytest.fixture(scope="module")
def networks(open_asset, tmp_path_factory):
    """A tiny regressor and renderer checkpoint for the test asset (untrained)."""
    folder = tmp_path_factory.mktemp("stage2_networks")
    torch.manual_seed(0)
    regressor = build_network(load_config(CONFIG_DIR / "smoke.toml"), open_asset)
    save_checkpoint(regressor, open_asset, folder / "stage1")
    sizes = load_config(CONFIG_DIR / "renderer_smoke.toml", [], RendererTrainConfig).model
    save_avatar(build_avatar(sizes, open_asset), open_asset, folder / "renderer")
    return folder / "stage1", folder / "renderer"


def test_the_rendering_loss_reaches_the_regressor_through_both_bodies(open_asset, pairs_folder,
                                                                       networks):
    regressor = load_checkpoint(networks[0], open_asset).train()
    avatar = load_avatar(networks[1], open_asset).train()
    sets = list(keypoint_sizes(open_asset))
    modules = JointModules(regressor, avatar, BodyModel(open_asset),
                           LandmarkModel(BodyModel(open_asset), sets[1:]), sets)
    data = PairsForStage2(open_asset)
    batch = data.collate([data.prepare(ShardPairs(pairs_folder)[0],
                                       np.random.default_rng(0))])
    bodies = []  # the full body's outputs: the source's, then the target's

    def keep(_module, _inputs, output):
        output.vertices.retain_grad()
        bodies.append(output.vertices)

    modules.body.register_forward_hook(keep)
    _, _, rendering, _ = modules(batch)
    (rendering.image - batch.pairs.target.image).abs().mean().backward()  # photometric only
    assert len(bodies) == 2
    for name, vertices in zip(("source", "target"), bodies, strict=True):
        assert vertices.grad is not None and vertices.grad.abs().sum() > 0, name
    for part in (regressor.backbone, regressor.head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def _stage2_args(pairs_folder, networks, out, *extra):
    return ["stage2", "--set", f"joint.stage1_checkpoint='{networks[0]}'",
            "--set", f"joint.renderer_checkpoint='{networks[1]}'",
            "--set", f"data.train=['{pairs_folder}']", "--set", "optim.batch_size=1",
            "--set", "run.log_every=1", "--set", f"run.out='{out}'", *extra]


def test_stage2_command_trains_both_and_resumes(server_home, monkeypatch, open_asset,
                                                pairs_folder, networks, tmp_path, capsys):
    from training.cli import main

    monkeypatch.setenv("PEAR_HOME", str(server_home))
    out = tmp_path / "run"
    assert main(_stage2_args(pairs_folder, networks, out, "--set", "optim.steps=2")) == 0
    assert "done at step 2" in capsys.readouterr().out
    checkpoint = out / "checkpoint"
    before = load_checkpoint(networks[0], open_asset).state_dict()
    after = load_checkpoint(checkpoint, open_asset).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the regressor trained
    renderer_before = load_avatar(networks[1], open_asset).state_dict()
    renderer_after = load_avatar(checkpoint / RENDERER, open_asset).state_dict()
    assert any(not torch.equal(renderer_before[k], renderer_after[k]) for k in renderer_before)
    assert main(_stage2_args(pairs_folder, networks, out, "--set", "optim.steps=3",
                             "--resume")) == 0
    assert sorted(logged_losses(out)) == [1, 2, 3]
    header = (out / "log.csv").read_text().splitlines()[0]
    assert "photometric" in header and "stage1" in header


def test_stage2_names_the_missing_networks(server_home, monkeypatch, pairs_folder, tmp_path,
                                           capsys):
    from training.cli import main

    monkeypatch.setenv("PEAR_HOME", str(server_home))
    assert main(["stage2", "--set", f"data.train=['{pairs_folder}']",
                 "--set", f"run.out='{tmp_path}'"]) == 2
    assert "joint.stage1_checkpoint" in capsys.readouterr().err
    assert load_config(None, [], Stage2Config).joint.train_renderer
