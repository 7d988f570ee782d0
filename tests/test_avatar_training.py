"""Training the avatar renderer: the losses, an overfit on one pair, the command line (run,
resume onto the same curve, evaluation beside the baselines), and bad input named."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backend.avatar.checkpoint import build_avatar, load_avatar
from backend.avatar.model import Avatar, Rendering
from backend.body.model import BodyModel
from training.avatar.batch import PARTS, collate_pairs
from training.avatar.config import AvatarLossConfig, RendererTrainConfig
from training.avatar.coupling import pose_descent
from training.avatar.evaluate import evaluate_renderer
from training.avatar.losses import avatar_loss, crop, perceptual_loss
from training.avatar.train import train_renderer
from training.config import CONFIG_DIR, load_config
from training.data.pairs import ShardPairs

from .run_support import finish, kill_after_first_checkpoint, logged_losses, run_pear_train

SMOKE = CONFIG_DIR / "renderer_smoke.toml"
STEPS_COUPLING = 40


def test_losses_vanish_at_the_truth_and_limits_hold(pairs_folder):
    batch = collate_pairs([ShardPairs(pairs_folder)[0]])
    assert batch.has_box.any()  # the target shows a face or a hand
    truth = batch.target.image
    count = 10
    inside = Avatar(torch.ones(1, count, 3), torch.tensor([[1.0, 0, 0, 0]]).repeat(1, count, 1),
                    torch.full((1, count, 3), 0.5), torch.ones(1, count),
                    torch.zeros(1, count, 8))
    perfect = Rendering(truth, truth, batch.target.alpha)
    losses = avatar_loss(perfect, inside, batch, AvatarLossConfig(), perceptual_loss())
    assert float(losses.total) == pytest.approx(0.0, abs=1e-5)
    assert {f"refined_{part}_l1" for part, has in zip(PARTS, batch.has_box[0], strict=True)
            if has} <= set(losses.terms)
    outside = Avatar(torch.full((1, count, 3), 4.0), inside.quats, torch.full((1, count, 3), 2.0),
                     inside.opacities, inside.colors)
    far = avatar_loss(perfect, outside, batch, AvatarLossConfig(), perceptual_loss())
    assert far.terms["position"] > 0 and far.terms["scale"] > 0
    blurred = Rendering(torch.zeros_like(truth), truth, batch.target.alpha)
    assert avatar_loss(blurred, inside, batch, AvatarLossConfig(), perceptual_loss()).total > 0.1


def test_crop_resamples_a_box():
    image = torch.arange(64.0).reshape(1, 1, 8, 8)
    whole = crop(image, torch.tensor([[0.0, 0.0, 8.0, 8.0]]), 8)
    torch.testing.assert_close(whole, image)
    # Each output pixel samples the centre of its quarter: the mean of a 2x2 block of pixels.
    corner = crop(image, torch.tensor([[0.0, 0.0, 4.0, 4.0]]), 2)
    torch.testing.assert_close(corner[0, 0], torch.tensor([[4.5, 6.5], [20.5, 22.5]]))


@pytest.fixture(scope="module")
def one_pair(open_asset, pairs_folder, tmp_path_factory):
    """A renderer overfitted on one pair (100 steps): its checkpoint, the pair, and the scores
    of the untrained network on it."""
    one = [ShardPairs(pairs_folder)[0]]
    out = tmp_path_factory.mktemp("one_pair")
    config = load_config(SMOKE, ["optim.steps=100", "optim.lr=3e-3", f"run.out='{out}'",
                                 "run.log_every=100", "run.checkpoint_every=100"],
                         RendererTrainConfig)
    torch.manual_seed(0)
    before = evaluate_renderer(build_avatar(config.model, open_asset), open_asset, one, 1)
    return train_renderer(config, open_asset, one).checkpoint, one, before


def test_the_renderer_learns_one_pair(open_asset, one_pair):
    """An overfit: PSNR on the pair rises by at least 10 dB."""
    checkpoint, one, before = one_pair
    after = evaluate_renderer(load_avatar(checkpoint, open_asset), open_asset, one, 1)
    assert after["avatar"]["psnr"] >= before["avatar"]["psnr"] + 10, (before, after)
    assert after["avatar"]["psnr"] > after["projected_colours"]["psnr"]


def test_the_rendering_pulls_noisy_target_parameters_back(open_asset, one_pair):
    """The coupling stage 2 relies on: with the trained renderer and the true source body,
    gradient descent on a noisy target pose through the photometric loss alone lowers its
    joints' error."""
    checkpoint, one, _ = one_pair
    # The splatted colours: after one pair the refiner has memorised its target, so the
    # refined image says little about the pose (measured: the error grows through it).
    coupling = pose_descent(load_avatar(checkpoint, open_asset), BodyModel(open_asset),
                            collate_pairs(one), steps=STEPS_COUPLING, through="raw")
    assert coupling.end_mm < 0.92 * coupling.start_mm, coupling  # measured: 85.0 -> 72.5 mm


