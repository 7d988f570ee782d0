"""The estimators behind fit, bake and serve: tracker, regressor and regressor+tracker.

No trained checkpoint exists on this machine, so the regressor ones run on a checkpoint the
test writes (a small untrained network, saved and loaded through the real checkpoint code):
what is tested is the plumbing — crops from the detected person, estimates in the result,
the tracker started from them — and that without a checkpoint they are unavailable, with why.
"""

from __future__ import annotations

import collections
import shutil

import cv2
import numpy as np
import pytest
import torch
from pear_recover_mesh.footage import image_sequence
from pear_recover_mesh.session import RecoverSession, RecoverSettings

from backend.perception.frames import Frame
from backend.pipeline.demo import demo_frames
from backend.pipeline.recovery import ClipRecovery, load_regressor, regressor_problem
from backend.regressor.checkpoint import save_checkpoint
from backend.regressor.errors import RegressorUnavailable
from backend.regressor.layout import ParamLayout
from backend.regressor.model import PearRegressor, RegressorConfig
from backend.server.client import BackendError, Client, frames_of
from backend.server.process import serve_process
from backend.tracking.tracker import (
    CONTACT_STAGE,
    DEFAULT_ITERATIONS,
    ITERATIONS_WITHOUT_CONTACT,
    REFINE_ITERATIONS,
    TrackerConfig,
)

FRAMES = 4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, open_asset):
    torch.manual_seed(0)
    network = PearRegressor(RegressorConfig("vit_s", head_dim=64, head_depth=1, head_heads=4),
                            ParamLayout(open_asset.param_spec))
    return save_checkpoint(network, open_asset, tmp_path_factory.mktemp("ckpt") / "open")


@pytest.fixture(scope="module")
def frames(open_asset):
    return demo_frames(open_asset, FRAMES)


def _recover(frames, asset, estimator, regressor=None, **finish):
    height, width = frames[0].shape[:2]
    recovery = ClipRecovery(width, height, asset, estimator=estimator, regressor=regressor)
    try:
        for index, image in enumerate(frames):
            recovery.add(Frame(index, index / 30, image))
    finally:
        recovery.close()
    return recovery.finish(30.0, **finish)


def test_without_a_checkpoint_the_regressor_is_unavailable_and_says_why(open_asset,
                                                                        smplx_asset,
                                                                        checkpoint):
    reason = regressor_problem(open_asset)
    assert "no regressor checkpoint in" in reason and "checkpoints/open" in reason
    assert "use the tracker estimator" in reason
    with pytest.raises(RegressorUnavailable, match="no regressor checkpoint"):
        load_regressor(open_asset)
    assert regressor_problem(open_asset, checkpoint) is None
    assert "trained for body model 'open'" in regressor_problem(smplx_asset, checkpoint)


def test_the_regressor_estimator_keeps_the_networks_estimates(open_asset, checkpoint, frames):
    regressor = load_regressor(open_asset, checkpoint)
    results, fit = _recover(frames, open_asset, "regressor", regressor, smooth=0.0)
    assert results.info["estimator"] == "regressor" and fit.stage_losses == []
    # The network saw each frame's crop around the detected person: the same call by hand
    # gives the same parameters and camera.
    by_hand = regressor.predict(frames, results.detections["boxes"])
    # (Up to the elbow-twist fix, which moves twist between forearm joints: body_pose 17-20.)
    np.testing.assert_allclose(results.params["body_pose"][:, :17],
                               by_hand.params["body_pose"][:, :17], atol=1e-5)
    np.testing.assert_allclose(results.params["expression"], by_hand.params["expression"],
                               atol=1e-5)
    np.testing.assert_allclose(results.cam_t, by_hand.cam_t, atol=1e-4)
    # Per-subject values are one for the clip: the frames' mean.
    np.testing.assert_allclose(results.params["betas"],
                               by_hand.params["betas"].mean(0, keepdims=True), atol=1e-5)
    assert set(fit.reprojection_px) >= {"pose", "face"}
    assert results.info["regressor_s"] > 0


def test_without_the_contact_stage_the_body_gets_its_steps_back(open_asset, frames):
    """`--no-contact`: no feet-on-the-ground stage, and the stages run
    ``ITERATIONS_WITHOUT_CONTACT``, since the contact stage's steps also finish the body."""
    schedules = {}
    for contact in (True, False):
        steps = {}

        def progress(label, step, total, steps=steps):
            steps[label] = total

        _recover(frames, open_asset, "tracker", progress=progress, contact=contact)
        schedules[contact] = tuple(steps.values())
    assert schedules[True] == (*DEFAULT_ITERATIONS, TrackerConfig.contact_iterations)
    assert schedules[False] == ITERATIONS_WITHOUT_CONTACT


