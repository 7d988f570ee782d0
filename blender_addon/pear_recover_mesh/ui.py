"""The *Recover Mesh* panel (3D Viewport > Sidebar > PEAR), its settings and operators.

Thin by design: the work lives in ``session.RecoverSession`` (stepped by a modal timer here)
and ``scene`` (the rig); the local backend process in ``local_backend``. Its sub-panels:
``ui_retarget`` (onto the user's character), ``ui_live`` (a live source).
"""

from __future__ import annotations

from pathlib import Path

import bpy

from . import local_backend
from .avatar_preview import AvatarPreview, RecoveredChunk
from .footage import FootageError, image_sequence
from .presets import shipped_presets
from .scene import ClipApplier, add_overlay
from .session import PeopleSession, RecoverSession, RecoverSettings
from .shared import conventions, footage_files

# Per Blender process, not saved in files: the backend's hello, the running work and its
# client, a cancel asked from the panel, and the estimator menu's items.
_STATE: dict = {"hello": None, "session": None, "cancel": False, "estimators": None,
                "adapters": None}
NO_ADAPTER = "NONE"


def _estimator_items(_self, _context):
    """The backend's available estimators, built once per hello: Blender keeps pointers to
    an enum's strings, which must outlive this call."""
    hello = _STATE["hello"]
    cached = _STATE["estimators"]
    if cached is None or cached[0] is not hello:
        names = ([e["name"] for e in hello["estimators"] if e["available"]] if hello
                 else ["tracker"])
        items = [(n, n, f"the backend's {n!r} estimator") for n in names if n != "detector"]
        cached = (hello, items or [("tracker", "tracker", "MediaPipe + the EHM tracker")])
        _STATE["estimators"] = cached
    return cached[1]


def _adapter_items(_self, _context):
    """The adapters the backend lists as usable (``pear-train adapt`` folders in its
    ``$PEAR_HOME/adapters``), after "None"; built once per hello, as the estimators are."""
    hello = _STATE["hello"]
    cached = _STATE["adapters"]
    if cached is None or cached[0] is not hello:
        usable = [a for a in (hello or {}).get("adapters", []) if a["usable"]]
        items = [(NO_ADAPTER, "None", "the regressor as it is")] + [
            (a["name"], a["name"], f"an adapter for body model {a['asset']!r}")
            for a in usable]
        cached = (hello, items)
        _STATE["adapters"] = cached
    return cached[1]


def shows_adapter_menu(settings) -> bool:
    """The panel offers adapters with a regressor estimator, when the backend has any."""
    return settings.estimator.startswith("regressor") and len(_adapter_items(None, None)) > 1


def recover_settings(settings) -> RecoverSettings:
    """What the panel's settings ask of a recovery (an adapter only on a regressor)."""
    adapter = settings.adapter if settings.estimator.startswith("regressor") else NO_ADAPTER
    return RecoverSettings(estimator=settings.estimator, asset=settings.asset,
                           smooth=settings.smoothing, chunk=settings.chunk,
                           person=settings.person or None,
                           adapter=None if adapter == NO_ADAPTER else adapter)


def _is_armature(_self, obj) -> bool:
    return obj.type == "ARMATURE"


def _preset_items(_self, _context):
    return _PRESET_ITEMS


class PearBoneMapItem(bpy.types.PropertyGroup):
    """One row of a custom retarget map: a PEAR joint and the character's bone it drives."""

    joint: bpy.props.StringProperty(name="Joint")
    bone: bpy.props.StringProperty(name="Bone", description="The character's bone this joint "
                                    "drives (empty: none)")


