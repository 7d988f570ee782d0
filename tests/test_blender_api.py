"""The Blender the add-on runs in: the manifest's version range holds the bpy it is tested on,
and every Blender API the add-on relies on is there (``Action.fcurves`` went away in 5.0 and
broke the keys once: this fails first next time)."""

from __future__ import annotations

import tomllib
from pathlib import Path

MANIFEST = Path(__file__).parents[1] / "blender_addon" / "pear_recover_mesh" / \
    "blender_manifest.toml"

# (owner, attribute): what the add-on's modules call or read.
APIS = [
    ("bpy_extras.anim_utils", "action_ensure_channelbag_for_slot"),
    ("bpy_extras.anim_utils", "action_get_channelbag_for_slot"),
    ("bpy.types.Action", "slots"),
    ("bpy.types.AnimData", "action_slot"),
    ("bpy.types.ActionChannelbag", "fcurves"),
    ("bpy.types.ActionChannelbagFCurves", "ensure"),
    ("bpy.types.FCurveKeyframePoints", "add"),
    ("bpy.types.bpy_prop_collection", "foreach_set"),
    ("bpy.types.CameraBackgroundImage", "display_depth"),
    ("bpy.types.Camera", "background_images"),
    ("bpy.types.ImageUser", "frame_offset"),
    ("bpy.types.Image", "filepath_from_user"),
    ("bpy.types.Bone", "matrix_local"),
    ("bpy.types.PoseBone", "rotation_quaternion"),
    ("bpy.types.UIList", "draw_item"),
    ("bpy.types.UILayout", "template_list"),
    ("bpy.types.UILayout", "prop_search"),
    ("bpy.types.WindowManager", "event_timer_add"),
    ("bpy.types.BlendDataLibraries", "load"),
    ("bpy.ops.import_scene", "fbx"),
    ("bpy.ops.export_scene", "fbx"),
    ("bpy.ops.export_scene", "gltf"),
]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_the_manifest_range_holds_the_tested_blender(bpy_module):
    manifest = tomllib.loads(MANIFEST.read_text())
    low, high = _version(manifest["blender_version_min"]), _version(
        manifest["blender_version_max"])
    assert low <= tuple(bpy_module.app.version) < high


def test_every_blender_api_the_addon_uses_is_there(bpy_module):
    import importlib

    def found(owner: str, attribute: str) -> bool:
        if owner.startswith("bpy.types."):
            holder = getattr(bpy_module.types, owner.removeprefix("bpy.types."), None)
        elif owner.startswith("bpy.ops."):
            holder = getattr(bpy_module.ops, owner.removeprefix("bpy.ops."))
        else:
            holder = importlib.import_module(owner)
        if holder is None:
            return False
        rna = getattr(holder, "bl_rna", None)  # RNA structs list properties and functions
        return hasattr(holder, attribute) or (rna is not None and (
            attribute in rna.properties or attribute in rna.functions))

    missing = [f"{owner}.{attribute}" for owner, attribute in APIS if not found(owner, attribute)]
    assert not missing, f"Blender {bpy_module.app.version_string} lacks {missing}"