def test_regressor_plus_tracker_starts_the_tracker_from_the_estimate(open_asset, checkpoint,
                                                                    frames):
    steps = {}

    def progress(label, step, total):
        steps[label] = total

    results, fit = _recover(frames, open_asset, "regressor+tracker",
                            load_regressor(open_asset, checkpoint), progress=progress)
    # the short schedule, then the feet on the ground
    assert tuple(steps.values()) == (*REFINE_ITERATIONS, TrackerConfig.contact_iterations)
    assert list(steps)[-1] == CONTACT_STAGE
    assert results.info["estimator"] == "regressor+tracker"
    assert fit.reprojection_px["pose"] < 15.0  # the tracker still lands on the keypoints


def test_backend_fit_refuses_a_missing_checkpoint_before_reading_footage(tmp_path, server_home):
    from .test_cli import backend

    result = backend("fit", str(tmp_path / "absent.mp4"), "-o", str(tmp_path / "r.npz"),
                     "--estimator", "regressor", home=server_home)
    # The set-up is the problem (no checkpoint), so it is named before the footage is.
    assert result.returncode == 3 and "no regressor checkpoint in" in result.stderr
    assert not (tmp_path / "r.npz").exists()


def test_the_server_lists_the_regressor_and_serves_it_with_a_checkpoint(server_home,
                                                                       checkpoint, frames,
                                                                       open_asset):
    with serve_process(server_home) as plain, Client(plain.endpoint, timeout=60) as client:
        (hello,) = client.hello()
        listed = {e["name"]: e for e in hello["estimators"]}
        assert listed["tracker"]["available"] and not listed["regressor"]["available"]
        assert "no regressor checkpoint" in listed["regressor+tracker"]["reason"]
        with pytest.raises(BackendError, match="'regressor' is unavailable") as caught:
            client.open_session(estimator="regressor")
        assert caught.value.code == "unavailable"

    with serve_process(server_home, "--checkpoint", str(checkpoint)) as served, \
            Client(served.endpoint, timeout=120) as client:
        (hello,) = client.hello()
        assert all(e["available"] for e in hello["estimators"])
        session = client.open_session(estimator="regressor", smooth=0.0)
        list(session.stream(frames_of(frames), image_format="png"))
        remote = session.finish()
    local, _ = _recover(frames, open_asset, "regressor", load_regressor(open_asset, checkpoint),
                        smooth=0.0)
    np.testing.assert_allclose(remote.params["body_pose"], local.params["body_pose"], atol=1e-4)
    assert remote.info["estimator"] == "regressor"


@pytest.fixture(scope="module")
def regressor_server(server_home, checkpoint):
    with serve_process(server_home, "--checkpoint", str(checkpoint)) as running:
        yield running


def test_a_sessions_principal_point_reaches_the_regressor_and_the_result(
        regressor_server, open_asset, checkpoint, frames):
    """session.open's intrinsics.cx/cy are the camera's principal point: the result records
    it and the regressor placed the body through it, as `ClipRecovery(center=...)` does."""
    intrinsics = {"focal": 900.0, "cx": 300.0, "cy": 200.0}
    with Client(regressor_server.endpoint, timeout=120) as client:
        session = client.open_session(estimator="regressor", smooth=0.0, intrinsics=intrinsics)
        list(session.stream(frames_of(frames), image_format="png"))
        remote = session.finish()
    assert remote.focal == 900.0 and tuple(remote.center) == (300.0, 200.0)

    height, width = frames[0].shape[:2]
    regressor = load_regressor(open_asset, checkpoint)
    placed = {}
    for center in ((300.0, 200.0), None):
        recovery = ClipRecovery(width, height, open_asset, estimator="regressor",
                                regressor=regressor, focal=900.0, center=center)
        try:
            for index, image in enumerate(frames):
                recovery.add(Frame(index, index / 30, image))
        finally:
            recovery.close()
        placed[center] = recovery.finish(30.0, smooth=0.0)[0]
    np.testing.assert_allclose(remote.cam_t, placed[(300.0, 200.0)].cam_t, atol=1e-4)
    # Assuming the image centre instead moves the body sideways by (shift x depth / focal).
    shift = np.array([width / 2 - 300.0, height / 2 - 200.0])
    depth = placed[None].cam_t[:, 2:]
    np.testing.assert_allclose(placed[(300.0, 200.0)].cam_t[:, :2] - placed[None].cam_t[:, :2],
                               shift * depth / 900.0, rtol=1e-3, atol=1e-5)


def _regressor_batches(client) -> collections.Counter:
    (status,) = client.status()
    return collections.Counter({int(size): count
                                for size, count in status["regressor_batches"].items()})