class PearSettings(bpy.types.PropertyGroup):
    source: bpy.props.EnumProperty(
        name="Source", items=[("FILE", "Files", "a movie, a folder of frames or one image"),
                              ("CLIP", "Movie Clip", "a Movie Clip (movie or image sequence)")],
        default="FILE")
    path: bpy.props.StringProperty(name="Footage", subtype="FILE_PATH",
                                   description="A movie, a folder of frames (JPEG, PNG, BMP, "
                                   "TIFF, WebP), or one image")
    clip: bpy.props.PointerProperty(name="Clip", type=bpy.types.MovieClip)
    fps: bpy.props.FloatProperty(name="FPS", default=30.0, min=0.1, max=1000.0,
                                 description="Frame rate of image sequences (movies and "
                                 "Movie Clips carry their own)")
    frame_first: bpy.props.IntProperty(name="First", default=0, min=0,
                                       description="First footage frame (0-based)")
    frame_last: bpy.props.IntProperty(name="Last", default=-1, min=-1,
                                      description="Last footage frame; -1: to the end")
    person: bpy.props.IntProperty(
        name="Person", default=0, min=0, max=conventions.MAX_PEOPLE,
        description="When several people are in view: 1 = the leftmost in the first frame "
        "showing anybody, 2 = the next, ... (`backend people FOOTAGE` draws the numbers); "
        "0 = the most prominent one")
    everyone: bpy.props.BoolProperty(
        name="Everyone", default=False,
        description="Recover every person in the first frame showing anybody, each into a "
        "rig of their own (Person1, Person2 ... from the left), one after another")
    backend: bpy.props.EnumProperty(
        name="Backend", items=[("LOCAL", "Local", "start a backend on this machine"),
                               ("REMOTE", "Remote", "connect to a running backend")],
        default="LOCAL")
    python: bpy.props.StringProperty(
        name="Python", subtype="FILE_PATH",
        description="The Python of an environment where the PEAR backend is installed "
        "(e.g. .venv/bin/python in the project)")
    address: bpy.props.StringProperty(name="Address",
                                      default=conventions.DEFAULT_SERVER_ADDRESS)
    keys: bpy.props.StringProperty(
        name="Client keys", subtype="DIR_PATH",
        description="For a server started with --keys: the `client/` folder it gave you")
    estimator: bpy.props.EnumProperty(name="Estimator", items=_estimator_items)
    adapter: bpy.props.EnumProperty(
        name="Adapter", items=_adapter_items,
        description="With a regressor estimator: the regressor fine-tuned on your actor "
        "(adapters installed on the backend)")
    smoothing: bpy.props.FloatProperty(name="Smoothing", default=1.0, min=0.0, max=10.0,
                                       description="Temporal smoothing, 0 = off")
    asset: bpy.props.StringProperty(name="Body model", default=conventions.DEFAULT_ASSET_ID)
    chunk: bpy.props.IntProperty(
        name="Chunk", default=150, min=0,
        description="Frames fitted together and applied at once (0: the whole clip)")
    background: bpy.props.BoolProperty(name="Footage as camera background", default=True)
    avatar_preview: bpy.props.BoolProperty(
        name="Avatar preview", default=False,
        description="After the recovery, have the backend render the person as a Gaussian "
        "avatar moving with the recovered motion and lay it over the footage in the camera "
        "view (needs a trained renderer on the backend; files next to the .blend file, in "
        "pear_avatar/)")
    body_shape_keys: bpy.props.BoolProperty(
        name="Body shape keys", default=False,
        description="Also add shape keys for the leading body-shape components (they move the "
        "mesh, not the skeleton)")
    retarget_source: bpy.props.PointerProperty(
        name="PEAR rig", type=bpy.types.Object, poll=_is_armature,
        description="The recovered (or baked) PEAR armature whose motion to retarget")
    retarget_target: bpy.props.PointerProperty(
        name="Character", type=bpy.types.Object, poll=_is_armature,
        description="Your character's armature: its bones get the motion as keyframes")
    retarget_preset: bpy.props.EnumProperty(
        name="Preset", items=_preset_items,
        description="Which character bone each PEAR joint drives")
    plant_feet: bpy.props.BoolProperty(
        name="Plant feet", default=True,
        description="Where the tracker saw a foot on the ground, hold the character's foot "
        "where it touched down (the whole body shifts; no IK)")
    bone_map: bpy.props.CollectionProperty(type=PearBoneMapItem)
    bone_map_index: bpy.props.IntProperty()
    preset_file: bpy.props.StringProperty(
        name="Save as", subtype="FILE_PATH", default="//pear_retarget_preset.json",
        description="Where Save Preset writes the custom map (a JSON preset file)")
    live_source: bpy.props.StringProperty(
        name="Live source", default="0",
        description="What the backend captures live: a camera index (0) or device "
        "(/dev/video0), a stream URL (rtsp://, http://), or a movie file on the backend's "
        "machine, played at its own frame rate")
    status: bpy.props.StringProperty(name="Status", default="")
    progress: bpy.props.FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0,
                                      subtype="FACTOR")


