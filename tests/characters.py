"""Characters for retargeting tests (bpy): armatures named as a preset says, built on a PEAR
rig's rest joints with other proportions, rest poses and bone rolls; and the check that a
character's bones point where the PEAR rig's do."""

from __future__ import annotations

import numpy as np


def make_character(bpy, source, preset, name, scale=1.0, arm_drop=0.0, roll=0.0,
                   offset=(1.5, 0, 0)):
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
            if n.startswith(f"{side}_") and under(joints[n], f"{side}_shoulder"):
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


def under(bone, ancestor: str) -> bool:
    while bone is not None:
        if bone.name == ancestor:
            return True
        bone = bone.parent
    return False


def directions(bpy, armature, names, frames):
    """(frames, bones, 3) world directions of the named bones, evaluated by Blender."""
    out = []
    for frame in frames:
        bpy.context.scene.frame_set(frame)
        world = np.array(armature.matrix_world)[:3, :3]
        out.append([world @ np.array(armature.pose.bones[n].matrix)[:3, 1] for n in names])
    out = np.array(out)
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def check_directions(bpy, source, target, preset, frames, limit_deg=5.0):
    joints = [j for j, b in preset.bones.items() if b in target.pose.bones]
    a = directions(bpy, source, joints, frames)
    b = directions(bpy, target, [preset.bones[j] for j in joints], frames)
    angles = np.degrees(np.arccos(np.clip((a * b).sum(-1), -1, 1)))
    worst = np.unravel_index(np.argmax(angles), angles.shape)
    assert angles.max() < limit_deg, (joints[worst[1]], frames[worst[0]], angles.max())
    return joints