def test_regressor_frames_of_sessions_sending_at_once_share_batched_forwards(
        regressor_server, frames):
    """`serve --max-batch`: the frames the worker takes at a time (up to 8 here) go through the
    regressor as one forward, whichever session sent them; each session's result is what it
    gets alone."""
    with Client(regressor_server.endpoint, timeout=120) as first, \
            Client(regressor_server.endpoint, timeout=120) as second:
        before = _regressor_batches(first)
        sessions = [client.open_session(estimator="regressor", smooth=0.0)
                    for client in (first, second)]
        pending = [(session, session.send_frame(index, index / 30, image, "png"))
                   for session in sessions for index, image in enumerate(frames)]
        for session, request in pending:
            session.receive(request)
        together = [session.finish() for session in sessions]
        batches = _regressor_batches(first) - before
    assert sum(size * count for size, count in batches.items()) == 2 * FRAMES
    # A forward larger than one session's frames held frames of both.
    assert max(batches) > FRAMES, batches

    with Client(regressor_server.endpoint, timeout=120) as client:
        session = client.open_session(estimator="regressor", smooth=0.0)
        list(session.stream(frames_of(frames), image_format="png"))
        alone = session.finish()
    for result in together:
        np.testing.assert_allclose(result.cam_t, alone.cam_t, atol=1e-4)
        for name, value in alone.params.items():
            np.testing.assert_allclose(result.params[name], value, atol=1e-4, err_msg=name)


def test_the_server_lists_installed_adapters_and_serves_one_by_name(server_home, checkpoint,
                                                                     frames, open_asset,
                                                                     tmp_path):
    from backend.body.landmark_model import LandmarkModel
    from backend.body.model import BodyModel
    from backend.regressor.adapter_checkpoint import save_adapter
    from backend.regressor.adapters import AdaptedRegressor
    from backend.regressor.checkpoint import load_checkpoint

    home = tmp_path / "home"
    shutil.copytree(server_home, home)
    adapted = AdaptedRegressor(load_checkpoint(checkpoint, open_asset),
                               LandmarkModel(BodyModel(open_asset), sets=[]),
                               open_asset.joint_names)
    with torch.no_grad():
        for parameter in adapted.adapter.parameters():
            parameter.add_(0.01)  # trained, as far as the server can tell
    save_adapter(adapted, checkpoint, open_asset, home / "adapters" / "actor")
    (home / "adapters" / "broken").mkdir()
    with serve_process(home, "--checkpoint", str(checkpoint)) as served, \
            Client(served.endpoint, timeout=120) as client:
        (hello,) = client.hello()
        listed = {entry["name"]: entry for entry in hello["adapters"]}
        assert listed["actor"] == {"name": "actor", "asset": "open", "usable": True,
                                   "reason": ""}
        assert not listed["broken"]["usable"] and "broken" in listed["broken"]["reason"]
        session = client.open_session(estimator="regressor", smooth=0.0, adapter="actor")
        list(session.stream(frames_of(frames), image_format="png"))
        remote = session.finish()
        # The add-on's stepped session (the panel's Adapter menu) opens its sessions so too.
        folder = tmp_path / "frames"
        folder.mkdir()
        for index, image in enumerate(frames):
            cv2.imwrite(str(folder / f"{index:04d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        applied = []
        panel = RecoverSession(client, image_sequence(folder, fps=30), RecoverSettings(
            estimator="regressor", smooth=0.0, chunk=0, adapter="actor"),
            lambda rig, results, first: applied.append(results))
        panel.run()
        assert panel.state == "done", panel.error
        np.testing.assert_allclose(applied[0].params["body_pose"], remote.params["body_pose"],
                                   atol=1e-4)
        for name, estimator, code in (("nobody", "regressor", "unavailable"),
                                      ("broken", "regressor", "unavailable"),
                                      ("actor", "tracker", "bad_field"),
                                      ("../actor", "regressor", "bad_field")):
            with pytest.raises(BackendError) as caught:
                client.open_session(estimator=estimator, adapter=name)
            assert caught.value.code == code, (name, caught.value)
    local, _ = _recover(frames, open_asset, "regressor", load_regressor(
        open_asset, checkpoint, adapter=home / "adapters" / "actor"), smooth=0.0)
    plain, _ = _recover(frames, open_asset, "regressor", load_regressor(open_asset, checkpoint),
                        smooth=0.0)
    np.testing.assert_allclose(remote.params["body_pose"], local.params["body_pose"], atol=1e-4)
    assert np.abs(remote.params["body_pose"] - plain.params["body_pose"]).max() > 1e-4