def _renderer_args(pairs_folder, out, *extra):
    return ["renderer", "--config", str(SMOKE), "--set", f"data.train=['{pairs_folder}']",
            "--set", f"run.out='{out}'", *extra]


def test_a_renderer_run_killed_with_sigkill_resumes_onto_the_same_curve(
        server_home, pairs_folder, tmp_path):
    settings = ["--set", "optim.steps=6", "--set", "run.checkpoint_every=2"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    finish(run_pear_train(_renderer_args(pairs_folder, whole, *settings), server_home))
    header = (whole / "log.csv").read_text().splitlines()[0]
    assert "refined_ssim" in header and "lpips" not in header  # the stand-in, named
    process = run_pear_train(_renderer_args(pairs_folder, parts, *settings), server_home)
    assert kill_after_first_checkpoint(parts, process) < 6  # killed mid-run
    finish(run_pear_train(_renderer_args(pairs_folder, parts, *settings, "--resume"),
                          server_home))
    expected, resumed = logged_losses(whole), logged_losses(parts)
    assert sorted(resumed) == list(range(1, 7))
    for step in expected:
        assert resumed[step] == pytest.approx(expected[step], rel=1e-5), step


def test_two_renderer_processes_under_torchrun_match_one_with_the_whole_batch(
        server_home, pairs_folder, tmp_path):
    steps = ["--set", "optim.steps=3"]
    finish(run_pear_train(_renderer_args(pairs_folder, tmp_path / "one", *steps, "--set",
                                         "optim.batch_size=2"), server_home))
    finish(run_pear_train(_renderer_args(pairs_folder, tmp_path / "two", *steps), server_home,
                          nproc=2))
    for column in ("loss", "refined_l1"):  # the terms too: the whole batch's, not rank 0's
        one = logged_losses(tmp_path / "one", column)
        two = logged_losses(tmp_path / "two", column)
        assert sorted(one) == sorted(two) == [1, 2, 3]
        for step in one:
            assert two[step] == pytest.approx(one[step], rel=2e-3), (column, step)


def test_renderer_eval_command_and_bad_checkpoints(server_home, monkeypatch, pairs_folder,
                                                   tmp_path, capsys):
    from training.cli import main

    monkeypatch.setenv("PEAR_HOME", str(server_home))
    out = tmp_path / "run"
    assert main(_renderer_args(pairs_folder, out, "--set", "optim.steps=2")) == 0
    capsys.readouterr()
    sheet = tmp_path / "sheet.png"
    assert main(["renderer-eval", "--checkpoint", str(out / "checkpoint"), "--data",
                 str(pairs_folder), "--json", "--sheet", str(sheet), "--coupling", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"avatar", "avatar_raw", "projected_colours", "mean_image",
                           "coupling_raw", "coupling_refined"}
    assert result["coupling_raw"]["pairs"] == 1 and result["coupling_raw"]["start_mm"] > 10
    assert result["avatar"]["pairs"] == 2 and np.isfinite(result["avatar"]["psnr"])
    assert sheet.stat().st_size > 1000
    assert main(["renderer-eval", "--checkpoint", str(tmp_path / "none"), "--data",
                 str(pairs_folder)]) == 3
    assert "no renderer checkpoint" in capsys.readouterr().err
    config = out / "checkpoint" / "config.json"
    config.write_text(config.read_text().replace('"spec_hash": "', '"spec_hash": "x'))
    assert main(["renderer-eval", "--checkpoint", str(out / "checkpoint"), "--data",
                 str(pairs_folder)]) == 3
    assert "was trained for body model" in capsys.readouterr().err