# Built once: Blender keeps pointers to an enum's strings, which must outlive the callback.
_PRESET_ITEMS = [("AUTO", "Auto", "the preset matching most of the character's bone names"),
                 *[(p.path.stem, p.name, p.description) for p in shipped_presets()],
                 ("CUSTOM", "Custom", "the bone map below (Suggest fills it by name)")]


def _settings(context) -> PearSettings:
    return context.scene.pear


def _footage(settings: PearSettings):
    """The chosen footage (image sequence or movie), and its path for the camera background."""
    if settings.source == "CLIP":
        if settings.clip is None:
            raise FootageError("pick a Movie Clip, or switch the source to Files")
        path = Path(bpy.path.abspath(settings.clip.filepath))
        if settings.clip.source == "SEQUENCE":
            path = path.parent
        fps = settings.clip.fps or settings.fps
    else:
        if not settings.path:
            raise FootageError("choose the footage: a folder of frames or an image")
        path, fps = Path(bpy.path.abspath(settings.path)), settings.fps
    last = None if settings.frame_last < 0 else settings.frame_last
    if footage_files.is_movie(path):
        from .movie import MovieFrames

        return MovieFrames(path, settings.frame_first, last), path
    return image_sequence(path, fps, settings.frame_first, last), path


def _client(settings: PearSettings):
    from .backend_client import Client

    if settings.backend == "LOCAL":
        address = local_backend.address()
        if address is None:
            raise FootageError("the local backend is not running: press Start")
        return Client(address, timeout=30.0)
    return Client(settings.address, keys=settings.keys or None, timeout=10.0)


class PEAR_OT_backend_start(bpy.types.Operator):
    bl_idname = "pear.backend_start"
    bl_label = "Start"
    bl_description = "Start `backend serve` on this machine with the configured Python"

    def execute(self, context):
        settings = _settings(context)
        try:
            address = local_backend.start(settings.python)
        except local_backend.LocalBackendError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        settings.status = f"local backend at {address}"
        return {"FINISHED"}


class PEAR_OT_backend_stop(bpy.types.Operator):
    bl_idname = "pear.backend_stop"
    bl_label = "Stop"
    bl_description = "Stop the local backend"

    def execute(self, context):
        local_backend.stop()
        _STATE["hello"] = None
        _settings(context).status = "local backend stopped"
        return {"FINISHED"}


class PEAR_OT_connect(bpy.types.Operator):
    bl_idname = "pear.connect"
    bl_label = "Connect"
    bl_description = "Ask the backend what it offers (version, device, estimators, models)"

    def execute(self, context):
        from .backend_client import BackendError

        settings = _settings(context)
        try:
            with _client(settings) as client:
                _STATE["hello"] = client.hello()[0]
        except (BackendError, FootageError) as exc:
            settings.status = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        hello = _STATE["hello"]
        settings.status = f"connected: {hello['server']} {hello['version']} on {hello['device']}"
        unavailable = [e for e in hello["estimators"] if not e["available"]]
        for estimator in unavailable:  # the whole reason goes to the Info log
            self.report({"INFO"}, f"estimator {estimator['name']} is unavailable: "
                        f"{estimator['reason']}")
        if unavailable:
            settings.status += (f"; unavailable: {', '.join(e['name'] for e in unavailable)} "
                                "(why: Info log)")
        avatar = hello.get("avatar") or {"available": False, "reason": "the backend is older "
                                         "than the avatar ops"}
        if not avatar["available"]:
            self.report({"INFO"}, f"avatar preview is unavailable: {avatar['reason']}")
        return {"FINISHED"}


