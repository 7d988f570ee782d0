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

from .characters import check_directions, make_character

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
    target = make_character(bpy_module, source, preset, "character", scale, arm_drop, roll)
    done = retarget_armature(source, target, preset)
    assert done.frames == FRAMES and done.bones == len(preset.bones) and not done.unmapped
    joints = check_directions(bpy_module, source, target, preset, list(range(1, FRAMES + 1)))
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
    joints = check_directions(bpy_module, source, metarig, preset, [1, FRAMES // 2, FRAMES])
    assert {"left_shoulder", "right_knee", "left_index2", "head"} <= set(joints)


def test_the_panels_custom_map_suggests_saves_and_retargets_in_one_undo(bpy_module, scene,
                                                                         clip, tmp_path):
    import pear_recover_mesh
    from pear_recover_mesh.presets import load_preset, shipped_presets

    mixamo = {p.name: p for p in shipped_presets()}["Mixamo"]
    source = _pear_rig(scene, clip)
    target = make_character(bpy_module, source, mixamo, "custom", 1.0, 0.5, 0.3)
    pear_recover_mesh.register()
    try:
        settings = bpy_module.context.scene.pear
        ops = bpy_module.ops.pear
        with pytest.raises(RuntimeError, match="pick the PEAR rig"):
            ops.retarget()
        settings.retarget_source, settings.retarget_target = source, target
        settings.retarget_preset = "CUSTOM"
        assert ops.retarget_suggest() == {"FINISHED"}
        suggested = {item.joint: item.bone for item in settings.bone_map}
        right = sum(suggested.get(j) == b for j, b in mixamo.bones.items())
        assert right >= 0.9 * len(mixamo.bones)
        for item in settings.bone_map:  # the user corrects the map to the real one
            item.bone = mixamo.bones.get(item.joint, "")
        settings.preset_file = str(tmp_path / "my_rig.json")
        assert ops.retarget_save_preset() == {"FINISHED"}
        assert load_preset(tmp_path / "my_rig.json").bones == mixamo.bones
        bpy_module.ops.ed.undo_push(message="before")
        assert ops.retarget() == {"FINISHED"}
        assert settings.status.startswith(f"retargeted {FRAMES} frames onto")
        bpy_module.ops.ed.undo_push(message="Retarget")
        target = bpy_module.data.objects["custom"]
        check_directions(bpy_module, bpy_module.data.objects["pear"], target, mixamo, [1, FRAMES])
        bpy_module.ops.ed.undo()
        assert bpy_module.data.objects["custom"].animation_data is None or \
            bpy_module.data.objects["custom"].animation_data.action is None
        settings = bpy_module.context.scene.pear  # undo reloads the scene: no stale handles
        settings.retarget_source = bpy_module.data.objects["pear"]
        assert ops.export_bvh(filepath=str(tmp_path / "pear.bvh")) == {"FINISHED"}
        header = (tmp_path / "pear.bvh").read_text().splitlines()
        assert header[0] == "HIERARCHY" and any(f"Frames: {FRAMES}" in h for h in header)
    finally:
        pear_recover_mesh.unregister()


def test_the_characters_feet_stay_planted_where_the_tracker_saw_contact(bpy_module, scene,
                                                                        clip):
    from pear_recover_mesh.presets import shipped_presets
    from pear_recover_mesh.retarget_scene import retarget_armature

    preset = {p.name: p for p in shipped_presets()}["Mixamo"]
    source = _pear_rig(scene, clip)
    contacts = np.zeros((FRAMES, 4), bool)
    contacts[2:8, 0] = True  # the left ankle down for frames 3-8 (scene frames)
    scene.store_contacts(source, np.arange(1, FRAMES + 1), contacts)
    later = contacts[6:].copy()
    later[:, 0] = False  # a later part of the clip says the foot lifted at frame 7
    scene.store_contacts(source, np.arange(7, FRAMES + 1), later)
    stored = scene.read_contacts(source, np.arange(1, FRAMES + 1))
    assert stored[:, 0].tolist() == [False, False, True, True, True, True] + [False] * (
        FRAMES - 6)
    target = make_character(bpy_module, source, preset, "planted", 1.1, 0.0, 0.0)

    def ankle_slide(plant: bool) -> float:
        done = retarget_armature(source, target, preset, plant=plant)
        assert done.planted == plant
        ankle = target.pose.bones[preset.bones["left_ankle"]]
        spots = []
        for frame in range(3, 7):
            bpy_module.context.scene.frame_set(frame)
            spots.append(np.array(target.matrix_world @ ankle.head)[:2])
        return float(np.abs(np.diff(spots, axis=0)).max())

    assert ankle_slide(plant=False) > 0.01  # the synthetic motion moves the foot about
    assert ankle_slide(plant=True) < 1e-4  # planted: it stays where it touched down


def test_a_rig_generated_by_rigify_follows_through_its_controls(bpy_module, scene, clip):
    """Rigify's generated rig: its FK controls keyed (limbs switched to FK), solved through
    Blender's own evaluation of its constraints; the deforming bones follow the PEAR rig."""
    import addon_utils
    from pear_recover_mesh.retarget_scene import resolve_preset, retarget_armature

    from .characters import directions

    addon_utils.enable("rigify", default_set=True)
    bpy_module.ops.object.armature_human_metarig_add()
    metarig = bpy_module.context.active_object
    bpy_module.ops.pose.rigify_generate()
    rig = next(o for o in bpy_module.data.objects if o.type == "ARMATURE" and o is not metarig)
    rig.location = (1.5, 0, 0)
    source = _pear_rig(scene, clip)
    preset = resolve_preset("auto", rig)
    assert preset.name == "Rigify rig"
    done = retarget_armature(source, rig, preset)
    assert done.bones == len(preset.bones) and not done.unmapped
    deforming = {"left_shoulder": "DEF-upper_arm.L", "left_elbow": "DEF-forearm.L",
                 "left_wrist": "DEF-hand.L", "right_shoulder": "DEF-upper_arm.R",
                 "right_elbow": "DEF-forearm.R", "left_hip": "DEF-thigh.L",
                 "right_knee": "DEF-shin.R", "left_ankle": "DEF-foot.L",
                 "left_collar": "DEF-shoulder.L", "head": "DEF-spine.006",
                 "left_index1": "DEF-f_index.01.L", "left_index3": "DEF-f_index.03.L",
                 "right_thumb2": "DEF-thumb.02.R"}
    frames = list(range(1, FRAMES + 1))
    a = directions(bpy_module, source, list(deforming), frames)
    b = directions(bpy_module, rig, list(deforming.values()), frames)
    angles = np.degrees(np.arccos(np.clip((a * b).sum(-1), -1, 1)))
    assert angles.max() < 5.0, dict(zip(deforming, angles.max(0).round(1), strict=True))
