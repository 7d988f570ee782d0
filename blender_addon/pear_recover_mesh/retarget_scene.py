"""Retargeting in Blender: read a PEAR rig's keys and both armatures' rests, run
``retarget`` (pure numpy), key the target's bones in bulk. Used by the panel's *Retarget*
and by ``backend bake --retarget``."""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np
from bpy_extras import anim_utils
from mathutils import Vector

from .presets import Preset
from .retarget import Basis, Skeleton, basis_from_posed, plant_feet, posed_matrices, retarget
from .scene import new_channelbag, read_contacts, write_curve
from .shared import conventions

# Passes per frame on a constrained rig, at most: each pass sets every keyed bone again from
# where the last one left the rig; Rigify's settles in 2-6 (its finger joints last).
SOLVE_PASSES = 10
SETTLED = 1e-6  # largest change of any keyed quaternion component between passes


class RetargetError(RuntimeError):
    """What stops a retarget, said as what to do."""


@dataclass
class RetargetDone:
    frames: int
    bones: int  # target bones keyed
    unmapped: list[str]  # preset joints whose bone the target lacks
    planted: bool = False  # feet held where they touched down (the rig had contacts)


def armature_skeleton(armature: bpy.types.Object) -> Skeleton:
    bones = list(armature.data.bones)
    index = {bone.name: i for i, bone in enumerate(bones)}
    parents = [index[b.parent.name] if b.parent else -1 for b in bones]
    rest = np.array([np.array(b.matrix_local) for b in bones], np.float64)
    return Skeleton([b.name for b in bones], np.array(parents), rest)


def _curves(armature: bpy.types.Object):
    animation = armature.animation_data
    if animation is None or animation.action is None:
        raise RetargetError(f"{armature.name} has no animation to retarget: recover or bake "
                            "a clip onto it first")
    return anim_utils.action_get_channelbag_for_slot(animation.action,
                                                     animation.action_slot).fcurves


def read_keys(armature: bpy.types.Object, skeleton: Skeleton) -> tuple[np.ndarray, Basis]:
    """The frames the armature's action spans and every bone's rotation and location there
    (unkeyed channels at rest); linear keys are read in bulk."""
    curves = {(c.data_path, c.array_index): c for c in _curves(armature)}
    keyed = [c for c in curves.values() if len(c.keyframe_points)]
    if not keyed:
        raise RetargetError(f"{armature.name}'s action has no keys")
    first = min(c.keyframe_points[0].co[0] for c in keyed)
    last = max(c.keyframe_points[-1].co[0] for c in keyed)
    frames = np.arange(round(first), round(last) + 1, dtype=np.float64)
    rotations = np.zeros((len(frames), len(skeleton.names), 4))
    rotations[..., 0] = 1.0
    locations = np.zeros((len(frames), len(skeleton.names), 3))
    for bone, name in enumerate(skeleton.names):
        for channel, target, size in (("rotation_quaternion", rotations, 4),
                                      ("location", locations, 3)):
            for axis in range(size):
                curve = curves.get((f'pose.bones["{name}"].{channel}', axis))
                if curve is not None and len(curve.keyframe_points):
                    target[:, bone, axis] = _sample(curve, frames)
    return frames, Basis(rotations, locations)


def _sample(curve, frames: np.ndarray) -> np.ndarray:
    points = curve.keyframe_points
    co = np.empty(len(points) * 2, np.float64)
    points.foreach_get("co", co)
    interpolation = np.empty(len(points), np.int32)
    points.foreach_get("interpolation", interpolation)
    co = co.reshape(-1, 2)
    if (interpolation[:-1] == 1).all():  # LINEAR: what PEAR writes
        return np.interp(frames, co[:, 0], co[:, 1])
    return np.array([curve.evaluate(f) for f in frames])