class PEAR_OT_recover(bpy.types.Operator):
    bl_idname = "pear.recover"
    bl_label = "Recover"
    bl_description = "Recover the person's body, hands and face from the footage as a rig"
    bl_options = {"REGISTER", "UNDO"}

    _timer = None

    @classmethod
    def poll(cls, context) -> bool:
        return _STATE["session"] is None  # one recovery at a time: the panel shows it

    def invoke(self, context, _event):
        settings = _settings(context)
        try:
            footage, path = _footage(settings)
        except FootageError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        try:
            client = _client(settings)
        except FootageError as exc:
            footage.close()
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        name = path.stem if path.is_file() else path.name
        self._chunks: list[RecoveredChunk] = []
        self._applier, self._name = None, name

        def make_apply(number: int | None):
            """The rig of one person (None: the only one followed): its applier, which keeps
            the first rig's chunks for the avatar preview."""
            applier = ClipApplier(
                name if number is None else f"Person{number}",
                path if settings.background and number in (None, 1) else None, len(footage),
                first=settings.frame_first, body_shape_keys=settings.body_shape_keys,
                camera=f"{name}_camera" if number in (None, 1) else None)
            if self._applier is None:
                self._applier = applier

            def apply(rig, results, start):
                applier(rig, results, start)
                if applier is self._applier:
                    self._chunks.append(RecoveredChunk(results, start))
            return apply

        recover = recover_settings(settings)
        work = (PeopleSession(client, footage, recover, make_apply) if settings.everyone
                else RecoverSession(client, footage, recover, make_apply(None)))
        _STATE["session"] = (work, client)
        self._timer = context.window_manager.event_timer_add(0.05, window=context.window)
        context.window_manager.modal_handler_add(self)
        context.window_manager.progress_begin(0, 100)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        session, _ = _STATE["session"]
        if event.type == "ESC" or (event.type == "TIMER" and _STATE.get("cancel")):
            _STATE["cancel"] = False
            session.cancel()
        elif event.type == "TIMER":
            session.step(0.03)
        else:  # the user keeps working (orbit, scrub, select) while the recovery runs
            return {"PASS_THROUGH"}
        settings = _settings(context)
        settings.progress, settings.status = session.progress, session.status
        context.window_manager.progress_update(int(100 * session.progress))
        if context.area is not None:
            context.area.tag_redraw()
        if session.running:
            return {"RUNNING_MODAL"}
        if isinstance(session, RecoverSession) and session.state == "done" \
                and settings.avatar_preview:
            self.report({"INFO"}, session.status)
            _, client = _STATE["session"]
            preview = AvatarPreview(client, session.footage, self._chunks,
                                    preview_folder(self._name), settings.asset)
            _STATE["session"] = (preview, client)
            return {"RUNNING_MODAL"}
        return self._end(context, session)

    def _end(self, context, work):
        _STATE["cancel"] = False
        context.window_manager.event_timer_remove(self._timer)
        context.window_manager.progress_end()
        _, client = _STATE.pop("session")
        _STATE["session"] = None
        client.close()
        work.footage.close()
        if isinstance(work, AvatarPreview):
            if work.written and self._applier.camera is not None:
                add_overlay(self._applier.camera, work.folder, work.written)
            if work.state == "failed":  # the motion is in the scene: a warning, not a failure
                _settings(context).status = work.error
                self.report({"WARNING"}, work.error)
                return {"FINISHED"}
        elif work.state == "failed":
            _settings(context).status = work.error
            self.report({"ERROR"}, work.error)
            return {"CANCELLED"}
        self.report({"INFO"}, work.status)
        return {"FINISHED"}


def preview_folder(name: str) -> Path:
    """Where a clip's avatar preview goes: beside the saved .blend file, else in Blender's
    temporary folder."""
    base = Path(bpy.path.abspath("//")) if bpy.data.filepath else Path(bpy.app.tempdir)
    return base / "pear_avatar" / bpy.path.clean_name(name)


