"""``backend bake`` end to end through the bpy module: a clip the project renders becomes a
.blend, and the FBX and glTF it exports bring the animation and shape keys back on import."""

from __future__ import annotations

import pytest

from .footage_support import write_demo_clip

FRAMES = 6


@pytest.fixture(scope="module")
def baked(tmp_path_factory, server_home, open_asset, bpy_module):
    from backend.pipeline.bake import bake_clip

    folder = tmp_path_factory.mktemp("bake")
    clip = write_demo_clip(open_asset, FRAMES, folder / "walk.mp4")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PEAR_HOME", str(server_home))
        return bake_clip(clip, folder / "out", open_asset, formats=("fbx", "glb", "npz"))


def _fcurves(action):
    from bpy_extras import anim_utils

    return [curve for slot in action.slots
            if (bag := anim_utils.action_get_channelbag_for_slot(action, slot)) is not None
            for curve in bag.fcurves]


def _imported(bpy, importer, path):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    importer(filepath=str(path))
    armature = next(o for o in bpy.data.objects if o.type == "ARMATURE")
    # The body, not the icosphere the glTF importer makes for bone display.
    mesh = max((o for o in bpy.data.objects if o.type == "MESH"),
               key=lambda o: len(o.data.vertices))
    return armature, mesh


def test_bake_writes_every_file_it_was_asked_for(baked, open_asset):
    assert baked.frames == FRAMES
    assert sorted(baked.files) == ["blend", "fbx", "glb", "npz"]
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