def retarget_armature(source: bpy.types.Object, target: bpy.types.Object, preset: Preset,
                      action_name: str | None = None, plant: bool = True) -> RetargetDone:
    """Key ``target`` with ``source``'s motion through ``preset``: a fresh action (named
    ``action_name``, default "<target>_retargeted") on the target, mapped bones' rotations on
    every frame, the root bone's location too. Unmapped target bones are not keyed. With
    ``plant`` and the tracker's contacts on the source rig, the character's feet stay where
    they touched down (``retarget.plant_feet``)."""
    source_skeleton, target_skeleton = armature_skeleton(source), armature_skeleton(target)
    bones = {j: b for j, b in preset.bones.items()
             if j in source_skeleton.index and b in target_skeleton.index}
    if preset.root not in bones:
        raise RetargetError(f"{target.name} has no bone {preset.bones.get(preset.root)!r} for "
                            f"the preset {preset.name!r}'s root: choose another preset, or map "
                            "the bones (Custom)")
    frames, keys = read_keys(source, source_skeleton)
    move = np.array(target.matrix_world.inverted() @ source.matrix_world)
    posed = retarget(source_skeleton, posed_matrices(source_skeleton, keys), target_skeleton,
                     bones, preset.root, move, preset.keep_rest)
    contacts = read_contacts(source, frames) if plant else None
    feet = [(column, bones[joint]) for column, joint in enumerate(conventions.FOOT_JOINTS)
            if joint in bones]
    planted = contacts is not None and bool(feet)
    if planted:
        up = np.array(target.matrix_world.inverted().to_3x3() @ Vector((0.0, 0.0, 1.0)))
        posed = plant_feet(posed, [target_skeleton.index[bone] for _, bone in feet],
                           contacts[:, [column for column, _ in feet]], up)
    keyed = [target_skeleton.index[b] for b in bones.values()]
    root = target_skeleton.index[bones[preset.root]]
    for bone, values in preset.properties.items():  # e.g. Rigify's limbs switched to FK
        if bone in target.pose.bones:
            for name, value in values.items():
                target.pose.bones[bone][name] = value
    if any(pose_bone.constraints for pose_bone in target.pose.bones):
        basis = _solve_in_blender(target, target_skeleton, frames, posed, keyed, root)
    else:  # plain bones: Blender's evaluation is the parent chain, computed here at once
        basis = basis_from_posed(target_skeleton, posed)
    _key_bones(target, target_skeleton, frames, basis, keyed, root, action_name)
    return RetargetDone(len(frames), len(keyed),
                        sorted(j for j in preset.bones if j not in bones), planted)


def _solve_in_blender(target, skeleton: Skeleton, frames: np.ndarray, posed: np.ndarray,
                      keyed: list[int], root: int) -> Basis:
    """The keys for a rig whose bones follow constraints (a generated Rigify rig: controls
    under constrained helper bones), where a bone's parent pose is only known from Blender's
    own evaluation: per frame, each keyed bone is given its rotation (its head left where the
    rig puts it, but the root's) parents first, a depsgraph update between generations; the
    pass runs again, since constraints tie bones the hierarchy does not (Rigify's arm follows
    the shoulder through a constrained helper), until the keys stop changing."""
    from mathutils import Matrix

    depth = {bone: _keyed_ancestors(skeleton, bone, set(keyed)) for bone in keyed}
    generations = [[b for b in keyed if depth[b] == d] for d in range(max(depth.values()) + 1)]
    rotations = np.zeros((len(frames), len(skeleton.names), 4))
    rotations[..., 0] = 1.0
    locations = np.zeros((len(frames), len(skeleton.names), 3))
    pose_bones = target.pose.bones
    for bone in keyed:
        pose_bones[skeleton.names[bone]].rotation_mode = "QUATERNION"
        pose_bones[skeleton.names[bone]].matrix_basis = Matrix.Identity(4)
    layer = bpy.context.view_layer
    for t, frame in enumerate(frames):
        bpy.context.scene.frame_set(int(frame))
        for _ in range(SOLVE_PASSES):
            before = rotations[t, keyed].copy()
            for generation in generations:
                for bone in generation:
                    pose_bone = pose_bones[skeleton.names[bone]]
                    wanted = posed[t, bone].copy()
                    if bone != root:
                        wanted[:3, 3] = np.array(pose_bone.matrix)[:3, 3]
                    pose_bone.matrix = Matrix(wanted.tolist())
                layer.update()
            for bone in keyed:
                pose_bone = pose_bones[skeleton.names[bone]]
                rotations[t, bone] = pose_bone.rotation_quaternion
                locations[t, bone] = pose_bone.location
            if np.abs(rotations[t, keyed] - before).max() < SETTLED:
                break
    return Basis(rotations, locations)


