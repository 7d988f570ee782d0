"""Retargeting in real Blender: a PEAR rig keyed with a clip's motion, retargeted onto a
Mixamo-named T-pose character (other proportions and bone rolls), a UE5-named A-pose one and
Rigify's own human meta-rig: every mapped bone points where its PEAR bone points, on every
frame, fingers included; the root travels by the leg ratio."""

from __future__ import annotations

import numpy as np
import pytest

from backend.body.model import BodyModel
from backend.pipeline.rig import build_rig
from backend.tracking.synthetic import make_clip

FRAMES = 12


@pytest.fixture()
def scene(bpy_module):
    from pear_recover_mesh import scene

    bpy_module.ops.wm.read_factory_settings(use_empty=True)
    return scene


@pytest.fixture(scope="module")
def clip(open_asset):
    model = BodyModel(open_asset).double()
    motion = make_clip(model, frames=FRAMES, seed=3, size=(480, 640), focal=600.0,
                       world_noise_m=0.0)
    rig = build_rig(open_asset, {})
    return rig, {k: v.numpy() for k, v in motion.params.items()}, motion.cam_t.numpy()


def _pear_rig(scene, clip):
    from pear_recover_mesh.keyframes import clip_keyframes

    rig, params, cam_t = clip
    armature, body = scene.build_rig(rig, "pear")
    action = scene.ClipAction(armature, body, rig["joint_names"], rig["expression_names"])
    action.add(clip_keyframes(params, cam_t, rig,
                              scene.bone_rest_rotations(armature, rig["joint_names"])))
    return armature


def _character(bpy, source, preset, name, scale=1.0, arm_drop=0.0, roll=0.0, offset=(1.5, 0, 0)):
    """An armature with the preset's bone names on the PEAR rig's rest joints (scaled, arms
    turned down by ``arm_drop`` radians about the shoulders, bones rolled by ``roll``), each
    bone parented to its nearest mapped ancestor."""
    from mathutils import Matrix, Vector

    joints = {b.name: b for b in source.data.bones}
    heads = {n: Vector(b.head_local) * scale for n, b in joints.items()}
    tails = {n: Vector(b.tail_local) * scale for n, b in joints.items()}
    for side in ("left", "right"):
        pivot = heads[f"{side}_shoulder"].copy()
        # The arm out along +x or -x goes down: about the forward axis, each side its way.
        out = np.sign(heads[f"{side}_wrist"].x - pivot.x)
        turn = Matrix.Rotation(arm_drop * out, 3, "Y")
        for n in joints:
            if n.startswith(f"{side}_") and _under(joints[n], f"{side}_shoulder"):
                heads[n] = pivot + turn @ (heads[n] - pivot)
                tails[n] = pivot + turn @ (tails[n] - pivot)
    data = bpy.data.armatures.new(name)
    character = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(character)
    character.location = offset
    bpy.context.view_layer.objects.active = character
    bpy.ops.object.mode_set(mode="EDIT")
    made = {}
    for joint, bone_name in preset.bones.items():
        bone = data.edit_bones.new(bone_name)
        bone.head, bone.tail, bone.roll = heads[joint], tails[joint], roll
        made[joint] = bone
    for joint, bone in made.items():
        parent = joints[joint].parent
        while parent is not None and parent.name not in made:
            parent = parent.parent
        if parent is not None:
            bone.parent = made[parent.name]
    extra = data.edit_bones.new("unmapped_end")  # a bone no joint drives
    extra.head, extra.tail = heads["head"] + Vector((0, 0, 0.2)), heads["head"] + Vector(
        (0, 0, 0.3))
    extra.parent = made["head"]
    bpy.ops.object.mode_set(mode="OBJECT")
    return character


def _under(bone, ancestor: str) -> bool:
    while bone is not None:
        if bone.name == ancestor:
            return True
        bone = bone.parent
    return False


