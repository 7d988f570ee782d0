"""The panel's *Live* box: a camera, stream or movie the backend opens drives a rig in the
viewport as frames arrive; *Record* keys what arrives at the scene frames matching capture
time, *Stop* ends the capture and keeps what was recorded (``live.LiveSession``)."""

from __future__ import annotations

import bpy

from . import ui
from .footage import FootageError
from .live import LiveSession
from .scene import LiveRig

LIVE_RIG = "PEAR_live"
# Per Blender process: the running capture and its client, and a stop asked from the panel.
_LIVE: dict = {"session": None, "stop": False}


class PEAR_OT_live(bpy.types.Operator):
    bl_idname = "pear.live"
    bl_label = "Live"
    bl_description = ("Have the backend capture the live source and drive a rig with it "
                      "(Record keys what arrives)")

    _timer = None

    @classmethod
    def poll(cls, context) -> bool:
        return _LIVE["session"] is None and ui._STATE["session"] is None

    def invoke(self, context, _event):
        from .backend_client import BackendError

        settings = ui._settings(context)
        try:
            client = ui._client(settings)
        except FootageError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        render = context.scene.render
        rig = LiveRig(LIVE_RIG)
        try:
            session = LiveSession(client, settings.live_source, ui.recover_settings(settings),
                                  rig.show, rig.record, render.fps / render.fps_base)
        except BackendError as exc:
            client.close()
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _LIVE.update(session=(session, client), stop=False)
        self._timer = context.window_manager.event_timer_add(0.05, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}  # the viewport stays usable while the rig follows
        session, client = _LIVE["session"]
        if _LIVE["stop"]:
            session.stop()
        else:
            session.step()
        if session.recording and session.last_frame is not None:
            context.scene.frame_set(session.last_frame)
        ui._settings(context).status = session.error or session.status
        if context.area is not None:
            context.area.tag_redraw()
        if session.running:
            return {"RUNNING_MODAL"}
        if session.state != "stopped":
            session.stop()
        context.window_manager.event_timer_remove(self._timer)
        client.close()
        _LIVE.update(session=None, stop=False)
        if session.state == "failed":
            self.report({"ERROR"}, session.error)
            return {"CANCELLED"}
        self.report({"INFO"}, session.status)
        return {"FINISHED"}


class PEAR_OT_live_record(bpy.types.Operator):
    bl_idname = "pear.live_record"
    bl_label = "Record"
    bl_description = "Key what arrives from the current frame on (press again to pause)"

    @classmethod
    def poll(cls, context) -> bool:
        return _LIVE["session"] is not None

    def execute(self, context):
        session, _ = _LIVE["session"]
        if session.recording:
            session.stop_recording()
        else:
            session.start_recording(context.scene.frame_current)
        return {"FINISHED"}


class PEAR_OT_live_stop(bpy.types.Operator):
    bl_idname = "pear.live_stop"
    bl_label = "Stop"
    bl_description = "End the live capture; what was recorded stays"

    @classmethod
    def poll(cls, context) -> bool:
        return _LIVE["session"] is not None

    def execute(self, context):
        _LIVE["stop"] = True  # the running operator stops on its next timer tick
        return {"FINISHED"}


class VIEW3D_PT_pear_live(ui.PearSubPanel, bpy.types.Panel):
    bl_label = "Live"

    def draw(self, context):
        settings = ui._settings(context)
        layout = self.layout
        layout.prop(settings, "live_source")
        running = _LIVE["session"]
        row = layout.row(align=True)
        if running is None:
            row.operator("pear.live", icon="PLAY")
            return
        session, _ = running
        row.operator("pear.live_record", icon="REC", depress=session.recording,
                     text="Recording" if session.recording else "Record")
        row.operator("pear.live_stop", icon="SNAP_FACE")


CLASSES = (PEAR_OT_live, PEAR_OT_live_record, PEAR_OT_live_stop, VIEW3D_PT_pear_live)
