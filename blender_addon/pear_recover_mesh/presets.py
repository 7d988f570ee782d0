"""Retargeting presets: which target bone each PEAR (SMPL-X) joint drives. Data files, JSON,
in ``presets/`` (Mixamo, the UE5 mannequin, Rigify's meta-rig and generated rig) and wherever
a user saves a custom one: ``{"name", "description", "root", "bones": {joint: bone}}``, and
optionally ``keep_rest`` (joints whose bone takes the joint's turn from rest without its rest
direction being aligned first: control bones that do not lie along their body part, like
Rigify's torso and chest) and ``properties`` (pose-bone custom properties to set, e.g.
Rigify's IK/FK switches). ``suggest`` fills a custom map by matching names, for the user to
correct. No bpy here."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .shared import errors

PRESET_DIR = Path(__file__).parent / "presets"


class PresetError(errors.InputError):
    """A preset file that cannot be used: says which and why."""


@dataclass
class Preset:
    name: str
    bones: dict[str, str]  # PEAR joint -> target bone
    root: str = "pelvis"  # the joint whose displacement moves the whole rig
    description: str = ""
    keep_rest: list[str] = field(default_factory=list)  # joints: no rest alignment
    properties: dict[str, dict[str, float]] = field(default_factory=dict)  # bone -> props
    path: Path | None = field(default=None, compare=False)

    def to_json(self) -> dict:
        return {"name": self.name, "description": self.description, "root": self.root,
                "bones": self.bones, "keep_rest": self.keep_rest,
                "properties": self.properties}

    def coverage(self, target_bones: Iterable[str]) -> float:
        """The share of this preset's bones the target armature has."""
        names = set(target_bones)
        return sum(bone in names for bone in self.bones.values()) / max(len(self.bones), 1)


def load_preset(path: str | Path) -> Preset:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PresetError(f"retarget preset {path} cannot be read: {exc}") from None
    bones = data.get("bones") if isinstance(data, dict) else None
    if not (isinstance(bones, dict) and bones
            and all(isinstance(k, str) and isinstance(v, str) for k, v in bones.items())):
        raise PresetError(f"retarget preset {path} needs a 'bones' map of joint names to "
                          "bone names")
    root = data.get("root", "pelvis")
    if root not in bones:
        raise PresetError(f"retarget preset {path}: its root joint {root!r} maps to no bone")
    keep_rest, properties = data.get("keep_rest", []), data.get("properties", {})
    if not (isinstance(keep_rest, list) and set(keep_rest) <= set(bones)):
        raise PresetError(f"retarget preset {path}: 'keep_rest' must list joints it maps")
    if not (isinstance(properties, dict) and all(
            isinstance(v, dict) and all(isinstance(x, int | float) for x in v.values())
            for v in properties.values())):
        raise PresetError(f"retarget preset {path}: 'properties' must map bone names to "
                          "{property: number}")
    return Preset(str(data.get("name") or path.stem), dict(bones), root,
                  str(data.get("description", "")), list(keep_rest), dict(properties), path)


def shipped_presets() -> list[Preset]:
    return [load_preset(path) for path in sorted(PRESET_DIR.glob("*.json"))]


def best_preset(target_bones: Iterable[str], presets: Iterable[Preset] | None = None) -> Preset:
    """The preset whose bone names the target has most of ("auto"); PresetError when none
    covers half its bones."""
    names = list(target_bones)
    ranked = sorted(presets if presets is not None else shipped_presets(),
                    key=lambda p: p.coverage(names), reverse=True)
    if not ranked or ranked[0].coverage(names) < 0.5:
        raise PresetError("no retarget preset matches this armature's bone names: choose "
                          "Custom and map the bones (the suggestions are a start)")
    return ranked[0]


def save_preset(preset: Preset, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(preset.to_json(), indent=1))
    return path


# -- suggestions for a custom map -----------------------------------------------------------

_SIDE = re.compile(r"(^|[^a-z])(l|r|left|right)([^a-z]|$)")
# What each joint's bone is called across common rigs (after _plain), most specific first.
_ALIASES = {
    "pelvis": ["hips", "pelvis", "hip", "root"], "spine1": ["spine", "spine1", "spine01"],
    "spine2": ["spine2", "spine02", "spine1"], "spine3": ["chest", "spine3", "spine03",
                                                         "spine2"],
    "neck": ["neck", "neck01"], "head": ["head"],
    "collar": ["shoulder", "clavicle", "collar"], "shoulder": ["upperarm", "arm"],
    "elbow": ["forearm", "lowerarm", "elbow"], "wrist": ["hand", "wrist"],
    "hip": ["upleg", "thigh", "upperleg"], "knee": ["leg", "calf", "shin", "lowerleg", "knee"],
    "ankle": ["foot", "ankle"], "foot": ["toebase", "toe", "ball"],
}


def _plain(name: str) -> str:
    """Lower case, without rig prefixes (``mixamorig:``, ``DEF-``) and separators."""
    name = name.lower().split(":")[-1]
    name = re.sub(r"^(def|org|mch)[-_.]", "", name)
    return re.sub(r"[^a-z0-9]", "", name)


def _side(name: str) -> str | None:
    lowered = name.lower().split(":")[-1]
    for side in ("left", "right"):
        if lowered.startswith(side) or lowered.endswith(side):
            return side
    match = _SIDE.search(lowered)
    if match:
        return "left" if match.group(2) in ("l", "left") else "right"
    return None


def _unsided(plain: str, side: str | None) -> str:
    if side is None:
        return plain
    for word in (side, side[0]):
        if plain.startswith(word) and len(plain) > len(word):
            return plain[len(word):]
        if plain.endswith(word) and len(plain) > len(word):
            return plain[:-len(word)]
    return plain


def suggest(joints: Iterable[str], target_bones: Iterable[str]) -> dict[str, str]:
    """A first map for a custom preset: each body joint to the target bone whose name (sides
    and rig prefixes aside) is one of the joint's usual names; fingers by name and number.
    Joints with no match are left out."""
    by_key: dict[tuple[str | None, str], str] = {}
    for bone in target_bones:
        side = _side(bone)
        by_key.setdefault((side, _unsided(_plain(bone), side)), bone)
    out = {}
    for joint in joints:
        side, base = (joint.split("_", 1) if joint.startswith(("left_", "right_"))
                      else (None, joint))
        finger = re.fullmatch(r"(thumb|index|middle|ring|pinky)(\d)", base)
        names = (_finger_names(*finger.groups()) if finger else _ALIASES.get(base, [base]))
        for name in names:
            bone = by_key.get((side, name))
            if bone is not None and bone not in out.values():
                out[joint] = bone
                break
    return out


def _finger_names(finger: str, number: str) -> list[str]:
    return [f"hand{finger}{number}", f"{finger}{number}", f"{finger}0{number}",
            f"f{finger}0{number}"]
