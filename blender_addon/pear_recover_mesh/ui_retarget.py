"""The panel's *Retarget* box: the PEAR rig's motion keyed onto the user's character through
a bone-map preset (shipped, auto-detected or a custom map the panel edits and saves), and the
rig's animation exported as BVH. The work lives in ``retarget_scene`` and ``presets``."""

from __future__ import annotations

from pathlib import Path

import bpy

from . import ui
from .presets import Preset, PresetError, save_preset, suggest


def _retarget_pair(settings: ui.PearSettings):
    source, target = settings.retarget_source, settings.retarget_target
    if source is None or target is None:
        raise PresetError("pick the PEAR rig and your character's armature first")
    if source == target:
        raise PresetError("the PEAR rig and the character are the same armature")
    return source, target


def _custom_preset(settings: ui.PearSettings, name: str = "Custom") -> Preset:
    bones = {item.joint: item.bone for item in settings.bone_map if item.bone}
    if "pelvis" not in bones:
        raise PresetError("the custom map needs a bone for 'pelvis' (the root): press Suggest, "
                          "then fill in or correct the bones")
    return Preset(name, bones)


class PEAR_OT_retarget(bpy.types.Operator):
    bl_idname = "pear.retarget"
    bl_label = "Retarget"
    bl_description = "Key the character's bones with the PEAR rig's motion (one undo step)"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from .retarget_scene import RetargetError, resolve_preset, retarget_armature

        settings = ui._settings(context)
        try:
            source, target = _retarget_pair(settings)
            choice = settings.retarget_preset
            preset = (_custom_preset(settings) if choice == "CUSTOM"
                      else resolve_preset(choice.lower() if choice == "AUTO" else choice,
                                          target))
            done = retarget_armature(source, target, preset, plant=settings.plant_feet)
        except (PresetError, RetargetError) as exc:
            settings.status = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        settings.status = (f"retargeted {done.frames} frames onto {done.bones} bones of "
                           f"{target.name} ({preset.name}"
                           f"{', feet planted' if done.planted else ''})")
        if done.unmapped:
            self.report({"INFO"}, f"{target.name} has no bone for {', '.join(done.unmapped)}")
        self.report({"INFO"}, settings.status)
        return {"FINISHED"}


class PEAR_OT_retarget_suggest(bpy.types.Operator):
    bl_idname = "pear.retarget_suggest"
    bl_label = "Suggest"
    bl_description = "Fill the custom bone map by matching the character's bone names"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        settings = ui._settings(context)
        try:
            source, target = _retarget_pair(settings)
        except PresetError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        joints = [bone.name for bone in source.data.bones]
        found = suggest(joints, [bone.name for bone in target.data.bones])
        settings.bone_map.clear()
        for joint in joints:
            item = settings.bone_map.add()
            item.joint, item.bone = joint, found.get(joint, "")
        settings.status = f"suggested {len(found)} of {len(joints)} joints: check them"
        return {"FINISHED"}


class PEAR_OT_retarget_save_preset(bpy.types.Operator):
    bl_idname = "pear.retarget_save_preset"
    bl_label = "Save Preset"
    bl_description = "Write the custom bone map as a preset file (JSON), for --retarget FILE"

    def execute(self, context):
        settings = ui._settings(context)
        path = Path(bpy.path.abspath(settings.preset_file))
        try:
            saved = save_preset(_custom_preset(settings, path.stem), path)
        except (PresetError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        settings.status = f"preset saved: {saved}"
        return {"FINISHED"}


class PEAR_OT_export_bvh(bpy.types.Operator):
    bl_idname = "pear.export_bvh"
    bl_label = "Export BVH"
    bl_description = ("Write the PEAR rig's animation as BVH (Blender's exporter: Z up; import "
                      "it with Forward Y, Up Z)")

    filepath: bpy.props.StringProperty(subtype="FILE_PATH")
    filter_glob: bpy.props.StringProperty(default="*.bvh", options={"HIDDEN"})

    def invoke(self, context, _event):
        rig = ui._settings(context).retarget_source
        self.filepath = bpy.path.ensure_ext(rig.name if rig else "pear", ".bvh")
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        from .retarget_scene import export_bvh

        rig = ui._settings(context).retarget_source
        animation = rig.animation_data if rig is not None else None
        if animation is None or animation.action is None:
            self.report({"ERROR"}, "pick the PEAR rig (with its animation) to export")
            return {"CANCELLED"}
        first, last = (round(f) for f in animation.action.frame_range)
        export_bvh(rig, bpy.path.abspath(self.filepath), (first, last))
        self.report({"INFO"}, f"BVH written: {self.filepath} (frames {first}-{last})")
        return {"FINISHED"}


class PEAR_UL_bone_map(bpy.types.UIList):
    def draw_item(self, context, layout, _data, item, _icon, _active, _property):
        row = layout.row(align=True)
        row.label(text=item.joint)
        target = ui._settings(context).retarget_target
        if target is not None:
            row.prop_search(item, "bone", target.data, "bones", text="")
        else:
            row.prop(item, "bone", text="")


class VIEW3D_PT_pear_retarget(ui.PearSubPanel, bpy.types.Panel):
    bl_label = "Retarget"

    def draw(self, context):
        settings = ui._settings(context)
        layout = self.layout
        layout.prop(settings, "retarget_source")
        layout.prop(settings, "retarget_target")
        layout.prop(settings, "retarget_preset")
        layout.prop(settings, "plant_feet")
        if settings.retarget_preset == "CUSTOM":
            layout.operator("pear.retarget_suggest")
            layout.template_list("PEAR_UL_bone_map", "", settings, "bone_map", settings,
                                 "bone_map_index", rows=6)
            row = layout.row(align=True)
            row.prop(settings, "preset_file", text="")
            row.operator("pear.retarget_save_preset")
        row = layout.row(align=True)
        row.operator("pear.retarget", icon="ARMATURE_DATA")
        row.operator("pear.export_bvh", icon="EXPORT")


CLASSES = (PEAR_OT_retarget, PEAR_OT_retarget_suggest, PEAR_OT_retarget_save_preset,
           PEAR_OT_export_bvh, PEAR_UL_bone_map, VIEW3D_PT_pear_retarget)