def _directions(bpy, armature, names, frames):
    """(frames, bones, 3) world directions of the named bones, evaluated by Blender."""
    out = []
    for frame in frames:
        bpy.context.scene.frame_set(frame)
        world = np.array(armature.matrix_world)[:3, :3]
        out.append([world @ np.array(armature.pose.bones[n].matrix)[:3, 1] for n in names])
    out = np.array(out)
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def _check_directions(bpy, source, target, preset, frames, limit_deg=5.0):
    joints = [j for j, b in preset.bones.items() if b in target.pose.bones]
    a = _directions(bpy, source, joints, frames)
    b = _directions(bpy, target, [preset.bones[j] for j in joints], frames)
    angles = np.degrees(np.arccos(np.clip((a * b).sum(-1), -1, 1)))
    worst = np.unravel_index(np.argmax(angles), angles.shape)
    assert angles.max() < limit_deg, (joints[worst[1]], frames[worst[0]], angles.max())
    return joints


@pytest.mark.parametrize(("preset_name", "scale", "arm_drop", "roll"), [
    ("Mixamo", 1.1, 0.0, 0.8),  # T-pose, taller, other bone rolls
    ("UE5 mannequin", 0.9, 0.7, 0.0),  # A-pose, shorter
])
def test_a_character_follows_the_pear_rig_bone_for_bone(bpy_module, scene, clip, preset_name,
                                                        scale, arm_drop, roll):
    from pear_recover_mesh.presets import shipped_presets
    from pear_recover_mesh.retarget_scene import retarget_armature

    preset = {p.name: p for p in shipped_presets()}[preset_name]
    source = _pear_rig(scene, clip)
    target = _character(bpy_module, source, preset, "character", scale, arm_drop, roll)
    done = retarget_armature(source, target, preset)
    assert done.frames == FRAMES and done.bones == len(preset.bones) and not done.unmapped
    joints = _check_directions(bpy_module, source, target, preset, list(range(1, FRAMES + 1)))
    assert sum("thumb" in j or "index" in j for j in joints) == 12  # fingers are mapped
    # The root travels as the PEAR rig's does, scaled by the legs (here: the whole scale).
    root_s, root_t = source.pose.bones["pelvis"], target.pose.bones[preset.bones["pelvis"]]
    travelled = []
    for frame in (1, FRAMES):
        bpy_module.context.scene.frame_set(frame)
        travelled.append((np.array(source.matrix_world @ root_s.head),
                          np.array(target.matrix_world @ root_t.head)))
    moved_s = travelled[1][0] - travelled[0][0]
    moved_t = travelled[1][1] - travelled[0][1]
    np.testing.assert_allclose(moved_t, moved_s * scale, atol=1e-4)
    assert "unmapped_end" not in {c.data_path.split('"')[1] for c in
                                  _fcurves(target) if c.data_path.startswith("pose.bones")}


def _fcurves(armature):
    from bpy_extras import anim_utils

    animation = armature.animation_data
    return anim_utils.action_get_channelbag_for_slot(animation.action,
                                                     animation.action_slot).fcurves


def test_rigifys_own_meta_rig_follows(bpy_module, scene, clip):
    import addon_utils
    from pear_recover_mesh.presets import best_preset
    from pear_recover_mesh.retarget_scene import retarget_armature

    addon_utils.enable("rigify", default_set=True)
    source = _pear_rig(scene, clip)
    bpy_module.ops.object.armature_human_metarig_add()
    metarig = bpy_module.context.active_object
    metarig.location = (1.5, 0, 0)
    preset = best_preset([b.name for b in metarig.data.bones])
    assert preset.name == "Rigify meta-rig"
    retarget_armature(source, metarig, preset)
    joints = _check_directions(bpy_module, source, metarig, preset, [1, FRAMES // 2, FRAMES])
    assert {"left_shoulder", "right_knee", "left_index2", "head"} <= set(joints)
