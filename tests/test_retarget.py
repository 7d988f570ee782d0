"""Retargeting's pure parts: Blender's pose evaluation and its inverse, bone directions carried
onto a rig with another rest pose (T to A), root motion scaled by the legs, unmapped bones at
rest; the presets and the name-matching suggestions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pear_recover_mesh.convert import axis_angle_to_matrix, matrix_to_quaternion
from pear_recover_mesh.presets import (
    Preset,
    PresetError,
    best_preset,
    load_preset,
    shipped_presets,
    suggest,
)
from pear_recover_mesh.retarget import (
    Basis,
    Skeleton,
    basis_from_posed,
    bone_directions,
    posed_matrices,
    retarget,
)


def _bone(head, tail, roll_axis=(0.0, 0.0, 1.0)) -> np.ndarray:
    """A rest matrix: Y along head->tail, Z as close to ``roll_axis`` as allows."""
    y = np.subtract(tail, head, dtype=float)
    y /= np.linalg.norm(y)
    z = np.asarray(roll_axis, float) - y * (y @ roll_axis)
    if np.linalg.norm(z) < 1e-6:
        z = np.array([1.0, 0.0, 0.0]) - y * y[0]
    z /= np.linalg.norm(z)
    matrix = np.eye(4)
    matrix[:3, :3] = np.stack([np.cross(y, z), y, z], 1)
    matrix[:3, 3] = head
    return matrix


def _body(arm_drop: float, leg: float, roll=(0.0, 0.0, 1.0)) -> Skeleton:
    """A little body: hips up to the chest, a left arm out sideways and dropped by
    ``arm_drop`` radians (0: T-pose), a left leg of length ``leg`` down to a foot."""
    side = np.array([np.cos(arm_drop), 0.0, -np.sin(arm_drop)])
    shoulder = np.array([0.2, 0.0, 1.5])
    joints = {
        "pelvis": ((0, 0, 1.0), (0, 0, 1.3), -1), "spine3": ((0, 0, 1.3), (0, 0, 1.5), 0),
        "left_shoulder": (shoulder, shoulder + 0.3 * side, 1),
        "left_elbow": (shoulder + 0.3 * side, shoulder + 0.55 * side, 2),
        "left_hip": ((0.1, 0, 1.0), (0.1, 0, 1.0 - leg / 2), 0),
        "left_knee": ((0.1, 0, 1.0 - leg / 2), (0.1, 0, 1.0 - leg), 4),
        "left_ankle": ((0.1, 0, 1.0 - leg), (0.1, -0.1, 1.0 - leg), 5),
    }
    return Skeleton(list(joints), np.array([p for _, _, p in joints.values()]),
                    np.stack([_bone(h, t, roll) for h, t, _ in joints.values()]))


def _random_basis(rng, frames: int, bones: int, angle: float = 0.6) -> Basis:
    rotations = matrix_to_quaternion(axis_angle_to_matrix(rng.normal(0, angle, (frames, bones,
                                                                                 3))))
    locations = np.zeros((frames, bones, 3))
    locations[:, 0] = rng.normal(0, 0.2, (frames, 3))
    return Basis(rotations, locations)


def test_pose_evaluation_and_its_inverse_round_trip():
    rng = np.random.default_rng(0)
    body = _body(0.0, 0.9)
    basis = _random_basis(rng, 5, len(body.names))
    posed = posed_matrices(body, basis)
    # The child's head rides on its parent's tail region: chained, not independent.
    assert not np.allclose(posed[:, 3, :3, 3], body.rest[3, :3, 3])
    again = basis_from_posed(body, posed)
    np.testing.assert_allclose(np.abs((again.rotations * basis.rotations).sum(-1)), 1, atol=1e-9)
    np.testing.assert_allclose(again.locations, basis.locations, atol=1e-9)


@pytest.mark.parametrize("roll", [(0.0, 0.0, 1.0), (0.0, 1.0, 0.0)])
def test_bone_directions_follow_the_source_onto_an_a_pose_rig(roll):
    rng = np.random.default_rng(1)
    source, target = _body(0.0, 0.9), _body(0.7, 1.2, roll)  # T-pose -> A-pose, longer legs
    source_posed = posed_matrices(source, _random_basis(rng, 6, len(source.names)))
    bones = {name: name for name in source.names if name != "spine3"}  # the chest unmapped
    posed = retarget(source, source_posed, target, bones, root="pelvis")
    mapped = [source.index[n] for n in bones]
    angles = np.degrees(np.arccos(np.clip((
        bone_directions(posed, [target.index[n] for n in bones])
        * bone_directions(source_posed, mapped)).sum(-1), -1, 1)))
    assert angles.max() < 1e-4  # every mapped bone points where its source does
    # The unmapped chest keeps its rest relative to the pelvis.
    chest, pelvis = target.index["spine3"], target.index["pelvis"]
    relative = np.linalg.inv(posed[:, pelvis]) @ posed[:, chest]
    np.testing.assert_allclose(relative, np.broadcast_to(
        np.linalg.inv(target.rest[pelvis]) @ target.rest[chest], relative.shape), atol=1e-9)
    # The root moves by the source's displacement times the leg ratio, 1.2 / 0.9.
    moved_s = source_posed[:, 0, :3, 3] - source.rest[0, :3, 3]
    moved_t = posed[:, 0, :3, 3] - target.rest[0, :3, 3]
    np.testing.assert_allclose(moved_t, moved_s * 1.2 / 0.9, atol=1e-9)
    # Keys that pose the target so come back through Blender's evaluation.
    np.testing.assert_allclose(posed_matrices(target, basis_from_posed(target, posed)), posed,
                               atol=1e-9)


def test_a_turned_and_scaled_target_object_gets_the_motion_in_its_own_space():
    rng = np.random.default_rng(2)
    source = target = _body(0.0, 0.9)
    source_posed = posed_matrices(source, _random_basis(rng, 3, len(source.names)))
    # The target object sits turned 90 degrees about Z and at half size: a world direction d
    # is turn^T d in its space.
    move = np.eye(4)
    move[:3, :3] = axis_angle_to_matrix(np.array([0, 0, -np.pi / 2])) * 2.0
    posed = retarget(source, source_posed, target, {n: n for n in source.names}, "pelvis",
                     source_to_target=move)
    expected = np.einsum("ij,tbj->tbi", move[:3, :3] / 2, bone_directions(source_posed,
                                                                           range(7)))
    np.testing.assert_allclose(bone_directions(posed, range(7)), expected, atol=1e-9)


def test_shipped_presets_load_and_auto_picks_by_bone_names():
    presets = {p.name: p for p in shipped_presets()}
    assert set(presets) >= {"Mixamo", "UE5 mannequin", "Rigify meta-rig"}
    for preset in presets.values():
        assert preset.bones[preset.root] and len(preset.bones) >= 20 + 30  # body + fingers
    mixamo_names = list(presets["Mixamo"].bones.values()) + ["mixamorig:HeadTop_End"]
    assert best_preset(mixamo_names).name == "Mixamo"
    with pytest.raises(PresetError, match="choose Custom"):
        best_preset(["Bone", "Bone.001"])


def test_bad_preset_files_are_named(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(PresetError, match="broken.json cannot be read"):
        load_preset(path)
    path.write_text(json.dumps({"bones": {"pelvis": "Hips"}, "root": "head"}))
    with pytest.raises(PresetError, match="root joint 'head' maps to no bone"):
        load_preset(path)


@pytest.mark.parametrize("preset_name", ["Mixamo", "UE5 mannequin", "Rigify meta-rig"])
def test_name_matching_suggests_the_limbs_and_fingers_of_each_preset(preset_name):
    preset: Preset = {p.name: p for p in shipped_presets()}[preset_name]
    suggested = suggest(list(preset.bones), list(preset.bones.values()))
    limbs = [j for j in preset.bones if j.startswith(("left_", "right_"))]
    right = [j for j in limbs if suggested.get(j) == preset.bones[j]]
    assert len(right) / len(limbs) > 0.9, sorted(set(limbs) - set(right))


def test_planted_feet_stay_put_and_the_motion_never_jumps():
    from pear_recover_mesh.retarget import plant_feet

    frames, bones = 20, 3
    posed = np.tile(np.eye(4), (frames, bones, 1, 1))
    rng = np.random.default_rng(3)
    walk = np.cumsum(rng.normal(0, 0.02, (frames, 3)), axis=0)  # everything drifts about
    posed[:, :, :3, 3] = walk[:, None] + np.array([[0, 0, 1.0], [0.1, 0, 0.1], [-0.1, 0, 0.1]])
    contacts = np.zeros((frames, 2), bool)
    contacts[2:9, 0] = True  # the left foot (bone 1) down for frames 2-8, then the right
    contacts[12:18, 1] = True
    up = np.array([0.0, 0.0, 1.0])
    out = plant_feet(posed, [1, 2], contacts, up)
    for foot, rows in ((1, slice(2, 9)), (2, slice(12, 18))):
        ground = out[rows, foot, :2, 3]
        np.testing.assert_allclose(ground, np.broadcast_to(ground[0], ground.shape), atol=1e-12)
    np.testing.assert_allclose(out[..., 2, 3], posed[..., 2, 3])  # heights untouched
    shift = out[:, 0, :3, 3] - posed[:, 0, :3, 3]
    np.testing.assert_allclose(shift[9:12], np.broadcast_to(shift[8], (3, 3)))  # held, no jump
    np.testing.assert_allclose(shift[:3], 0, atol=1e-12)  # nothing moves before a contact
