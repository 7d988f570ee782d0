"""The add-on's recovery session in real Blender (the bpy module) against a real backend
process: frames of a clip the project renders, streamed in chunks, keyframed onto a rig whose
posed joints equal the backend's own, in Blender's coordinates."""

from __future__ import annotations

import signal

import cv2
import numpy as np
import pytest
import torch
from pear_recover_mesh.convert import CAMERA_TO_WORLD, MODEL_TO_CAMERA, MODEL_TO_WORLD
from pear_recover_mesh.footage import FootageError, image_sequence
from pear_recover_mesh.keyframes import clip_keyframes
from pear_recover_mesh.session import RecoverSession, RecoverSettings

from backend.body.model import BodyModel
from backend.perception.frames import open_footage
from backend.pipeline.demo import demo_frames
from backend.server.client import Client
from backend.server.process import serve_process

FRAMES = 8


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory, open_asset):
    folder = tmp_path_factory.mktemp("clip")
    for index, image in enumerate(demo_frames(open_asset, FRAMES)):
        cv2.imwrite(str(folder / f"frame_{index:04d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="module")
def clip_movie(tmp_path_factory, clip_folder):
    """The clip as an MPEG-4 movie at 25 fps."""
    path = tmp_path_factory.mktemp("movie") / "clip.mp4"
    frames = [cv2.imread(str(p)) for p in sorted(clip_folder.iterdir())]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25,
                             frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def backend(server_home):
    with serve_process(server_home, "--estimator", "tracker") as running:
        yield running


@pytest.fixture()
def scene(bpy_module):
    from pear_recover_mesh import scene

    bpy_module.ops.wm.read_factory_settings(use_empty=True)
    return scene


class Recorded:
    """The scene applier, keeping what the backend sent for comparison."""

    def __init__(self, applier):
        self.applier, self.calls = applier, []

    def __call__(self, rig, results, first_index):
        self.calls.append((rig, results, first_index))
        self.applier(rig, results, first_index)


def _curves(action):
    from bpy_extras import anim_utils

    slot = action.slots[0]
    return list(anim_utils.action_get_channelbag_for_slot(action, slot).fcurves)


def test_a_session_keyframes_the_backends_motion_exactly(bpy_module, scene, backend, open_asset,
                                                         clip_folder):
    footage = image_sequence(clip_folder, fps=30)
    apply = Recorded(scene.ClipApplier("clip", clip_folder, len(footage)))
    with Client(backend.endpoint, timeout=60) as client:
        session = RecoverSession(client, footage, RecoverSettings(chunk=0), apply)
        session.run()
    assert session.state == "done", session.error
    ((rig, results, first),) = apply.calls
    armature = bpy_module.data.objects["clip"]
    body = bpy_module.data.objects["clip_body"]
    names, parents = open_asset.joint_names, open_asset.arrays["parents"]
    tree = {name: names[parent] if parent >= 0 else None
            for name, parent in zip(names, parents, strict=True)}
    assert {b.name: b.parent.name if b.parent else None for b in armature.data.bones} == tree
    curves = _curves(armature.animation_data.action)
    assert len(curves) == 55 * 4 + 3
    assert {len(c.keyframe_points) for c in curves} == {FRAMES}
    face = _curves(body.data.shape_keys.animation_data.action)
    assert sorted(c.data_path for c in face) == sorted(
        f'key_blocks["{n}"].value' for n in open_asset.meta["expression_names"])

    model = BodyModel(open_asset).double()
    with torch.no_grad():
        posed = model({k: torch.tensor(v, dtype=torch.float64)
                       for k, v in results.params.items()})
    joints = posed.joints.numpy() @ MODEL_TO_WORLD.T + (results.cam_t @ CAMERA_TO_WORLD.T)[:, None]
    vertices = (posed.vertices.numpy() @ MODEL_TO_WORLD.T
                + (results.cam_t @ CAMERA_TO_WORLD.T)[:, None])
    expression = results.params["expression"]
    # The keyed values are the backend's results converted (convert/keyframes), to 1e-5 ...
    keys = clip_keyframes(results.params, results.cam_t, rig,
                          scene.bone_rest_rotations(armature, rig["joint_names"]))
    by_path = {(c.data_path, c.array_index): c for c in curves}
    for j, name in enumerate(names):
        for axis in range(4):
            curve = by_path[(f'pose.bones["{name}"].rotation_quaternion', axis)]
            stored = np.array([curve.evaluate(f) for f in range(1, FRAMES + 1)])
            assert np.abs(stored - keys.rotations[:, j, axis]).max() < 1e-5
    # ... and Blender's armature poses them where the model does: joints to 0.1 mm, which is
    # what float32 allows 4 m from the origin through a 20-bone chain (measured: 4e-5 m). The
    # jaw's joint, which the model's expressions move (up to 2.8 mm: tongueOut) and a bone's
    # rest cannot, is left out.
    moved = np.einsum("jv,vce->jce", open_asset.arrays["J_regressor"],
                      open_asset.arrays["exprdirs"])
    rigid = np.abs(moved).max(axis=(1, 2)) < 1e-7
    for t in (0, FRAMES // 2, FRAMES - 1):
        bpy_module.context.scene.frame_set(t + 1)
        depsgraph = bpy_module.context.evaluated_depsgraph_get()
        pose = armature.evaluated_get(depsgraph).pose
        heads = np.array([pose.bones[n].head for n in open_asset.joint_names])
        assert np.abs(heads - joints[t])[rigid].max() < 1e-4
        mesh = body.evaluated_get(depsgraph).data
        blender_vertices = np.empty(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", blender_vertices)
        assert np.abs(blender_vertices.reshape(-1, 3) - vertices[t]).max() < 1e-4
        keys = body.data.shape_keys.key_blocks
        values = [keys[n].value for n in open_asset.meta["expression_names"]]
        assert np.abs(np.array(values) - expression[t]).max() < 1e-6
    # The scene camera sees the joints where the backend's camera does (lens, shift).
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    scene_data = bpy_module.context.scene
    camera = scene_data.camera
    assert camera.data.background_images[0].image is not None
    t = FRAMES - 1
    in_camera = posed.joints.numpy()[t] @ np.asarray(MODEL_TO_CAMERA).T + results.cam_t[t]
    expected_px = results.focal * in_camera[:, :2] / in_camera[:, 2:] + results.center
    seen = np.array([world_to_camera_view(scene_data, camera, Vector(p))[:2]
                     for p in joints[t]])
    blender_px = np.stack([seen[:, 0] * results.width, (1 - seen[:, 1]) * results.height], 1)
    assert np.abs(blender_px - expected_px).max() < 1e-2


def test_cancel_keeps_the_applied_chunks(bpy_module, scene, backend, clip_folder):
    footage = image_sequence(clip_folder, fps=30)
    apply = scene.ClipApplier("cancelled", None, len(footage))
    with Client(backend.endpoint, timeout=60) as client:
        session = RecoverSession(client, footage, RecoverSettings(chunk=FRAMES // 2), apply)
        while session.frames_applied == 0:
            assert session.step()
        session.cancel()
        assert session.state == "cancelled" and "kept 4" in session.status
        assert client.status()[0]["sessions"] == 0  # the backend let go of it
    curves = _curves(bpy_module.data.objects["cancelled"].animation_data.action)
    assert {len(c.keyframe_points) for c in curves} == {FRAMES // 2}


def test_a_dead_backend_is_reported_and_the_applied_chunks_stay(bpy_module, scene, server_home,
                                                               clip_folder):
    footage = image_sequence(clip_folder, fps=30)
    apply = scene.ClipApplier("orphan", None, len(footage))
    with serve_process(server_home, "--estimator", "tracker") as doomed, \
            Client(doomed.endpoint, timeout=60) as client:
        session = RecoverSession(client, footage,
                                 RecoverSettings(chunk=FRAMES // 2, dead_after=3.0), apply)
        while session.frames_applied == 0:
            assert session.step()
        doomed.process.send_signal(signal.SIGKILL)
        session.run()
    assert session.state == "failed"
    assert "`backend serve`" in session.error and doomed.endpoint in session.error
    assert "the 4 frames applied so far are kept" in session.error
    curves = _curves(bpy_module.data.objects["orphan"].animation_data.action)
    assert {len(c.keyframe_points) for c in curves} == {FRAMES // 2}


def test_blender_decodes_movies_frame_by_frame(bpy_module, scene, clip_movie, tmp_path):
    from pear_recover_mesh.movie import MovieFrames

    capture = cv2.VideoCapture(str(clip_movie))
    reference = [capture.read()[1] for _ in range(FRAMES)]
    movie = MovieFrames(clip_movie, first=3, last=5)
    assert (len(movie), movie.fps, movie.width, movie.height) == (
        3, 25.0, reference[0].shape[1], reference[0].shape[0])
    decoded = list(movie.frames())
    assert [(index, time) for index, time, _ in decoded] == [(0, 0.0), (1, 0.04), (2, 0.08)]
    for (index, _, image) in decoded:
        assert image["format"] == "jpeg"
        pixels = cv2.imdecode(np.frombuffer(image["data"], np.uint8), cv2.IMREAD_COLOR)
        errors = [np.abs(pixels.astype(int) - frame).mean() for frame in reference]
        # The frame OpenCV decodes at that index, in the footage's colours: within JPEG's error
        # and the decoders' YUV conversions (measured: 2 grey levels apart).
        assert np.argmin(errors) == 3 + index and errors[3 + index] < 4.0
    movie.close()
    assert [s.name for s in bpy_module.data.scenes] == ["Scene"]  # the decoder scene is gone

    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(clip_movie.read_bytes()[:2000])
    with pytest.raises(FootageError, match="cannot decode damaged.mp4"):
        MovieFrames(damaged)
    with pytest.raises(FootageError, match="range 9-7 is empty; the footage has 8 frames"):
        MovieFrames(clip_movie, first=9)


def test_a_chunked_session_on_a_movie_keys_the_selected_frames_with_one_body(
        bpy_module, scene, backend, clip_movie, open_asset):
    from pear_recover_mesh.movie import MovieFrames

    footage = MovieFrames(clip_movie, first=2)
    apply = Recorded(scene.ClipApplier("movie", clip_movie, len(footage), first=2))
    with Client(backend.endpoint, timeout=60) as client:
        session = RecoverSession(client, footage, RecoverSettings(chunk=3), apply)
        session.run()
    footage.close()
    assert session.state == "done", session.error
    # The second chunk (frames 3-5) also carried the first's 3 frames again to fade over, and
    # was fitted with the first one's body and focal, not a new one.
    (_, first, _), (_, second, start) = apply.calls
    assert start == 3 and list(second.frames) == [0, 1, 2, 3, 4, 5]
    held = [p.name for p in open_asset.param_spec if p.per == "subject"]
    assert "betas" in held
    for name in held:
        np.testing.assert_array_equal(second.params[name][:1], first.params[name][:1])
    assert second.focal == pytest.approx(first.focal)
    curves = _curves(bpy_module.data.objects["movie"].animation_data.action)
    assert {len(c.keyframe_points) for c in curves} == {FRAMES - 2}
    assert {tuple(p.co[0] for p in c.keyframe_points) for c in curves} == {(1, 2, 3, 4, 5, 6)}
    background = bpy_module.data.objects["movie_camera"].data.background_images[0]
    assert background.image.source == "MOVIE"
    assert background.image_user.frame_offset == 2  # scene frame 1 shows movie frame 3
    assert bpy_module.context.scene.render.fps == 25


def test_the_background_sequence_starts_at_the_first_frame_sent(bpy_module, scene,
                                                                clip_folder):
    camera = scene.add_camera("cam", 700.0, (320.0, 240.0), 640, 480, clip_folder, FRAMES - 3,
                              first=3)
    background = camera.data.background_images[0]
    user = background.image_user
    assert background.image.source == "SEQUENCE"
    # Blender shows file number (scene frame - frame_start + 1 + offset) at each scene frame;
    # files are numbered from 0 here, so scene frame 1 must show frame_0003.
    user.frame_current = 1 - user.frame_start + 1 + user.frame_offset
    assert background.image.filepath_from_user(image_user=user).endswith("frame_0003.png")


def test_rerunning_a_clip_replaces_its_rig_and_action(bpy_module, scene, open_asset):
    from backend.pipeline.rig import build_rig

    rig = build_rig(open_asset)
    for _ in range(2):
        armature, _ = scene.build_rig(rig, "again")
        scene.ClipAction(armature, bpy_module.data.objects["again_body"], rig["joint_names"],
                         rig["expression_names"])
    assert [o.name for o in bpy_module.data.objects] == ["again", "again_body"]
    assert sorted(a.name for a in bpy_module.data.actions) == ["again", "again_face"]


def test_a_recovery_is_one_undo_step(bpy_module, scene, open_asset):
    """What the panel's Recover adds (rig, mesh, camera, actions) goes with one undo and comes
    back, keys included, with redo."""
    from backend.pipeline.rig import build_rig
    from backend.results import ClipResults

    frames = 3
    params = {k: v.numpy().astype(np.float32) for k, v in
              BodyModel(open_asset).default_params(frames).items()}
    params["body_pose"] = np.random.default_rng(1).normal(
        size=params["body_pose"].shape).astype(np.float32) * 0.2
    results = ClipResults(open_asset.asset_id, open_asset.spec_hash, np.arange(frames),
                          np.arange(frames) / 30, params, np.tile([0.0, 0.2, 4.0], (frames, 1)),
                          800.0, (320.0, 240.0), 640, 480, info={"fps": 30.0})
    ops = bpy_module.ops
    ops.ed.undo_push(message="before")
    scene.ClipApplier("undone")(build_rig(open_asset), results)
    ops.ed.undo_push(message="Recover")
    assert {"undone", "undone_body", "undone_camera"} <= set(bpy_module.data.objects.keys())

    ops.ed.undo()
    assert not set(bpy_module.data.objects.keys()) & {"undone", "undone_body", "undone_camera"}
    assert not [a.name for a in bpy_module.data.actions if a.name.startswith("undone")]
    ops.ed.redo()
    armature = bpy_module.data.objects["undone"]
    assert {len(c.keyframe_points) for c in _curves(armature.animation_data.action)} == {frames}


def test_body_shape_keys_move_the_mesh_as_the_model_does(bpy_module, scene, open_asset):
    from backend.pipeline.rig import build_rig

    betas = np.random.default_rng(0).normal(size=(1, 20)) * 0.8
    rig = build_rig(open_asset, {"betas": betas})
    armature, body = scene.build_rig(rig, "shaped", body_shape_keys=True)
    keys = body.data.shape_keys.key_blocks
    assert [k.name for k in keys][-10:] == [f"Shape{k:02d}" for k in range(10)]
    keys["Shape03"].value = 1.5
    depsgraph = bpy_module.context.evaluated_depsgraph_get()
    mesh = body.evaluated_get(depsgraph).data
    blender = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", blender)

    model = BodyModel(open_asset).double()
    params = model.default_params(1)
    params["betas"] = torch.as_tensor(betas)
    params["betas"][0, 3] += 1.5
    with torch.no_grad():
        expected = model(params).vertices[0].numpy() @ MODEL_TO_WORLD.T
    # Linear in betas: the key at 1.5 is the model one and a half units further (float32 mesh).
    assert np.abs(blender.reshape(-1, 3) - expected).max() < 2e-5
    assert armature.data.bones["pelvis"].head_local[:] == pytest.approx(
        (rig["rest_joints"][0] @ MODEL_TO_WORLD.T).tolist(), abs=1e-6)

    _, plain = scene.build_rig(rig, "plain")
    assert not [k.name for k in plain.data.shape_keys.key_blocks if k.name.startswith("Shape")]


def test_footage_errors_say_what_to_do(tmp_path):
    with pytest.raises(FootageError, match="does not exist"):
        image_sequence(tmp_path / "missing")
    (tmp_path / "clip.mp4").write_bytes(b"\0")
    with pytest.raises(FootageError, match="a folder of frames, an image .* or a movie"):
        image_sequence(tmp_path / "clip.mp4")
    with pytest.raises(FootageError, match=r"no frames \(\.bmp, \.jpeg, \.jpg, \.png"):
        image_sequence(tmp_path)


def test_footage_folders_are_listed_alike_by_the_addon_and_backend_fit(tmp_path):
    """Mixed-case names in every still format: Blender sends the frames in the order `backend
    fit` reads them (numbers as numbers, case ignored), the same files, each as its format."""
    names = ["frame12.TIFF", "Frame10.PNG", "frame2.jpg", "FRAME3.bmp", "frame1.webp",
             "frame11.tif", "frame4.jpeg", "Frame4.jpeg"]
    image = np.full((6, 8, 3), 90, np.uint8)
    for name in names:
        assert cv2.imwrite(str(tmp_path / name), image), name
    (tmp_path / "notes.txt").write_text("not a frame")
    expected = ["frame1.webp", "frame2.jpg", "FRAME3.bmp", "Frame4.jpeg", "frame4.jpeg",
                "Frame10.PNG", "frame11.tif", "frame12.TIFF"]

    addon = image_sequence(tmp_path)
    assert [p.name for p in addon.paths] == expected
    assert [p.name for p in open_footage(tmp_path).files] == expected
    formats = [image["format"] for _, _, image in addon.frames()]
    assert formats == ["webp", "jpeg", "bmp", "jpeg", "jpeg", "png", "tiff", "tiff"]


def test_panel_operators_start_a_local_backend_connect_and_stop(bpy_module, scene, server_home,
                                                                monkeypatch):
    import sys

    import pear_recover_mesh
    from pear_recover_mesh import local_backend

    monkeypatch.setenv("PEAR_HOME", str(server_home))  # the child backend inherits it
    pear_recover_mesh.register()
    try:
        settings = bpy_module.context.scene.pear
        settings.python = "/nowhere/python"
        with pytest.raises(RuntimeError, match="set Python"):
            bpy_module.ops.pear.backend_start()
        settings.python = sys.executable
        assert bpy_module.ops.pear.backend_start() == {"FINISHED"}
        assert local_backend.state().startswith("running at tcp://127.0.0.1:")
        assert bpy_module.ops.pear.connect() == {"FINISHED"}
        assert settings.status.startswith("connected: pear-backend")
        # No checkpoint in this PEAR_HOME: the regressor estimators are listed as unavailable.
        assert "unavailable: regressor, regressor+tracker" in settings.status
        assert bpy_module.ops.pear.backend_stop() == {"FINISHED"}
        assert local_backend.state() == "stopped"
        with pytest.raises(RuntimeError, match="not running: press Start"):
            bpy_module.ops.pear.connect()
    finally:
        pear_recover_mesh.unregister()


@pytest.mark.parametrize("size,center", [((640, 480), (300.0, 260.0)), ((360, 640), (190, 300))])
def test_the_camera_projects_like_the_backends_pinhole(bpy_module, scene, size, center):
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    width, height = size
    camera = scene.add_camera("cam", 700.0, center, width, height)
    bpy_module.context.view_layer.update()  # matrix_world
    points = np.random.default_rng(0).normal(scale=0.4, size=(20, 3)) + [0, 0, 3]  # camera frame
    expected = 700.0 * points[:, :2] / points[:, 2:] + center
    seen = np.array([world_to_camera_view(bpy_module.context.scene, camera, Vector(p))[:2]
                     for p in points @ CAMERA_TO_WORLD.T])
    pixels = np.stack([seen[:, 0] * width, (1 - seen[:, 1]) * height], 1)
    assert np.abs(pixels - expected).max() < 1e-2


def test_the_chosen_person_is_followed_across_chunks(bpy_module, scene, backend,
                                                    two_people_frames, tmp_path):
    for index, image in enumerate(two_people_frames):
        if index >= 2:  # the left person walks off: counting again would find one person
            image = image.copy()
            image[:, :360] = image[0, 0]
        cv2.imwrite(str(tmp_path / f"frame_{index:04d}.png"),
                    cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    footage = image_sequence(tmp_path, fps=30)
    apply = Recorded(scene.ClipApplier("second_person", None, len(footage)))
    with Client(backend.endpoint, timeout=60) as client:
        session = RecoverSession(client, footage, RecoverSettings(chunk=3, overlap=1, person=2),
                                 apply)
        session.run()
    assert session.state == "done", session.error
    # Both chunks fitted the right-hand (farther, smaller) person: the second one (frames 2-5)
    # was opened with the box the first one had at frame 2, not by counting people again.
    for _, results, _ in apply.calls:
        boxes = results.detections["boxes"]
        assert (boxes[:, 0] > 360).all(), boxes
    assert len(apply.calls) == 2


def test_the_avatar_preview_lays_the_avatar_over_the_footage(bpy_module, scene, server_home,
                                                            smoke_renderer, clip_folder):
    from pear_recover_mesh.avatar_preview import AvatarPreview, RecoveredChunk, overlay_file

    footage = image_sequence(clip_folder, fps=30)
    apply = Recorded(scene.ClipApplier("avatar", clip_folder, len(footage)))
    folder = clip_folder.parent / "avatar_preview"
    with serve_process(server_home, "--estimator", "tracker", "--renderer",
                       str(smoke_renderer)) as server, \
            Client(server.endpoint, timeout=60) as client:
        session = RecoverSession(client, footage, RecoverSettings(chunk=FRAMES // 2), apply)
        session.run()
        assert session.state == "done", session.error
        chunks = [RecoveredChunk(results, start) for _, results, start in apply.calls]
        # Each chunk after the first repeats frames of the one before: drawn once each.
        assert chunks[1].results.frames[0] < chunks[1].start
        preview = AvatarPreview(client, footage, chunks, folder, "open")
        preview.run()
        assert preview.state == "done", preview.error
        assert client.status()[0]["avatars"] == 0  # dropped when done
    assert preview.written == FRAMES
    for index in range(FRAMES):
        bgra = cv2.imread(str(overlay_file(folder, index)), cv2.IMREAD_UNCHANGED)
        assert bgra.shape[2] == 4 and (bgra[..., 3] > 127).sum() > 200  # the avatar, alone
        assert (bgra[..., 3] == 0).mean() > 0.5  # ... over a transparent frame
    camera = apply.applier.camera
    scene.add_overlay(camera, folder, preview.written)
    scene.add_overlay(camera, folder, preview.written)  # again: replaced, not stacked
    footage_background, overlay = camera.data.background_images
    assert footage_background.display_depth == "BACK" and overlay.display_depth == "FRONT"
    user = overlay.image_user
    user.frame_current = 5 - user.frame_start + 1 + user.frame_offset  # scene frame 5
    assert overlay.image.filepath_from_user(image_user=user).endswith(
        overlay_file(folder, 4).name)


def test_an_avatar_preview_without_a_renderer_fails_and_keeps_the_motion(
        bpy_module, scene, backend, clip_folder, tmp_path):
    from pear_recover_mesh.avatar_preview import AvatarPreview, RecoveredChunk

    footage = image_sequence(clip_folder, fps=30)
    apply = Recorded(scene.ClipApplier("kept", None, len(footage)))
    with Client(backend.endpoint, timeout=60) as client:
        RecoverSession(client, footage, RecoverSettings(chunk=0), apply).run()
        chunks = [RecoveredChunk(results, start) for _, results, start in apply.calls]
        preview = AvatarPreview(client, footage, chunks, tmp_path / "preview", "open")
        preview.run()
    assert preview.state == "failed" and "no renderer checkpoint" in preview.error
    assert "motion is kept" in preview.error
    assert len(_curves(bpy_module.data.objects["kept"].animation_data.action)) == 55 * 4 + 3


class _Event:
    def __init__(self, kind: str):
        self.type = kind


class _WindowManager:
    """The window manager calls the modal operator makes (progress bar, its timer)."""

    def progress_update(self, _value):
        pass

    def progress_end(self):
        pass

    def event_timer_remove(self, _timer):
        pass


def test_the_modal_recovery_lets_other_input_through_refuses_a_second_start_and_cancels(
        bpy_module, scene, backend, clip_folder):
    """The recover operator's own ``modal``, driven by events as Blender would send them."""
    from types import SimpleNamespace

    import pear_recover_mesh
    from pear_recover_mesh import ui

    pear_recover_mesh.register()
    try:
        footage = image_sequence(clip_folder, fps=30)
        applier = scene.ClipApplier("modal", None, len(footage))
        client = Client(backend.endpoint, timeout=60)
        session = RecoverSession(client, footage, RecoverSettings(chunk=FRAMES // 2), applier)
        ui._STATE["session"] = (session, client)
        operator = SimpleNamespace(_timer=None, _chunks=[], _applier=applier, _name="modal",
                                   report=lambda *_: None)
        operator._end = lambda context, work: ui.PEAR_OT_recover._end(operator, context, work)
        context = SimpleNamespace(window_manager=_WindowManager(), area=None,
                                  scene=bpy_module.context.scene)
        assert not bpy_module.ops.pear.recover.poll()  # a second start is refused
        for kind in ("MOUSEMOVE", "MIDDLEMOUSE", "WHEELUPMOUSE", "RIGHTMOUSE"):
            assert ui.PEAR_OT_recover.modal(operator, context, _Event(kind)) == {
                "PASS_THROUGH"}
        assert session.frames_detected == 0  # other input did no work
        while session.frames_applied == 0:
            assert ui.PEAR_OT_recover.modal(operator, context, _Event("TIMER")) == {
                "RUNNING_MODAL"}
        assert ui.PEAR_OT_recover.modal(operator, context, _Event("ESC")) == {"FINISHED"}
        assert session.state == "cancelled" and ui._STATE["session"] is None
        assert bpy_module.ops.pear.recover.poll()
        curves = _curves(bpy_module.data.objects["modal"].animation_data.action)
        assert {len(c.keyframe_points) for c in curves} == {FRAMES // 2}  # the chunk stays
    finally:
        ui._STATE["session"] = None
        pear_recover_mesh.unregister()


def test_everyone_in_view_is_recovered_into_a_rig_each(bpy_module, scene, backend,
                                                       two_people_frames, tmp_path):
    from pear_recover_mesh.session import PeopleSession

    for index, frame in enumerate(two_people_frames[:4]):
        cv2.imwrite(str(tmp_path / f"{index:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    footage = image_sequence(tmp_path, fps=30)
    appliers = {}

    def make_apply(number):
        appliers[number] = scene.ClipApplier(
            f"Person{number}", None, len(footage),
            camera="pair_camera" if number == 1 else None)
        return appliers[number]

    with Client(backend.endpoint, timeout=60) as client:
        people = PeopleSession(client, footage, RecoverSettings(chunk=0), make_apply)
        people.run()
    assert people.state == "done" and people.status == "done: 2 people", people.error
    objects = bpy_module.data.objects
    assert {"Person1", "Person2"} <= set(objects.keys()) and "Person3" not in objects
    assert [o.name for o in objects if o.type == "CAMERA"] == ["pair_camera"]
    bpy_module.context.scene.frame_set(1)
    left, right = (objects[f"Person{n}"].matrix_world @ objects[f"Person{n}"].pose.bones[
        "pelvis"].head for n in (1, 2))
    assert left.x < right.x - 0.3  # person 1 is the leftmost


def test_the_adapter_menu_offers_the_backends_usable_adapters_on_a_regressor(bpy_module, scene):
    import pear_recover_mesh
    from pear_recover_mesh import ui

    pear_recover_mesh.register()
    try:
        settings = bpy_module.context.scene.pear
        estimators = [{"name": name, "available": True} for name in ("tracker", "regressor")]
        ui._STATE["hello"] = {"estimators": estimators, "adapters": [
            {"name": "actor-day1", "asset": "open", "usable": True, "reason": ""},
            {"name": "old", "asset": "open", "usable": False,
             "reason": "trained on another base checkpoint than this server's"}]}
        assert not ui.shows_adapter_menu(settings)  # the tracker has no regressor to adapt
        settings.estimator = "regressor"
        assert ui.shows_adapter_menu(settings)
        assert ui.recover_settings(settings).adapter is None  # "None" until one is chosen
        settings.adapter = "actor-day1"
        with pytest.raises(TypeError):  # listed by the backend, but not usable: not offered
            settings.adapter = "old"
        assert ui.recover_settings(settings).adapter == "actor-day1"
        settings.estimator = "tracker"
        assert ui.recover_settings(settings).adapter is None
        ui._STATE["hello"] = {"estimators": estimators, "adapters": []}
        settings.estimator = "regressor"
        assert not ui.shows_adapter_menu(settings)  # nothing to choose: no menu
    finally:
        ui._STATE["hello"] = None
        pear_recover_mesh.unregister()
