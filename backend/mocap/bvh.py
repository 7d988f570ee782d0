"""BVH motion files: the reader (hierarchy, offsets, each joint's channel order, frames, frame
time) and forward kinematics to world joint rotations and positions.

Numpy only (scipy's rotations for the Euler angles). A joint's rotation channels are applied in
the order they are listed, as intrinsic rotations: ``Zrotation Xrotation Yrotation`` is
``Rz @ Rx @ Ry``. Position channels add to the joint's OFFSET. Reading files happens here and
nowhere else in the training data code; what is parsed is plain arrays.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import InputError

_CHANNELS = {f"{axis}{kind}" for axis in "XYZ" for kind in ("position", "rotation")}


class BvhFormatError(InputError):
    """A BVH file that cannot be read: names the file, the line and what was expected."""


@dataclass(frozen=True)
class BvhJoint:
    name: str
    parent: int  # index into BvhClip.joints; -1 for the root
    offset: np.ndarray  # (3,) from the parent joint, in the file's units
    channels: tuple[str, ...]  # e.g. ("Xposition", "Yposition", "Zposition", "Zrotation", ...)
    end_site: np.ndarray | None  # (3,) offset of its End Site, for joints that end a chain

    @property
    def rotation_order(self) -> str:
        """The rotation axes in channel order, e.g. ``"ZXY"``."""
        return "".join(c[0] for c in self.channels if c.endswith("rotation"))


@dataclass(frozen=True)
class BvhClip:
    source: str  # the file (or a name) the clip came from, for messages
    joints: tuple[BvhJoint, ...]  # parents before children, in file order
    frame_time: float  # seconds
    motion: np.ndarray  # (F, C) channel values, joints' channels in file order

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    @property
    def num_frames(self) -> int:
        return self.motion.shape[0]

    @property
    def joint_names(self) -> list[str]:
        return [joint.name for joint in self.joints]

    @property
    def parents(self) -> list[int]:
        return [joint.parent for joint in self.joints]

    def channel_columns(self, joint: int) -> dict[str, int]:
        """Channel name -> column of ``motion`` for one joint."""
        start = sum(len(j.channels) for j in self.joints[:joint])
        return {name: start + k for k, name in enumerate(self.joints[joint].channels)}


def read_bvh(path: str | Path) -> BvhClip:
    """Read and parse one BVH file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise InputError(f"{path}: no such BVH file") from None
    except UnicodeDecodeError as exc:
        raise BvhFormatError(f"{path}: not a text BVH file ({exc.reason} at byte "
                             f"{exc.start})") from None
    return parse_bvh(text, str(path))


