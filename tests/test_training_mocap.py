"""Poses from motion capture: the BVH reader, retargeting the three cgspeed skeleton conventions
onto the open model, frame selection, the subject-wise split, the finger model and the pose
sources. Every test writes its own short BVH clips in the conventions' layouts; one more runs on
the real CMU clips in ../shared/data/mocap and skips without them."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from backend.errors import InputError
from backend.mocap.bvh import (
    BvhFormatError,
    forward_kinematics,
    local_transforms,
    parse_bvh,
    read_bvh,
)
from backend.mocap.bvh_conventions import CONVENTIONS, DAZ, MAX, MB2, detect_convention
from backend.mocap.fingers import FINGERS
from backend.mocap.poses import MocapPoses, RangePoses, asset_skeleton, finger_model
from backend.mocap.retarget import (
    anchor_positions,
    bone_direction_errors,
    retarget,
    select_frames,
    split_subjects,
    subject_of,
)
from backend.tracking.priors import angle_bounds

REAL_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "mocap" / "cmu"
BY_NAME = {c.name: c for c in CONVENTIONS}

# --- short BVH clips in the three conventions ------------------------------------------------
# A joint: (name, parent, OFFSET, rotation order); End Sites by joint. Offsets are those of real
# cgspeed files (mb2 subject 02, max subject 131, the daz standard skeleton).


def _mirror(joints, end_sites, prefixes):
    """The other side of a limb: x negated, names swapped by the first matching prefix."""
    def swap(name):
        for a, b in prefixes:
            if name.startswith(a):
                return b + name[len(a):]
        return name

    mirrored = [(swap(n), swap(p), (-o[0], o[1], o[2]), order) for n, p, o, order in joints]
    return mirrored, {swap(n): (-e[0], e[1], e[2]) for n, e in end_sites.items()}


def _with_sides(centre, side, side_ends, centre_ends, prefixes):
    other, other_ends = _mirror(side, side_ends, prefixes)
    return centre + side + other, {**centre_ends, **side_ends, **other_ends}


def _cmu_tree(arm_names, arm_offsets, arm_order, leg_names, spine_names, spine_offsets):
    legs = [(leg_names[0], "Hips", (0, 0, 0), "ZYX"),
            (leg_names[1], leg_names[0], (1.657, -1.803, 0.625), "ZYX"),
            (leg_names[2], leg_names[1], (2.597, -7.136, 0), "ZYX"),
            (leg_names[3], leg_names[2], (2.492, -6.848, 0), "ZYX"),
            (leg_names[4], leg_names[3], (0.197, -0.541, 2.146), "ZYX")]
    spine = [(spine_names[0], "Hips", (0, 0, 0), "ZYX")]
    for name, parent, offset in zip(spine_names[1:], spine_names[:-1], spine_offsets,
                                    strict=True):
        spine.append((name, parent, offset, "ZYX"))
    collar, upper, fore, hand, base, tip, thumb = arm_names
    arm = [(collar, spine_names[2], (0, 0, 0), "ZYX"),
           (upper, collar, arm_offsets[0], arm_order), (fore, upper, arm_offsets[1], arm_order),
           (hand, fore, arm_offsets[2], arm_order), (base, hand, (0, 0, 0), arm_order),
           (tip, base, arm_offsets[3], arm_order), (thumb, hand, (0, 0, 0), arm_order)]
    ends = {leg_names[4]: (0, 0, 1.112), spine_names[-1]: (0.013, 1.626, -0.053),
            tip: arm_offsets[4], thumb: arm_offsets[5]}
    centre = [("Hips", None, (0, 0, 0), "ZYX")] + spine
    head = spine_names[-1]
    return _with_sides(centre, legs + arm, {k: v for k, v in ends.items() if k != head},
                       {head: ends[head]}, (("Left", "Right"), ("L", "R"), ("l", "r")))


def mb2_skeleton():
    return _cmu_tree(
        ("LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand", "LeftFingerBase",
         "LeftHandIndex1", "LThumb"),
        [(3.542, 0.904, -0.174), (4.865, 0, 0), (3.356, 0, 0), (0.661, 0, 0), (0.533, 0, 0),
         (0.541, 0, 0.541)], "ZYX",
        ("LHipJoint", "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase"),
        ("LowerBack", "Spine", "Spine1", "Neck", "Neck1", "Head"),
        [(0.020, 2.055, -0.141), (0.010, 2.064, -0.059), (0, 0, 0), (0.007, 1.567, 0.150),
         (0.034, 1.560, -0.100)])


def max_skeleton():
    # Arms hang in the rest pose and turn Z X Y; the rest is mb2's tree under other names.
    return _cmu_tree(
        ("LeftCollar", "LeftShoulder", "LeftElbow", "LeftWrist", "lhand", "LFingers", "LThumb"),
        [(3.054, 1.471, -0.017), (0, -4.251, 0), (0, -3.276, 0), (0, -0.658, 0), (0, -0.530, 0),
         (0, -0.538, 0.538)], "ZXY",
        ("LHipJoint", "LeftHip", "LeftKnee", "LeftAnkle", "LeftToe"),
        ("lowerback", "Chest", "Chest2", "lowerneck", "Neck", "Head"),
        [(-0.023, 1.987, 0.003), (-0.007, 1.990, -0.005), (0, 0, 0), (0.001, 1.610, 0.107),
         (-0.011, 1.599, 0.013)])


def daz_skeleton():
    centre = [("hip", None, (0, 0, 0), "ZYX"), ("abdomen", "hip", (0, 20.688, -0.732), "ZXY"),
              ("chest", "abdomen", (0, 11.704, -0.488), "ZXY"),
              ("neck", "chest", (0, 22.189, -2.195), "ZXY"),
              ("head", "neck", (-0.244, 7.071, 1.219), "ZXY"),
              ("leftEye", "head", (4.145, 8.047, 8.047), "ZXY"),
              ("rightEye", "head", (-3.658, 8.047, 8.047), "ZXY")]
    side = [("rCollar", "chest", (-2.682, 19.263, -4.877), "ZXY"),
            ("rShldr", "rCollar", (-8.778, -1.951, 1.463), "ZXY"),
            ("rForeArm", "rShldr", (-28.174, -1.712, 0.488), "ZXY"),
            ("rHand", "rForeArm", (-22.588, 0.773, 7.071), "ZXY")]
    ends = {"leftEye": (1, 0, 0), "rightEye": (1, 0, 0)}
    for finger, offset in (("Thumb", (-1.219, -0.488, 3.414)), ("Index", (-7.759, 0.938, 5.608)),
                           ("Mid", (-8.247, 1.182, 3.414)), ("Ring", (-8.828, 0.547, 1.517)),
                           ("Pinky", (-8.272, -0.048, -0.458))):
        side += [(f"r{finger}1", "rHand", offset, "ZXY"),
                 (f"r{finger}2", f"r{finger}1", (-2.5, -0.6, 1.0), "ZXY")]
        ends[f"r{finger}2"] = (-1.8, -0.3, 0.9)
    side += [("rButtock", "hip", (-8.778, 4.351, 1.219), "ZXY"),
             ("rThigh", "rButtock", (0, -1.707, -2.195), "ZXY"),
             ("rShin", "rThigh", (0, -36.820, 0.732), "ZXY"),
             ("rFoot", "rShin", (0.732, -45.110, -5.121), "ZXY")]
    ends["rFoot"] = (-1.122, -3.700, 12.103)
    return _with_sides(centre, side, {k: v for k, v in ends.items() if k.startswith("r")},
                       {k: v for k, v in ends.items() if not k.startswith("r")}, (("r", "l"),))


SKELETONS = {"mb2": mb2_skeleton, "max": max_skeleton, "daz": daz_skeleton}


def write_bvh_text(joints, end_sites, angles, root_position, frame_time=1 / 120):
    """A BVH file: the hierarchy (children in list order), then one line per frame. ``angles``:
    joint -> (F, 3) degrees in the joint's channel order (missing joints stay at zero)."""
    children = {}
    for joint in joints:
        children.setdefault(joint[1], []).append(joint)
    order, lines = [], ["HIERARCHY"]

    def block(joint, depth):
        name, parent, offset, rotation = joint
        pad = "\t" * depth
        lines.append(f"{pad}{'ROOT' if parent is None else 'JOINT'} {name}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}\tOFFSET {offset[0]:.5f} {offset[1]:.5f} {offset[2]:.5f}")
        position = "Xposition Yposition Zposition " if parent is None else ""
        axes = " ".join(f"{a}rotation" for a in rotation)
        lines.append(f"{pad}\tCHANNELS {6 if parent is None else 3} {position}{axes}")
        order.append(joint)
        for child in children.get(name, []):
            block(child, depth + 1)
        if name in end_sites:
            e = end_sites[name]
            lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{",
                          f"{pad}\t\tOFFSET {e[0]:.5f} {e[1]:.5f} {e[2]:.5f}", f"{pad}\t}}"])
        lines.append(f"{pad}}}")

    block(children[None][0], 0)
    frames = len(root_position)
    columns = [root_position]
    for name, _, _, _ in order:
        columns.append(angles.get(name, np.zeros((frames, 3))))
    motion = np.concatenate(columns, axis=1)
    lines += ["MOTION", f"Frames: {frames}", f"Frame Time: {frame_time:.7f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in motion]
    return "\n".join(lines) + "\n"


def rest_bone(joints, end_sites, start, end):
    """Rest-pose vector from joint ``start`` to joint ``end`` (or its End Site)."""
    offsets = {n: np.array(o, float) for n, _, o, _ in joints}
    parent = {n: p for n, p, _, _ in joints}

    def position(name):
        return offsets[name] + (position(parent[name]) if parent[name] else 0)

    tip = position(end) if end in offsets else position(start) + np.array(end_sites[start])
    return tip - position(start)


def euler(rotation: Rotation, order: str) -> np.ndarray:
    with warnings.catch_warnings():  # a quarter turn locks the gimbal; the angles stay exact
        warnings.simplefilter("ignore", UserWarning)
        return rotation.as_euler(order, degrees=True)


def hinge_axes_of(convention, joints, end_sites):
    """Per BVH hinge joint, the axis a CMU-like bend turns it about: a limb bent in the rest
    pose (daz's arms) bends further in that plane; a straight one as CMU's do, elbows bringing
    the forearm forward and 30 degrees up (CMU's arms are twisted so), knees the shin back."""
    axes = {}
    for side in ("left", "right"):
        for joint, parent, child, bend in (("elbow", "shoulder", "wrist", (0, 0.5, 0.866)),
                                           ("knee", "hip", "ankle", (0, 0, -1))):
            driver = convention.driver(f"{side}_{joint}")
            upper = rest_bone(joints, end_sites, convention.anchor(f"{side}_{parent}"), driver)
            lower = rest_bone(joints, end_sites, driver, convention.anchor(f"{side}_{child}"))
            axis = np.cross(upper, lower)
            if np.linalg.norm(axis) < 0.1 * np.linalg.norm(upper) * np.linalg.norm(lower):
                axis = np.cross(lower, bend)
            axes[driver] = axis / np.linalg.norm(axis)
    return axes


def moving_clip(convention, frames=9, seed=0):
    """A clip whose mapped joints all turn (hinges about their axis only), the root moving;
    a T-pose frame first where the convention has one."""
    joints, end_sites = SKELETONS[convention.name]()
    order = {n: o for n, _, _, o in joints}
    rng = np.random.default_rng(seed)
    hinges = hinge_axes_of(convention, joints, end_sites)
    angles = {}
    drivers = {d for d, _ in convention.joints.values() if d}
    for name in drivers:
        if name in hinges:
            bend = np.radians(rng.uniform(20, 110, frames))
            rotation = Rotation.from_rotvec(hinges[name] * bend[:, None])
        else:
            rotation = Rotation.from_euler("ZYX", rng.uniform(-30, 30, (frames, 3)), degrees=True)
        angles[name] = euler(rotation, order[name])
    root = np.column_stack([rng.uniform(-20, 20, frames), rng.uniform(14, 18, frames),
                            rng.uniform(-20, 20, frames)])
    if convention.added_tpose_frame:
        angles = {k: np.vstack([np.zeros((1, 3)), v]) for k, v in angles.items()}
        root = np.vstack([[0, 16.9, 0], root])
    return parse_bvh(write_bvh_text(joints, end_sites, angles, root), f"{convention.name}.bvh")


def posed_joints(model, retargeted):
    with torch.no_grad():
        out = model(global_orient=torch.as_tensor(retargeted.global_orient),
                    body_pose=torch.as_tensor(retargeted.body_pose.reshape(len(retargeted), -1)),
                    transl=torch.as_tensor(retargeted.transl))
    return out.joints.numpy()


# --- the reader ----------------------------------------------------------------------------


def test_parse_reads_hierarchy_channel_orders_and_frames():
    mb2, daz = moving_clip(MB2, frames=4), moving_clip(DAZ, frames=4)
    assert len(mb2.joints) == 31 and len(daz.joints) == 43
    assert mb2.joints[0].channels[:3] == ("Xposition", "Yposition", "Zposition")
    assert {j.rotation_order for j in mb2.joints} == {"ZYX"}
    assert daz.joints[0].rotation_order == "ZYX"
    assert {j.rotation_order for j in daz.joints[1:]} == {"ZXY"}
    assert mb2.motion.shape == (5, 96) and daz.motion.shape == (5, 132)
    assert mb2.fps == pytest.approx(120, rel=1e-5)
    assert mb2.joints[mb2.joint_names.index("LeftUpLeg")].parent == mb2.joint_names.index(
        "LHipJoint")
    np.testing.assert_allclose(daz.joints[daz.joint_names.index("lFoot")].end_site,
                               [1.122, -3.7, 12.103])


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Degrees between rows of ``a`` and ``b``."""
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def _rot(axis: str, degrees: float) -> np.ndarray:
    """A rotation about one axis written out by hand (not scipy's)."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = {"X": (1, 2), "Y": (2, 0), "Z": (0, 1)}[axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


def test_channels_apply_in_their_order_and_forward_kinematics_composes():
    joints, end_sites = daz_skeleton()
    angles = {"hip": np.array([[90.0, 0.0, 0.0]]),  # Z Y X: a quarter turn about Z
              "lForeArm": np.array([[30.0, 40.0, 50.0]])}  # Z X Y
    clip = parse_bvh(write_bvh_text(joints, end_sites, angles, np.array([[1.0, 2.0, 3.0]])))
    local, _ = local_transforms(clip)
    fore = clip.joint_names.index("lForeArm")
    np.testing.assert_allclose(local[0, fore], _rot("Z", 30) @ _rot("X", 40) @ _rot("Y", 50),
                               atol=1e-12)
    world, positions = forward_kinematics(clip)
    hand = clip.joint_names.index("lHand")
    chain = [clip.joint_names.index(n) for n in ("hip", "chest", "lCollar", "lShldr")]
    expected = np.array([1.0, 2.0, 3.0])
    for joint in chain[1:] + [fore, hand]:
        parent = clip.joints[joint].parent
        expected = positions[0, parent] + world[0, parent] @ clip.joints[joint].offset
        np.testing.assert_allclose(positions[0, joint], expected, atol=1e-9)
    np.testing.assert_allclose(world[0, chain[0]], _rot("Z", 90), atol=1e-12)
    np.testing.assert_allclose(world[0, hand], _rot("Z", 90) @ local[0, fore], atol=1e-12)


@pytest.mark.parametrize("breakage, culprit", [
    (lambda t: t.replace("OFFSET 0.00000 20.68800", "OFFSET 0.00000 twenty"), "twenty"),
    (lambda t: t.replace("Zrotation Xrotation Yrotation", "Zrotation Xrotation Wrot", 1), "Wrot"),
    (lambda t: t.replace("JOINT abdomen", "JOINT"), "JOINT\n"),
    (lambda t: t.rsplit("\n", 2)[0] + "\n1 2 3\n", "1 2 3"),
    (lambda t: t.replace("Frames: 2", "Frames: 3"), "Frames: 3"),
    (lambda t: t.replace("Frame Time: 0.0083333", "Frame Time: 0"), "Frame Time: 0"),
    (lambda t: t[:t.index("MOTION")], "\n}\n"),  # the file ends on the hierarchy's last line
])
def test_malformed_files_name_the_file_and_line(tmp_path, breakage, culprit):
    joints, end_sites = daz_skeleton()
    text = breakage(write_bvh_text(joints, end_sites, {}, np.zeros((2, 3))))
    line = text[:text.rindex(culprit) + 1].count("\n") + 1
    path = tmp_path / "broken.bvh"
    path.write_text(text)
    with pytest.raises(BvhFormatError, match=rf"broken\.bvh, line {line}:") as error:
        read_bvh(path)
    assert isinstance(error.value, InputError)


def test_a_skeleton_of_no_known_convention_is_named():
    clip = moving_clip(MB2, frames=2)
    names = [n.replace("LeftForeArm", "LeftElbowJoint") for n in clip.joint_names]
    with pytest.raises(InputError, match="closest is mb2, which lacks LeftForeArm"):
        detect_convention(names, "odd.bvh")
    assert detect_convention(clip.joint_names) is MB2


# --- retargeting ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mb2", "max", "daz"])
def test_retargeted_model_bones_follow_the_bvh_bones(open_model, name):
    convention = BY_NAME[name]
    clip = moving_clip(convention)
    skeleton = asset_skeleton(open_model)
    assert detect_convention(clip.joint_names) is convention
    frames = np.arange(clip.num_frames)
    retargeted = retarget(clip, skeleton, name, frames)
    joints = posed_joints(open_model, retargeted)
    errors = bone_direction_errors(clip, convention, skeleton, frames, joints)
    # Every limb bone but the collars (left at rest), the hips' axis and the spine.
    assert len(errors) == 17
    worst = {bone: float(e.max()) for bone, e in errors.items()}
    assert max(worst.values()) < 0.5, worst
    # The model's pelvis rides on the BVH root, scaled by the legs' lengths so its feet stay on
    # the capture's floor; in metres (the convention's unit) these legs are a bit longer.
    world, positions = forward_kinematics(clip, frames)
    anchors = anchor_positions(clip, convention, world, positions)
    bvh_legs = sum(np.linalg.norm(anchors[convention.anchor(f"left_{b}")][0]
                                  - anchors[convention.anchor(f"left_{a}")][0])
                   for a, b in (("hip", "knee"), ("knee", "ankle")))
    rest = skeleton.rest_joints
    model_legs = sum(np.linalg.norm(rest[skeleton.index(f"left_{b}")]
                                    - rest[skeleton.index(f"left_{a}")])
                     for a, b in (("hip", "knee"), ("knee", "ankle")))
    assert retargeted.scale == pytest.approx(model_legs / bvh_legs)
    np.testing.assert_allclose(joints[:, 0], positions[:, 0] * retargeted.scale, atol=1e-9)
    assert 0.6 < model_legs / (bvh_legs * convention.metres_per_unit) < 1.0


@pytest.mark.parametrize("name", ["mb2", "max", "daz"])
def test_a_bent_bvh_elbow_bends_the_model_elbow_about_its_hinge(open_model, name):
    convention = BY_NAME[name]
    joints, end_sites = SKELETONS[name]()
    order = {n: o for n, _, _, o in joints}
    hinges = hinge_axes_of(convention, joints, end_sites)
    elbow = convention.driver("left_elbow")
    # Frames 0-4 bend the elbow 0, 30, 60, 90, 120 degrees about its axis, nothing else moves.
    bends = np.radians([0, 30, 60, 90, 120])
    angles = {elbow: euler(Rotation.from_rotvec(hinges[elbow] * bends[:, None]), order[elbow])}
    clip = parse_bvh(write_bvh_text(joints, end_sites, angles, np.zeros((5, 3))))
    skeleton = asset_skeleton(open_model)
    retargeted = retarget(clip, skeleton, name, np.arange(5), convention)
    posed = posed_joints(open_model, retargeted)
    shoulder, elbow_joint, wrist = (skeleton.index(f"left_{j}")
                                    for j in ("shoulder", "elbow", "wrist"))
    world, positions = forward_kinematics(clip)
    anchors = anchor_positions(clip, convention, world, positions)
    bvh_arm = [anchors[convention.anchor(f"left_{j}")] for j in ("shoulder", "elbow", "wrist")]
    model_arm = [posed[:, j] for j in (shoulder, elbow_joint, wrist)]
    bvh_angle, model_angle = (_angle(a[1] - a[0], a[2] - a[1]) for a in (bvh_arm, model_arm))
    assert bvh_angle[-1] - bvh_angle[0] > 100
    np.testing.assert_allclose(model_angle, bvh_angle, atol=0.5)
    # The model's elbow turns about its own hinge (the tracker's), not sideways: the arm's
    # twist was matched, which bone directions alone would not do (30 degrees off here).
    axis = skeleton.hinge_axes[elbow_joint]
    rotvec = retargeted.body_pose[:, skeleton.body_joints.index(elbow_joint) - 1]
    flexion = rotvec @ axis
    sideways = np.linalg.norm(rotvec - flexion[:, None] * axis, axis=-1)
    assert np.degrees(sideways).max() < 4, np.degrees(sideways)
    assert np.all(np.diff(flexion) > 0)  # bending further in the BVH bends further here


def test_added_tpose_and_all_zero_frames_are_dropped_and_the_rest_subsampled():
    clip = moving_clip(MB2, frames=240)  # 241 frames at 120 fps: the T-pose, then 2 s
    kept = select_frames(clip, MB2, target_fps=10)
    assert kept[0] == 1 and len(kept) == 20 and set(np.diff(kept)) == {12}
    motion = clip.motion.copy()
    motion[2:4] = 0  # cgspeed wrote a few all-zero frames
    zeroed = type(clip)(clip.source, clip.joints, clip.frame_time, motion)
    assert not {0, 2, 3} & set(select_frames(zeroed, MB2, target_fps=120))
    # The 3dsMax release has no added T-pose: its first frame is motion.
    max_clip = moving_clip(MAX, frames=30)
    assert select_frames(max_clip, MAX, target_fps=10)[0] == 0
    assert len(select_frames(max_clip, MAX, target_fps=60)) == 15


def test_subjects_and_the_validation_split():
    assert subject_of("mb2/02/02_01") == "2"
    assert subject_of("131_03") == "131"
    assert subject_of("daz/aclstm/salsa/01") == "daz/aclstm/salsa"
    subjects = [str(s) for s in range(1, 21)]
    train, val = split_subjects(subjects * 2, 0.15)
    assert (train, val) == split_subjects(reversed(subjects), 0.15)  # deterministic
    assert len(val) == 3 and not set(train) & set(val) and set(train) | set(val) == set(subjects)
    assert len(split_subjects(["1", "2"], 0.15)[1]) == 1  # at least one held out
    assert split_subjects(["1"], 0.15) == (["1"], [])
    with pytest.raises(InputError):
        split_subjects(subjects, 1.0)


def test_mocap_poses_hold_out_whole_subjects_and_draw_by_seed(open_model, tmp_path):
    joints, end_sites = mb2_skeleton()
    rng = np.random.default_rng(3)
    for subject in range(1, 7):
        for take in (1, 2):
            angles = {"LeftArm": rng.uniform(-40, 40, (37, 3)),
                      "Spine": rng.uniform(-9, 9, (37, 3))}
            path = tmp_path / "mb2" / f"{subject:02d}" / f"{subject:02d}_{take:02d}.bvh"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(write_bvh_text(joints, end_sites, angles, rng.uniform(0, 17, (37, 3))))
    train = MocapPoses.from_folder(tmp_path, open_model, "train", validation_fraction=0.3)
    val = MocapPoses.from_folder(tmp_path, open_model, "val", validation_fraction=0.3)
    assert len(val.subjects) == 2 and not set(train.subjects) & set(val.subjects)
    assert len(train) == 8 * 3 and len(val) == 4 * 3  # frames 1, 13, 25 of each take
    draws = [train.draw(np.random.default_rng(7)) for _ in range(2)]
    assert draws[0][1] == draws[1][1] and draws[0][1].startswith("mocap:mb2/")
    for name, value in draws[0][0].items():
        np.testing.assert_array_equal(value, draws[1][0][name])
    sources = {train.draw(np.random.default_rng(seed))[1] for seed in range(40)}
    clip, frame = next(iter(sources)).split(":")[1:]
    assert subject_of(clip) in train.subjects and int(frame) in (1, 13, 25)
    assert len(sources) > 10
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .bvh files.*mocap.cs.cmu.edu"):
        MocapPoses.from_folder(tmp_path / "empty", open_model)


# --- the finger model and the range source ---------------------------------------------------


def test_finger_model_stays_in_range_curls_toward_the_palm_and_fans(open_model):
    skeleton = asset_skeleton(open_model)
    fingers = finger_model(open_model, skeleton)
    bounds = angle_bounds(list(open_model.joint_names)).numpy()
    rng = np.random.default_rng(0)
    for _ in range(200):
        for side, pose in fingers.draw(rng).items():
            joints = open_model.pose_joints[side]
            assert np.all(np.linalg.norm(pose, axis=-1) <= bounds[joints] + 1e-9)

    def tips(side, curl, spread):
        pose = fingers.hand_pose(side, dict.fromkeys(FINGERS, curl), spread)
        with torch.no_grad():
            out = open_model(**{f"{side}_hand_pose": torch.as_tensor(pose).reshape(1, -1)})
        return {f: out.joints[0, skeleton.index(f"{side}_{f}3")].numpy() for f in FINGERS}

    for side, outward in (("left", 1.0), ("right", -1.0)):
        rest, curled, fanned = tips(side, 0, 0), tips(side, 0.25, 0), tips(side, 0, 1)
        for finger in FINGERS:
            # The open model's palms face in toward the body: curling moves every fingertip in.
            moved = curled[finger] - rest[finger]
            assert moved[0] * outward < -0.009, (side, finger, moved)
        thumb_side = (skeleton.rest_joints[skeleton.index(f"{side}_index1")]
                      - skeleton.rest_joints[skeleton.index(f"{side}_pinky1")])
        assert (fanned["index"] - rest["index"]) @ thumb_side > 0
        assert (fanned["pinky"] - rest["pinky"]) @ thumb_side < 0


def test_range_poses_keep_joints_in_bounds_and_hinges_on_their_axis(open_model):
    poses = RangePoses(open_model)
    bounds = poses.bounds[open_model.pose_joints["body_pose"]]
    first = [poses.draw(np.random.default_rng(5)) for _ in range(2)]
    np.testing.assert_array_equal(first[0][0]["body_pose"], first[1][0]["body_pose"])
    rng = np.random.default_rng(1)
    for _ in range(100):
        pose, source = poses.draw(rng)
        assert source == "ranges" and not pose["global_orient"].any()
        body = pose["body_pose"]
        assert np.all(np.linalg.norm(body, axis=-1) <= bounds + 1e-9)
        for joint, axis in poses.skeleton.hinge_axes.items():
            rotvec = body[open_model.pose_joints["body_pose"].index(joint)]
            assert rotvec @ axis >= 0 and np.allclose(np.cross(rotvec, axis), 0)


# --- the real clips, when ../shared is there -----------------------------------------------


@pytest.mark.skipif(not REAL_CLIPS.is_dir(), reason="no ../shared/data/mocap (CMU clips)")
def test_real_cmu_clips_of_each_convention(open_model):
    skeleton = asset_skeleton(open_model)
    for relative in ("mb2/02/02_01.bvh", "max/131/131_01.bvh", "daz/12/12_01.bvh"):
        clip = read_bvh(REAL_CLIPS / relative)
        convention = detect_convention(clip.joint_names)
        assert convention.name == relative.split("/")[0]
        retargeted = retarget(clip, skeleton, relative)
        assert abs(len(retargeted) - (clip.num_frames - 1) / 12) <= 1
        errors = bone_direction_errors(clip, convention, skeleton, retargeted.frames,
                                       posed_joints(open_model, retargeted))
        # Exact but for the lower neck, which mb2 and max split into two joints.
        assert max(float(e.max()) for b, e in errors.items() if b != "spine3-neck") < 0.5