def _keyed_ancestors(skeleton: Skeleton, bone: int, keyed: set[int]) -> int:
    count, parent = 0, skeleton.parents[bone]
    while parent >= 0:
        count += parent in keyed
        parent = skeleton.parents[parent]
    return count


def _key_bones(target, skeleton: Skeleton, frames: np.ndarray, basis: Basis, keyed: list[int],
               root: int, action_name: str | None) -> None:
    from .convert import continuous

    channelbag = new_channelbag(target, action_name or f"{target.name}_retargeted")
    rotations = continuous(basis.rotations)
    for bone in keyed:
        name = skeleton.names[bone]
        target.pose.bones[name].rotation_mode = "QUATERNION"
        for axis in range(4):
            write_curve(channelbag, f'pose.bones["{name}"].rotation_quaternion', axis, frames,
                         rotations[:, bone, axis], name)
    root_name = skeleton.names[root]
    for axis in range(3):
        write_curve(channelbag, f'pose.bones["{root_name}"].location', axis, frames,
                     basis.locations[:, root, axis], root_name)


def load_character(path, armature_name: str | None = None) -> bpy.types.Object:
    """Bring a character's armature (and the meshes it deforms) into the scene from a .blend
    (appended) or .fbx (imported); ``armature_name`` picks one when the file has several."""
    from pathlib import Path

    path = Path(path)
    before = set(bpy.data.objects)
    if path.suffix.lower() == ".blend":
        with bpy.data.libraries.load(str(path), link=False) as (source, loaded):
            loaded.objects = list(source.objects)
        for obj in loaded.objects:
            if obj is not None:
                bpy.context.scene.collection.objects.link(obj)
    elif path.suffix.lower() == ".fbx":
        bpy.ops.import_scene.fbx(filepath=str(path), automatic_bone_orientation=False)
    else:
        raise RetargetError(f"{path.name}: a character comes as a .blend or .fbx file")
    armatures = [o for o in set(bpy.data.objects) - before if o.type == "ARMATURE"]
    if armature_name is not None:
        chosen = [o for o in armatures if o.name == armature_name]
        if not chosen:
            raise RetargetError(f"{path.name} has no armature {armature_name!r}; it has "
                                f"{sorted(o.name for o in armatures)}")
        return chosen[0]
    if len(armatures) != 1:
        raise RetargetError(f"{path.name} holds {len(armatures)} armatures "
                            f"{sorted(o.name for o in armatures)}: name one with "
                            "--target-armature")
    return armatures[0]


def resolve_preset(choice: str, armature: bpy.types.Object) -> Preset:
    """A preset by shipped name (its file's stem, e.g. ``mixamo``), a preset file's path, or
    ``auto`` (the shipped preset matching most of the armature's bone names)."""
    from pathlib import Path

    from .presets import PRESET_DIR, PresetError, best_preset, load_preset

    if choice == "auto":
        return best_preset([b.name for b in armature.data.bones])
    shipped = PRESET_DIR / f"{choice}.json"
    if shipped.is_file():
        return load_preset(shipped)
    if Path(choice).is_file():
        return load_preset(choice)
    names = sorted(p.stem for p in PRESET_DIR.glob("*.json"))
    raise PresetError(f"no retarget preset {choice!r}: give one of {names}, 'auto', or a "
                      "preset file's path")


def export_bvh(armature: bpy.types.Object, path, frames: tuple[int, int]) -> None:
    """The armature's animation as BVH, through Blender's own exporter."""
    import addon_utils

    addon_utils.enable("io_anim_bvh", default_set=True)
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj is armature)
    bpy.context.view_layer.objects.active = armature
    bpy.ops.export_anim.bvh(filepath=str(path), frame_start=frames[0], frame_end=frames[1],
                            rotate_mode="NATIVE", root_transform_only=True)