def find_bvh_files(folder: str | Path) -> list[Path]:
    """Every ``.bvh`` file below ``folder``, in a fixed order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of BVH files")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".bvh" and p.is_file())


def parse_bvh(text: str, source: str = "<bvh>") -> BvhClip:
    """A clip from the text of a BVH file; ``source`` names it in error messages."""
    lines = text.splitlines()
    tokens = _Tokens(lines, source)
    tokens.expect("HIERARCHY")
    tokens.expect("ROOT")
    joints: list[BvhJoint] = []
    _parse_joint(tokens, joints, parent=-1)
    tokens.expect("MOTION")
    tokens.expect("Frames:")
    num_frames = tokens.integer()
    frames_line = tokens.line
    tokens.expect("Frame")
    tokens.expect("Time:")
    frame_time = tokens.number()
    if not frame_time > 0:
        raise tokens.error(f"Frame Time must be positive, got {frame_time}")
    num_channels = sum(len(j.channels) for j in joints)
    motion = _parse_frames(lines, tokens.line, (num_frames, frames_line), num_channels, source)
    return BvhClip(source, tuple(joints), frame_time, motion)


class _Tokens:
    """The hierarchy and motion header as whitespace-separated tokens with their line numbers."""

    def __init__(self, lines: list[str], source: str):
        self.source = source
        self._iter = self._tokens(lines)
        self.line = 0  # 1-based number of the line the last token came from

    @staticmethod
    def _tokens(lines: list[str]) -> Iterator[tuple[int, str]]:
        for number, line in enumerate(lines, start=1):
            for token in line.split():
                yield number, token

    def error(self, problem: str) -> BvhFormatError:
        return BvhFormatError(f"{self.source}, line {self.line}: {problem}")

    def next(self, what: str) -> str:
        try:
            self.line, token = next(self._iter)
        except StopIteration:
            raise self.error(f"the file ends where {what} was expected") from None
        return token

    def expect(self, keyword: str) -> None:
        token = self.next(repr(keyword))
        if token != keyword:
            raise self.error(f"expected {keyword!r}, found {token!r}")

    def number(self) -> float:
        token = self.next("a number")
        try:
            value = float(token)
        except ValueError:
            raise self.error(f"expected a number, found {token!r}") from None
        if not np.isfinite(value):
            raise self.error(f"expected a finite number, found {token!r}")
        return value

    def integer(self) -> int:
        token = self.next("a whole number")
        if not token.isdigit():
            raise self.error(f"expected a whole number, found {token!r}")
        return int(token)

    def offset(self) -> np.ndarray:
        self.expect("OFFSET")
        return np.array([self.number() for _ in range(3)])


def _parse_joint(tokens: _Tokens, joints: list[BvhJoint], parent: int) -> None:
    """One ROOT or JOINT block (its keyword already read), children included."""
    keyword_line = tokens.line
    name = tokens.next("a joint name")
    if tokens.line != keyword_line:
        tokens.line = keyword_line
        raise tokens.error("a ROOT or JOINT line without a joint name")
    tokens.expect("{")
    offset = tokens.offset()
    channels: tuple[str, ...] = ()
    index = len(joints)
    joints.append(BvhJoint(name, parent, offset, channels, None))
    end_site = None
    while True:
        token = tokens.next("a CHANNELS, JOINT, End Site or '}' line")
        if token == "CHANNELS":
            count = tokens.integer()
            channels = tuple(tokens.next("a channel name") for _ in range(count))
            unknown = [c for c in channels if c not in _CHANNELS]
            if unknown:
                raise tokens.error(f"joint {name!r}: unknown channel(s) {unknown}; a channel is "
                                   "X/Y/Z followed by 'position' or 'rotation'")
        elif token == "JOINT":
            _parse_joint(tokens, joints, index)
        elif token == "End":
            tokens.expect("Site")
            tokens.expect("{")
            end_site = tokens.offset()
            tokens.expect("}")
        elif token == "}":
            break
        else:
            raise tokens.error(f"joint {name!r}: expected CHANNELS, JOINT, End Site or '}}', "
                               f"found {token!r}")
    if any(j.name == name for j in joints[:index]):
        raise tokens.error(f"joint name {name!r} is used twice")
    joints[index] = BvhJoint(name, parent, offset, channels, end_site)


def _parse_frames(lines: list[str], header_line: int, declared: tuple[int, int],
                  num_channels: int, source: str) -> np.ndarray:
    """The motion lines after the header (which ends on ``header_line``) as a (frames,
    channels) array; ``declared``: the header's frame count and its line."""
    num_frames, frames_line = declared
    data = [(number, line) for number, line in enumerate(lines[header_line:], header_line + 1)
            if line.strip()]
    try:
        # One conversion for the whole clip; the slow line-by-line check only runs on failure.
        values = np.array(" ".join(line for _, line in data).split(), dtype=np.float64)
        if (values.size == num_frames * num_channels and len(data) == num_frames
                and np.isfinite(values).all()):
            return values.reshape(num_frames, num_channels)
    except ValueError:
        pass
    for number, line in data[:num_frames]:
        fields = line.split()
        try:
            row = np.array(fields, dtype=np.float64)
        except ValueError:
            raise BvhFormatError(f"{source}, line {number}: a frame holds something that is "
                                 "not a number") from None
        if len(fields) != num_channels:
            raise BvhFormatError(f"{source}, line {number}: a frame has {len(fields)} values, "
                                 f"the hierarchy declares {num_channels} channels")
        if not np.isfinite(row).all():
            raise BvhFormatError(f"{source}, line {number}: a frame holds a non-finite value")
    raise BvhFormatError(f"{source}, line {frames_line}: the header says {num_frames} frames, "
                         f"the file has {len(data)} frame lines")


def local_transforms(clip: BvhClip, frames: np.ndarray | slice = slice(None)
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Each joint's rotation (F, J, 3, 3) and translation from its parent (F, J, 3), in the
    file's units, for the chosen frames."""
    motion = clip.motion[frames]
    count, num_joints = motion.shape[0], len(clip.joints)
    rotations = np.broadcast_to(np.eye(3), (count, num_joints, 3, 3)).copy()
    translations = np.broadcast_to(np.stack([j.offset for j in clip.joints]),
                                   (count, num_joints, 3)).copy()
    # Joints sharing a rotation order convert in one call.
    by_order: dict[str, list[int]] = {}
    for index, joint in enumerate(clip.joints):
        columns = clip.channel_columns(index)
        for axis_number, axis in enumerate("XYZ"):
            if f"{axis}position" in columns:
                translations[:, index, axis_number] += motion[:, columns[f"{axis}position"]]
        if joint.rotation_order:
            by_order.setdefault(joint.rotation_order, []).append(index)
    for order, members in by_order.items():
        columns = [[clip.channel_columns(j)[f"{axis}rotation"] for axis in order]
                   for j in members]
        angles = motion[:, columns]  # (F, members, len(order))
        matrices = Rotation.from_euler(order, angles.reshape(-1, len(order)), degrees=True)
        rotations[:, members] = matrices.as_matrix().reshape(count, len(members), 3, 3)
    return rotations, translations


def forward_kinematics(clip: BvhClip, frames: np.ndarray | slice = slice(None)
                       ) -> tuple[np.ndarray, np.ndarray]:
    """World rotation (F, J, 3, 3) and world position (F, J, 3) of every joint."""
    local_rotations, translations = local_transforms(clip, frames)
    return compose(clip.parents, local_rotations, translations)


def compose(parents: list[int], local_rotations: np.ndarray, translations: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Compose local transforms down a tree whose parents precede their children."""
    world_rotations = np.empty_like(local_rotations)
    positions = np.empty_like(translations)
    for joint, parent in enumerate(parents):
        if parent < 0:
            world_rotations[:, joint] = local_rotations[:, joint]
            positions[:, joint] = translations[:, joint]
        else:
            world_rotations[:, joint] = world_rotations[:, parent] @ local_rotations[:, joint]
            positions[:, joint] = (positions[:, parent] + (world_rotations[:, parent]
                                   @ translations[:, joint, :, None])[..., 0])
    return world_rotations, positions
