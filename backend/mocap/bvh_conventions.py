"""The three BVH skeleton conventions of Bruce Hahne's "cgspeed" conversions of the CMU motion
capture database, and which BVH joint stands for each of the body model's joints.

Every convention is Y up with the rest pose facing +Z, the model's own frame, so no axis swap is
needed. Each entry of a joint map names, for one body joint (SMPL-X names):

* its *driver*: the BVH joint whose world rotation the body joint takes over (after the rest-pose
  alignment); ``None`` leaves the body joint at rest relative to its parent;
* its *anchor*: the BVH point that sits where the body joint sits, for the rest-pose alignment
  and the bone-direction check; ``Joint:end`` is that joint's End Site.

Where a BVH chain has more joints than the body model, the driver is the one that moves the
matching bone (mb2's ``Neck`` and ``Neck1`` are one neck joint: ``Neck1`` drives it, so the head
keeps its exact orientation and only the lower neck's bend is lumped in). The hip joints
(``LHipJoint``), ``lhand`` and daz's buttocks never rotate in these files, nor do the collars
(mb2's ``LeftShoulder``, max's ``LeftCollar``, daz's ``lCollar``): the model's collars stay at
rest, since the BVH clavicles start at the thorax joint, well below the model's collar joints,
and matching their direction would shrug the model's shoulders by 25-35 degrees. Fingers are
static too: hands come from the finger model (``fingers.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError

# CMU's ASF length unit: 1/0.45 inch, in metres.
CMU_UNIT = 2.54 / 0.45 / 100


@dataclass(frozen=True)
class Convention:
    name: str
    description: str
    metres_per_unit: float
    added_tpose_frame: bool  # cgspeed put a T-pose (not captured) in front of the motion
    joints: dict[str, tuple[str | None, str | None]]  # body joint -> (driver, anchor)

    def driver(self, joint: str) -> str | None:
        return self.joints.get(joint, (None, None))[0]

    def anchor(self, joint: str) -> str | None:
        return self.joints.get(joint, (None, None))[1]

    def bvh_names(self) -> set[str]:
        """Every BVH joint the map uses (End Sites by their joint)."""
        return {name.split(":")[0] for pair in self.joints.values() for name in pair if name}


def _same(**names: str) -> dict[str, tuple[str, str]]:
    return {joint: (name, name) for joint, name in names.items()}


def _sides(left: dict[str, tuple[str | None, str | None]], *prefixes: tuple[str, str]
           ) -> dict[str, tuple[str | None, str | None]]:
    """The left side's entries and their mirror: the first matching (left, right) prefix pair
    turns a left BVH name into the right one."""
    def mirror(name: str | None) -> str | None:
        for left_prefix, right_prefix in prefixes:
            if name and name.startswith(left_prefix):
                return right_prefix + name[len(left_prefix):]
        return name

    right = {joint.replace("left_", "right_"): (mirror(d), mirror(a))
             for joint, (d, a) in left.items()}
    return {**left, **right}


MB2 = Convention(
    "mb2", "cgspeed MotionBuilder-friendly: 31 joints, Z Y X rotations, CMU units, "
    "frame 1 an added T-pose", CMU_UNIT, True,
    {**_same(pelvis="Hips", spine2="Spine", spine3="Spine1", neck="Neck1", head="Head"),
     "spine1": ("LowerBack", "Hips"),
     **_sides({**_same(left_hip="LeftUpLeg", left_knee="LeftLeg", left_ankle="LeftFoot",
                       left_foot="LeftToeBase", left_shoulder="LeftArm",
                       left_elbow="LeftForeArm"),
               # The wrist twists in LeftHand and bends in LeftFingerBase: the hand is the latter.
               "left_wrist": ("LeftFingerBase", "LeftHand"),
               "left_middle1": (None, "LeftHandIndex1")}, ("Left", "Right"))},
)

# The 3dsMax release is mb2's tree under other names (its arms hang in the rest pose, which the
# rest alignment absorbs).
MB2_TO_MAX = {
    "LowerBack": "lowerback", "Spine": "Chest", "Spine1": "Chest2", "Neck1": "Neck",
    **{f"{side}{mb2}": f"{side}{max_name}" for side in ("Left", "Right")
       for mb2, max_name in (("UpLeg", "Hip"), ("Leg", "Knee"), ("Foot", "Ankle"),
                             ("ToeBase", "Toe"), ("Arm", "Shoulder"), ("ForeArm", "Elbow"),
                             ("Hand", "Wrist"))},
    "LeftFingerBase": "lhand", "RightFingerBase": "rhand",
    "LeftHandIndex1": "LFingers", "RightHandIndex1": "RFingers",
}

MAX = Convention(
    "max", "cgspeed 3dsMax-friendly: mb2's tree with other names, arms hanging in the rest "
    "pose, no added T-pose frame", CMU_UNIT, False,
    {joint: tuple(MB2_TO_MAX.get(n, n) if n else None for n in pair)
     for joint, pair in MB2.joints.items()},
)

DAZ = Convention(
    "daz", "cgspeed DAZ-friendly: 43 joints, Z X Y rotations below the root, centimetres, "
    "frame 1 an added T-pose, no toes", 0.01, True,
    # The hip sits low in the pelvis, so it also drives spine1 and the abdomen spine2.
    {**_same(pelvis="hip", spine2="abdomen", spine3="chest", neck="neck", head="head"),
     "spine1": ("hip", "hip"),
     **_sides({**_same(left_hip="lThigh", left_knee="lShin", left_ankle="lFoot",
                       left_shoulder="lShldr", left_elbow="lForeArm", left_wrist="lHand"),
               "left_foot": (None, "lFoot:end"),
               "left_middle1": (None, "lMid1")}, ("l", "r"))},
)

CONVENTIONS: tuple[Convention, ...] = (MB2, MAX, DAZ)


def detect_convention(joint_names: list[str], source: str = "the BVH file") -> Convention:
    """The convention whose joint names the file has; an InputError naming what is missing
    from each when none fits."""
    present = set(joint_names)
    missing = {c.name: sorted(c.bvh_names() - present) for c in CONVENTIONS}
    for convention in CONVENTIONS:
        if not missing[convention.name]:
            return convention
    closest = min(CONVENTIONS, key=lambda c: len(missing[c.name]))
    raise InputError(
        f"{source}: the skeleton is none of the known BVH conventions "
        f"({', '.join(c.name for c in CONVENTIONS)}); closest is {closest.name}, which lacks "
        f"{', '.join(missing[closest.name][:6])}. Use the cgspeed BVH conversions of the CMU "
        "database (MotionBuilder, 3dsMax or DAZ-friendly releases)")