class PEAR_OT_cancel(bpy.types.Operator):
    bl_idname = "pear.cancel"
    bl_label = "Cancel"
    bl_description = "Stop the running recovery (or avatar preview); what is done stays"

    @classmethod
    def poll(cls, context) -> bool:
        return _STATE["session"] is not None

    def execute(self, context):
        _STATE["cancel"] = True  # the running operator cancels on its next timer tick
        return {"FINISHED"}


class PearPanel:
    """Where the PEAR panels show: 3D Viewport > Sidebar > PEAR (a mixin before
    ``bpy.types.Panel``)."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "PEAR"


class PearSubPanel(PearPanel):
    """A box of the Recover Mesh panel, closed until opened (Retarget, Live)."""

    bl_parent_id = "VIEW3D_PT_pear_recover"
    bl_options = {"DEFAULT_CLOSED"}


class VIEW3D_PT_pear_recover(PearPanel, bpy.types.Panel):
    bl_label = "Recover Mesh"

    def draw(self, context):
        settings = _settings(context)
        layout = self.layout
        box = layout.box()
        box.prop(settings, "source", expand=True)
        box.prop(settings, "clip" if settings.source == "CLIP" else "path")
        row = box.row(align=True)
        row.prop(settings, "frame_first")
        row.prop(settings, "frame_last")
        if settings.source == "FILE":
            box.prop(settings, "fps")
        row = box.row()
        row.prop(settings, "person")
        row.prop(settings, "everyone")

        box = layout.box()
        box.prop(settings, "backend", expand=True)
        if settings.backend == "LOCAL":
            box.prop(settings, "python")
            row = box.row(align=True)
            row.label(text=local_backend.state())
            row.operator("pear.backend_start")
            row.operator("pear.backend_stop")
        else:
            box.prop(settings, "address")
            box.prop(settings, "keys")
        box.operator("pear.connect")
        hello = _STATE["hello"]
        if hello:
            box.label(text=f"{hello['version']} on {hello['device']}; models: "
                      f"{', '.join(hello['assets']) or 'none'}")

        box = layout.box()
        box.prop(settings, "estimator")
        if shows_adapter_menu(settings):
            box.prop(settings, "adapter")
        box.prop(settings, "smoothing")
        box.prop(settings, "asset")
        box.prop(settings, "chunk")
        box.prop(settings, "background")
        box.prop(settings, "body_shape_keys")
        box.prop(settings, "avatar_preview")
        if settings.avatar_preview and hello and not hello.get("avatar", {}).get("available"):
            box.label(text="no avatar renderer on the backend (why: Info log)", icon="ERROR")

        running = _STATE["session"] is not None
        row = layout.row(align=True)
        row.operator("pear.recover", text="Recovering..." if running else "Recover",
                     icon="ARMATURE_DATA")
        if running:
            row.operator("pear.cancel", icon="CANCEL")
        if running or settings.progress:
            layout.prop(settings, "progress", slider=True)
        if settings.status:
            layout.label(text=settings.status)


CLASSES = (PearBoneMapItem, PearSettings, PEAR_OT_backend_start, PEAR_OT_backend_stop,
           PEAR_OT_connect, PEAR_OT_recover, PEAR_OT_cancel, VIEW3D_PT_pear_recover)


def _all_classes() -> tuple:
    """This panel's classes, then its sub-panels' (Blender registers parents first)."""
    from . import ui_live, ui_retarget

    return CLASSES + ui_retarget.CLASSES + ui_live.CLASSES


def register() -> None:
    for cls in _all_classes():
        bpy.utils.register_class(cls)
    bpy.types.Scene.pear = bpy.props.PointerProperty(type=PearSettings)


def unregister() -> None:
    local_backend.stop()
    del bpy.types.Scene.pear
    for cls in reversed(_all_classes()):
        bpy.utils.unregister_class(cls)
