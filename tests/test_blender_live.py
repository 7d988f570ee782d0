"""The add-on's live capture in real Blender (the ``bpy`` module) against a real backend: the
backend plays a movie as a live source, the stepped session polls it as the panel's timer
does, the rig follows the newest answer and recording keys every answer at the scene frame
matching its capture time."""

from __future__ import annotations

import numpy as np
import pytest
from pear_recover_mesh.keyframes import clip_keyframes
from pear_recover_mesh.live import LiveSession
from pear_recover_mesh.session import RecoverSettings

from backend.pipeline.demo import demo_frames, write_movie
from backend.server.client import Client
from backend.server.process import serve_process

FRAMES = 45  # 1.5 s at 30 fps


@pytest.fixture(scope="module")
def movie(open_asset, tmp_path_factory):
    path = tmp_path_factory.mktemp("live_movie") / "performance.mp4"
    return write_movie(demo_frames(open_asset, FRAMES), path)


@pytest.fixture()
def scene(bpy_module):
    from pear_recover_mesh import scene

    bpy_module.ops.wm.read_factory_settings(use_empty=True)
    return scene


def _keyed_frames(armature, bone: str) -> list[float]:
    bag = armature.animation_data.action.layers[0].strips[0].channelbag(
        armature.animation_data.action_slot)
    curve = bag.fcurves.find(f'pose.bones["{bone}"].rotation_quaternion', index=0)
    return [point.co[0] for point in curve.keyframe_points]


def test_live_capture_poses_the_rig_and_records_at_the_capture_times(scene, server_home,
                                                                    movie):
    rig = scene.LiveRig("Live")
    recorded: list[tuple[dict, int]] = []

    def record(skeleton, answers, frames):
        rig.record(skeleton, answers, frames)
        recorded.extend(zip(answers, frames, strict=True))

    with serve_process(server_home, "--estimator", "tracker") as server, \
            Client(server.endpoint, timeout=120) as client:
        live = LiveSession(client, str(movie), RecoverSettings(), rig.show, record, fps=24.0)
        live.start_recording(scene_frame=10)
        live.run(budget=180)
        assert live.state == "done", live.error
        live.stop()  # the movie ended: stopping keeps what was recorded
    assert live.recorded == live.answered == len(recorded) > 0
    first_time = recorded[0][0]["time"]
    expected = [10 + round((answer["time"] - first_time) * 24.0) for answer, _ in recorded]
    assert [frame for _, frame in recorded] == expected
    joint_names = live.rig["joint_names"]
    assert _keyed_frames(rig.armature, joint_names[0]) == [float(f) for f in expected]
    # The rig shows the newest answer, as the keys at its frame have it.
    last = recorded[-1][0]
    keys = clip_keyframes(last["params"], last["cam_t"], live.rig, rig._bone_rest)
    shown = np.array([rig.armature.pose.bones[name].rotation_quaternion for name in joint_names])
    np.testing.assert_allclose(shown, keys.rotations[0], atol=1e-5)


def test_a_live_source_the_backend_cannot_open_fails_saying_which(scene, server_home):
    rig = scene.LiveRig("Live")
    with serve_process(server_home, "--estimator", "tracker") as server, \
            Client(server.endpoint, timeout=120) as client:
        live = LiveSession(client, "97", RecoverSettings(), rig.show, rig.record, fps=24.0)
        live.run(budget=60)
        live.stop()
    assert live.state == "failed" and "camera 97" in live.error
    assert rig.armature is None and live.recorded == 0


def test_the_panels_live_operators_follow_record_and_stop(bpy_module, scene, server_home,
                                                         movie):
    """The Live operator's own ``modal``, driven by timer events as Blender sends them; Record
    and Stop through ``bpy.ops`` as the panel's buttons call them."""
    from types import SimpleNamespace

    import pear_recover_mesh
    from pear_recover_mesh import ui_live

    from .test_blender_addon import _Event, _WindowManager

    pear_recover_mesh.register()
    try:
        with serve_process(server_home, "--estimator", "tracker") as server:
            client = Client(server.endpoint, timeout=120)
            rig = scene.LiveRig(ui_live.LIVE_RIG)
            live = LiveSession(client, str(movie), RecoverSettings(), rig.show, rig.record,
                               fps=24.0)
            ui_live._LIVE["session"] = (live, client)
            operator = SimpleNamespace(_timer=None, report=lambda *_: None)
            context = SimpleNamespace(window_manager=_WindowManager(), area=None,
                                      scene=bpy_module.context.scene)
            assert not bpy_module.ops.pear.live.poll()  # one capture at a time
            assert ui_live.PEAR_OT_live.modal(operator, context, _Event("MOUSEMOVE")) == {
                "PASS_THROUGH"}
            bpy_module.context.scene.frame_set(5)
            assert bpy_module.ops.pear.live_record() == {"FINISHED"}
            ticked = {"RUNNING_MODAL"}
            while live.recorded == 0 and ticked == {"RUNNING_MODAL"}:
                ticked = ui_live.PEAR_OT_live.modal(operator, context, _Event("TIMER"))
            assert live.recorded > 0, live.error
            assert bpy_module.context.scene.frame_current == live.last_frame >= 5
            if ticked == {"RUNNING_MODAL"}:  # else the 1.5-second movie ended first (slow CPU)
                assert bpy_module.ops.pear.live_stop() == {"FINISHED"}
                ticked = ui_live.PEAR_OT_live.modal(operator, context, _Event("TIMER"))
            assert ticked == {"FINISHED"}
        assert ui_live._LIVE["session"] is None and live.state in ("stopped", "done")
        assert bpy_module.ops.pear.live.poll()
        keyed = _keyed_frames(bpy_module.data.objects[ui_live.LIVE_RIG],
                              live.rig["joint_names"][0])
        assert len(keyed) == live.recorded and keyed[0] == 5.0  # the take stays
    finally:
        ui_live._LIVE.update(session=None, stop=False)
        pear_recover_mesh.unregister()
