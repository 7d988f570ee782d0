"""``backend bake`` end to end through the bpy module: a clip the project renders becomes a
.blend, and the FBX and glTF it exports bring the animation and shape keys back on import; a
Mixamo-named character from a .blend is keyed with the motion and exported along, and the
PEAR armature's BVH comes back through Blender's BVH importer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .characters import check_directions, make_character
from .footage_support import write_demo_clip

FRAMES = 6


def _mixamo_character(bpy, open_asset, path):
    """A Mixamo-named T-pose character, 1.1x the PEAR body, saved alone in a .blend."""
    from pear_recover_mesh import scene
    from pear_recover_mesh.presets import load_preset

    from backend.pipeline.rig import build_rig

    bpy.ops.wm.read_factory_settings(use_empty=True)
    pear, body = scene.build_rig(build_rig(open_asset, {}), "pear")
    preset = load_preset(Path(scene.__file__).parent / "presets" / "mixamo.json")
    make_character(bpy, pear, preset, "character", scale=1.1, roll=0.5)
    scene.remove_rig("pear")
    bpy.ops.wm.save_as_mainfile(filepath=str(path), check_existing=False)
    return preset


@pytest.fixture(scope="module")
def baked(tmp_path_factory, server_home, open_asset, bpy_module):
    from backend.pipeline.bake import RetargetTo, bake_clip

    folder = tmp_path_factory.mktemp("bake")
    clip = write_demo_clip(open_asset, FRAMES, folder / "walk.mp4")
    _mixamo_character(bpy_module, open_asset, folder / "character.blend")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PEAR_HOME", str(server_home))
        return bake_clip(clip, folder / "out", open_asset,
                         formats=("fbx", "glb", "bvh", "npz"),
                         retarget=RetargetTo("mixamo", folder / "character.blend"))


def _fcurves(action):
    from bpy_extras import anim_utils

    return [curve for slot in action.slots
            if (bag := anim_utils.action_get_channelbag_for_slot(action, slot)) is not None
            for curve in bag.fcurves]


def _imported(bpy, importer, path):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    importer(filepath=str(path))
    armature = next(o for o in bpy.data.objects if o.type == "ARMATURE"
                    and o.name != "character")
    # The body, not the icosphere the glTF importer makes for bone display.
    mesh = max((o for o in bpy.data.objects if o.type == "MESH"),
               key=lambda o: len(o.data.vertices))
    return armature, mesh


def test_bake_writes_every_file_it_was_asked_for(baked, open_asset):
    assert baked.frames == FRAMES
    assert sorted(baked.files) == ["blend", "bvh", "fbx", "glb", "npz"]
    assert all(path.stat().st_size > 0 for path in baked.files.values())
    assert baked.files["blend"].name == "walk.blend"


def test_the_blend_file_holds_the_rig_its_action_and_camera(baked, bpy_module, open_asset):
    bpy_module.ops.wm.open_mainfile(filepath=str(baked.files["blend"]))
    armature = bpy_module.data.objects["walk"]
    assert len(armature.data.bones) == len(open_asset.joint_names)
    curves = _fcurves(armature.animation_data.action)
    assert {len(c.keyframe_points) for c in curves} == {FRAMES}
    assert bpy_module.context.scene.camera.name == "walk_camera"
    assert (bpy_module.context.scene.frame_start, bpy_module.context.scene.frame_end) == (
        1, FRAMES)


def test_fbx_reimport_has_the_animation_and_shape_keys(baked, bpy_module, open_asset):
    armature, mesh = _imported(bpy_module, bpy_module.ops.import_scene.fbx, baked.files["fbx"])
    bone_curves = _fcurves(armature.animation_data.action)
    assert len({c.data_path for c in bone_curves}) >= len(open_asset.joint_names)
    assert max(len(c.keyframe_points) for c in bone_curves) >= FRAMES
    names = open_asset.meta["expression_names"]
    assert {k.name for k in mesh.data.shape_keys.key_blocks} >= set(names)
    face_curves = _fcurves(mesh.data.shape_keys.animation_data.action)
    assert {c.data_path for c in face_curves} >= {f'key_blocks["{n}"].value' for n in names}


def test_gltf_reimport_has_the_animation_and_shape_keys(baked, bpy_module, open_asset):
    armature, mesh = _imported(bpy_module, bpy_module.ops.import_scene.gltf, baked.files["glb"])
    bone_curves = _fcurves(armature.animation_data.action)
    assert len({c.data_path for c in bone_curves}) >= len(open_asset.joint_names)
    assert max(len(c.keyframe_points) for c in bone_curves) >= FRAMES
    names = open_asset.meta["expression_names"]
    assert len(mesh.data.shape_keys.key_blocks) == len(names) + 1
    # The importer puts the morph-weight animation on an NLA track of the shape keys.
    (track,) = mesh.data.shape_keys.animation_data.nla_tracks
    face_curves = _fcurves(track.strips[0].action)
    assert {c.data_path for c in face_curves} == {f'key_blocks["{n}"].value' for n in names}
    assert min(len(c.keyframe_points) for c in face_curves) >= FRAMES


def _world_heads(bpy, armature, frame: int) -> dict[str, np.ndarray]:
    bpy.context.scene.frame_set(frame)
    return {b.name: np.array(armature.matrix_world @ b.head) for b in armature.pose.bones}


def test_the_character_is_keyed_with_the_motion_and_exported_with_it(baked, bpy_module):
    from pear_recover_mesh.presets import load_preset
    from pear_recover_mesh.retarget_scene import resolve_preset

    bpy_module.ops.wm.open_mainfile(filepath=str(baked.files["blend"]))
    pear, character = bpy_module.data.objects["walk"], bpy_module.data.objects["character"]
    preset = resolve_preset("mixamo", character)
    assert preset == load_preset(preset.path)
    check_directions(bpy_module, pear, character, preset, list(range(1, FRAMES + 1)))
    expected = _world_heads(bpy_module, character, FRAMES)
    render = bpy_module.context.scene.render
    fps = (render.fps, render.fps_base)
    for importer, path in ((bpy_module.ops.import_scene.fbx, baked.files["fbx"]),
                           (bpy_module.ops.import_scene.gltf, baked.files["glb"])):
        bpy_module.ops.wm.read_factory_settings(use_empty=True)
        render = bpy_module.context.scene.render
        render.fps, render.fps_base = fps  # keys are stored in seconds: frames need the rate
        importer(filepath=str(path))
        again = next(o for o in bpy_module.data.objects if o.type == "ARMATURE"
                     and "mixamorig:Hips" in o.pose.bones)
        # Blender's FBX round trip starts the action a frame later (2..7 here): align by it.
        animation = again.animation_data
        if animation.action is None:  # glTF's importer leaves each animation on an NLA strip
            strip = animation.nla_tracks[0].strips[0]
            animation.action, animation.action_slot = strip.action, strip.action_slot
            strip.mute = True
        shift = round(animation.action.frame_range[0]) - 1
        heads = _world_heads(bpy_module, again, FRAMES + shift)
        worst = max(np.linalg.norm(heads[n] - expected[n]) for n in preset.bones.values())
        assert worst < 2e-3, (path.suffix, worst)  # the same pose, bone for bone


def test_the_bvh_comes_back_through_blenders_importer(baked, bpy_module):
    import addon_utils

    bpy_module.ops.wm.open_mainfile(filepath=str(baked.files["blend"]))
    pear = bpy_module.data.objects["walk"]
    expected = [_world_heads(bpy_module, pear, f) for f in (1, FRAMES)]
    bpy_module.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("io_anim_bvh", default_set=True)
    # Blender's exporter writes its own axes (Z up): read them back as such.
    bpy_module.ops.import_anim.bvh(filepath=str(baked.files["bvh"]), axis_forward="Y",
                                   axis_up="Z")
    (imported,) = [o for o in bpy_module.data.objects if o.type == "ARMATURE"]
    for frame, heads in zip((1, FRAMES), expected, strict=True):
        again = _world_heads(bpy_module, imported, frame)
        assert set(again) == set(heads)
        worst = max(np.linalg.norm(again[n] - heads[n]) for n in heads)
        assert worst < 2e-3, (frame, worst)


def test_everyone_in_view_is_baked_into_a_rig_of_their_own(tmp_path, server_home, open_asset,
                                                            bpy_module, two_people_frames):
    import cv2

    from backend.pipeline.bake import bake_clip
    from backend.pipeline.people_in_footage import people_later

    clip = tmp_path / "pair"
    clip.mkdir()
    for index, frame in enumerate(two_people_frames):
        if index < 3:  # the right one comes in at frame 3
            frame = frame.copy()
            frame[:, frame.shape[1] // 2:] = 0
        cv2.imwrite(str(clip / f"{index:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    assert people_later(clip, 1, 0, step=1) == [(3, 2), (4, 2), (5, 2)]
    for index, frame in enumerate(two_people_frames[:3]):  # both in view from the start
        cv2.imwrite(str(clip / f"{index:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PEAR_HOME", str(server_home))
        baked = bake_clip(clip, tmp_path / "out", open_asset, formats=("npz",),
                          person="all")
    assert {"npz1", "npz2"} <= set(baked.files) and not baked.notes
    bpy_module.ops.wm.open_mainfile(filepath=str(baked.files["blend"]))
    objects = bpy_module.data.objects
    assert {"Person1", "Person2", "pair_camera"} <= set(objects.keys())
    assert [o.name for o in objects if o.type == "CAMERA"] == ["pair_camera"]
    for frame in (1, len(two_people_frames)):
        heads = _world_heads(bpy_module, objects["Person1"], frame)["pelvis"], _world_heads(
            bpy_module, objects["Person2"], frame)["pelvis"]
        assert heads[0][0] < heads[1][0] - 0.3  # person 1 is the one on the left
    for rig in ("Person1", "Person2"):
        curves = _fcurves(objects[rig].animation_data.action)
        assert {len(c.keyframe_points) for c in curves} == {len(two_people_frames)}
