"""The scene builder: a subject's rig (``backend.pipeline.rig``) and a clip's keyframes as Blender
data — an armature with the asset's joint names and tree, a skinned mesh with expression shape
keys, one action per clip written in bulk, and the footage's camera.

Plain bpy + numpy; the add-on and the headless ``backend bake`` both call it. Coordinates
change from the model's frame to Blender's only in ``convert``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import bpy
import numpy as np
from bpy_extras import anim_utils

from .convert import CAMERA_EULER, camera_settings, points_to_world
from .footage import file_number
from .keyframes import Keyframes, clip_keyframes, crossfade
from .shared import conventions, footage_files

MIN_BONE_LENGTH = 0.01  # metres: Blender drops zero-length bones


def _bone_tails(heads: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Each bone points at the child that best continues it (the spine up through the neck,
    the arm down to the middle finger); leaves continue their parent at half its length."""
    children: dict[int, list[int]] = {}
    for joint, parent in enumerate(parents):
        if parent >= 0:
            children.setdefault(int(parent), []).append(joint)
    tails = np.empty_like(heads)
    for joint in range(len(heads)):
        parent = int(parents[joint])
        incoming = (heads[joint] - heads[parent]) if parent >= 0 else np.array([0.0, 0.0, 1.0])
        incoming = incoming / max(np.linalg.norm(incoming), 1e-9)
        options = [c for c in children.get(joint, [])
                   if np.linalg.norm(heads[c] - heads[joint]) > MIN_BONE_LENGTH]
        if options:
            best = max(options, key=lambda c: np.dot(heads[c] - heads[joint], incoming)
                       / np.linalg.norm(heads[c] - heads[joint]))
            tails[joint] = heads[best]
        else:
            length = np.linalg.norm(heads[joint] - heads[parent]) / 2 if parent >= 0 else 0.1
            tails[joint] = heads[joint] + incoming * max(length, MIN_BONE_LENGTH)
    return tails


def remove_rig(name: str) -> None:
    """Delete the objects, data and actions of an earlier rig called ``name``."""
    armature = bpy.data.objects.get(name)
    if armature is None:
        return
    for child in list(armature.children):
        data = child.data
        bpy.data.objects.remove(child)
        if isinstance(data, bpy.types.Mesh) and data.users == 0:
            bpy.data.meshes.remove(data)
    data = armature.data
    bpy.data.objects.remove(armature)
    if data is not None and data.users == 0:
        bpy.data.armatures.remove(data)
    for action_name in (name, f"{name}_face"):
        action = bpy.data.actions.get(action_name)
        if action is not None:
            bpy.data.actions.remove(action)


def build_rig(rig: Mapping, name: str, collection: bpy.types.Collection | None = None,
              body_shape_keys: bool = False) -> tuple[bpy.types.Object, bpy.types.Object]:
    """Armature ``name`` and its skinned mesh ``name_body``, replacing an earlier one; with
    ``body_shape_keys``, also a shape key per leading body-shape component (at 0)."""
    remove_rig(name)
    collection = collection or bpy.context.scene.collection
    heads = points_to_world(rig["rest_joints"])
    parents = np.asarray(rig["parents"])
    tails = _bone_tails(heads, parents)

    armature_data = bpy.data.armatures.new(name)
    armature = bpy.data.objects.new(name, armature_data)
    collection.objects.link(armature)
    view_layer = bpy.context.view_layer
    previous = view_layer.objects.active
    view_layer.objects.active = armature
    bpy.ops.object.mode_set(mode="EDIT")
    bones = []
    for joint, joint_name in enumerate(rig["joint_names"]):
        bone = armature_data.edit_bones.new(joint_name)
        bone.head, bone.tail, bone.roll = heads[joint], tails[joint], 0.0
        if parents[joint] >= 0:
            bone.parent = bones[parents[joint]]
        bones.append(bone)
    bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = previous
    for pose_bone in armature.pose.bones:
        pose_bone.rotation_mode = "QUATERNION"

    mesh = _build_mesh(rig, f"{name}_body")
    body = bpy.data.objects.new(f"{name}_body", mesh)
    collection.objects.link(body)
    body.parent = armature
    _skin(body, rig)
    modifier = body.modifiers.new("Armature", "ARMATURE")
    modifier.object = armature
    _shape_keys(body, rig, body_shape_keys)
    armature["pear_asset"] = rig["asset_id"]
    return armature, body


def bone_rest_rotations(armature: bpy.types.Object, joint_names: Sequence[str]) -> np.ndarray:
    """(J, 3, 3) rest rotation of each bone in armature space, in the rig's joint order."""
    return np.array([np.array(armature.data.bones[n].matrix_local)[:3, :3]
                     for n in joint_names])


def _build_mesh(rig: Mapping, name: str) -> bpy.types.Mesh:
    vertices = points_to_world(rig["vertices"])
    faces = np.asarray(rig["faces"])
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.astype(np.float32).ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.update()
    mesh.validate()
    mesh.shade_smooth()
    return mesh


def _skin(body: bpy.types.Object, rig: Mapping) -> None:
    groups = [body.vertex_groups.new(name=n) for n in rig["joint_names"]]
    for vertex, joint, weight in zip(rig["weight_vertex"].tolist(), rig["weight_joint"].tolist(),
                                     rig["weight_value"].tolist(), strict=True):
        groups[joint].add((vertex,), weight, "REPLACE")


def _shape_keys(body: bpy.types.Object, rig: Mapping, body_shape: bool) -> None:
    keys = list(zip(rig["expression_names"], rig["expression_deltas"], strict=True))
    if body_shape:
        keys += zip(rig.get("body_shape_names", []), rig.get("body_shape_deltas", []),
                    strict=True)
    if not keys:
        return
    body.shape_key_add(name="Basis", from_mix=False)
    rest = points_to_world(rig["vertices"])
    for name, delta in keys:
        key = body.shape_key_add(name=name, from_mix=False)
        key.data.foreach_set("co", (rest + points_to_world(np.asarray(delta, np.float64)))
                             .astype(np.float32).ravel())
        key.slider_min, key.slider_max = -10.0, 10.0  # FLAME's and shape components go both ways
        key.value = 0.0  # bpy 5.0 adds keys at 1.0: the rest mesh must stay the subject's


def new_channelbag(owner: bpy.types.ID, action_name: str):
    """A fresh action on ``owner`` and the channelbag its F-curves go in (Blender >= 5.0:
    layered actions, no ``Action.fcurves``)."""
    animation = owner.animation_data or owner.animation_data_create()
    old = bpy.data.actions.get(action_name)
    if old is not None:
        bpy.data.actions.remove(old)
    action = bpy.data.actions.new(action_name)
    action.use_fake_user = False
    animation.action = action
    slot = animation.action_slot or action.slots.new(id_type=owner.id_type, name=owner.name)
    animation.action_slot = slot
    return anim_utils.action_ensure_channelbag_for_slot(action, slot)


def write_curve(channelbag, data_path: str, index: int, frames: np.ndarray,
                 values: np.ndarray, group: str = "") -> None:
    """Write keys to an F-curve in bulk (``foreach_set``: ~30x faster than keyframe_insert),
    replacing those it had from ``frames[0]`` on; the keys before stay."""
    curve = channelbag.fcurves.ensure(data_path, index=index, group_name=group)
    points = curve.keyframe_points
    old = np.empty(len(points) * 2, np.float32)
    points.foreach_get("co", old)
    kept = old.reshape(-1, 2)
    kept = kept[kept[:, 0] < frames[0]]
    # Never fewer keys than before: later parts of a clip only extend it.
    points.add(len(kept) + len(frames) - len(points))
    co = np.concatenate([kept.ravel(), np.stack([frames, values], 1).astype(np.float32).ravel()])
    points.foreach_set("co", co)
    points.foreach_set("interpolation", np.full(len(points), 1, np.int32))  # LINEAR
    curve.update()


class ClipAction:
    """The clip's actions on a rig: bones on the armature, expressions on the shape keys.
    ``add`` writes keyframes from its first frame on, so results can be applied as they
    arrive."""

    def __init__(self, armature: bpy.types.Object, body: bpy.types.Object, joint_names,
                 expression_names):
        self.armature, self.body = armature, body
        self.joint_names, self.expression_names = list(joint_names), list(expression_names)
        self.bones = new_channelbag(armature, armature.name)
        shape_keys = body.data.shape_keys
        self.face = (new_channelbag(shape_keys, f"{armature.name}_face")
                     if shape_keys is not None and self.expression_names else None)

    def add(self, keys: Keyframes) -> None:
        frames = keys.frames.astype(np.float64)
        for joint, name in enumerate(self.joint_names):
            path = f'pose.bones["{name}"].rotation_quaternion'
            for axis in range(4):
                write_curve(self.bones, path, axis, frames, keys.rotations[:, joint, axis],
                             name)
        root = f'pose.bones["{self.joint_names[0]}"].location'
        for axis in range(3):
            write_curve(self.bones, root, axis, frames, keys.root_location[:, axis],
                         self.joint_names[0])
        if self.face is not None:
            for column, name in enumerate(self.expression_names):
                write_curve(self.face, f'key_blocks["{name}"].value', 0, frames,
                             keys.shape_keys[:, column], "Expressions")


def add_camera(name: str, focal: float, center: tuple[float, float], width: int, height: int,
               footage: Path | None = None, frames: int = 0, first: int = 0,
               collection: bpy.types.Collection | None = None) -> bpy.types.Object:
    """The footage's camera at the world origin (see ``convert``), made the scene camera;
    with ``footage``, shown as its background from its frame ``first`` on."""
    collection = collection or bpy.context.scene.collection
    old = bpy.data.objects.get(name)
    if old is not None:
        bpy.data.objects.remove(old)
    data = bpy.data.cameras.new(name)
    settings = camera_settings(focal, center, width, height)
    data.sensor_fit = "AUTO"
    data.lens, data.sensor_width = settings["lens"], settings["sensor_width"]
    data.shift_x, data.shift_y = settings["shift_x"], settings["shift_y"]
    camera = bpy.data.objects.new(name, data)
    camera.rotation_euler = CAMERA_EULER
    collection.objects.link(camera)
    scene = bpy.context.scene
    scene.camera = camera
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    if footage is not None:
        _background(data, Path(footage), frames, first)
    return camera


def add_overlay(camera: bpy.types.Object, folder: Path, frames: int) -> None:
    """The avatar preview's images (``avatar_preview.overlay_file``: RGBA, numbered by scene
    frame) in front of everything in the camera view; replaces an earlier preview from
    ``folder``."""
    data = camera.data
    for background in list(data.background_images):
        image = background.image
        if image is not None and Path(bpy.path.abspath(image.filepath)).parent == folder:
            data.background_images.remove(background)
    _background(data, folder, frames, 0)
    overlay = data.background_images[-1]
    overlay.image.reload()  # the files may be new renders under old names
    overlay.display_depth = "FRONT"


def _background(camera: bpy.types.Camera, footage: Path, frames: int, first: int) -> None:
    """The footage behind the camera, its frame ``first`` (0-based) at scene frame 1: a movie,
    one image, or a folder of frames (loaded as Blender's image sequence)."""
    if footage.is_dir():
        stills = footage_files.frame_files(footage)
        if len(stills) <= first:
            return
        image = bpy.data.images.load(str(stills[first]), check_existing=True)
        image.source = "SEQUENCE"
        # Blender shows file number (scene frame + offset) of the sequence.
        offset = (file_number(stills[first]) or 1) - 1
    else:
        image = bpy.data.images.load(str(footage), check_existing=True)
        if footage_files.is_movie(footage):
            image.source = "MOVIE"
        offset = first  # movie frames count from 1
    background = camera.background_images.new()
    background.image = image
    background.image_user.frame_duration = max(frames, 1)
    background.image_user.frame_start = 1
    background.image_user.frame_offset = offset
    background.image_user.use_auto_refresh = True
    background.alpha = 1.0
    camera.show_background_images = True


def set_frame_range(frames: int, fps: float) -> None:
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, max(frames, 1)
    scene.render.fps = max(round(fps), 1)
    scene.render.fps_base = scene.render.fps / fps  # 29.97 fps is 30 / 1.001


def footage_frame(index) -> np.ndarray:
    """Blender frame of a footage frame index: frame 1 shows the footage's first frame."""
    return np.asarray(index) + 1


def store_contacts(armature: bpy.types.Object, frames: np.ndarray, contacts: np.ndarray
                   ) -> None:
    """Keep the tracker's foot contacts (T, 4: ``conventions.FOOT_JOINTS``) at scene
    ``frames`` on the rig (custom properties, saved with the .blend), for retargeting's foot
    planting; a later part of the clip overrides the frames it shares."""
    known = _stored_contacts(armature)
    known.update(zip((int(f) for f in frames), np.asarray(contacts, bool), strict=True))
    ordered = sorted(known)
    armature["pear_contact_frames"] = ordered
    armature["pear_contacts"] = np.array([known[f] for f in ordered], np.int32).ravel().tolist()
    armature["pear_contact_joints"] = list(conventions.FOOT_JOINTS)


def _stored_contacts(armature: bpy.types.Object) -> dict[int, np.ndarray]:
    frames = [int(f) for f in armature.get("pear_contact_frames", [])]
    if not frames:
        return {}
    values = np.asarray(armature["pear_contacts"], bool).reshape(len(frames), -1)
    return dict(zip(frames, values, strict=True))


def read_contacts(armature: bpy.types.Object, frames: np.ndarray) -> np.ndarray | None:
    """(T, 4) bool contacts of the rig at scene ``frames`` (False where none was stored), or
    None when the rig has none (a clip fitted without the contact stage)."""
    known = _stored_contacts(armature)
    if not known:
        return None
    none = np.zeros(len(next(iter(known.values()))), bool)
    return np.array([known.get(int(f), none) for f in frames])


class ClipApplier:
    """Puts a clip's results into the scene as they come (``apply(rig, results, first)``):
    the first call builds the rig ``name`` (replacing an earlier one), its camera and action;
    later calls, for later parts of the same clip, add keyframes; a part that repeats frames
    of the one before fades into it over them (``keyframes.crossfade``). ``footage`` (shown
    behind the camera) starts at its frame ``first``, as the frames sent did. ``camera``: the
    camera's name (default ``<name>_camera``); None makes none (another person's rig in the
    same footage, whose camera is already there)."""

    def __init__(self, name: str, footage: Path | None = None, total_frames: int = 0,
                 collection: bpy.types.Collection | None = None, first: int = 0,
                 body_shape_keys: bool = False, camera: str | None = ""):
        self.name, self.footage, self.total_frames = name, footage, total_frames
        self.camera_name = f"{name}_camera" if camera == "" else camera
        self.first, self.body_shape_keys = first, body_shape_keys
        self.collection = collection
        self.armature: bpy.types.Object | None = None
        self.action: ClipAction | None = None
        self._bone_rest: np.ndarray | None = None
        self._last: Keyframes | None = None  # the part applied last
        self.camera: bpy.types.Object | None = None

    def __call__(self, rig: Mapping, results, first_index: int = 0) -> None:
        if self.action is None:
            self.armature, body = build_rig(rig, self.name, self.collection,
                                            self.body_shape_keys)
            self._bone_rest = bone_rest_rotations(self.armature, rig["joint_names"])
            self.action = ClipAction(self.armature, body, rig["joint_names"],
                                     rig["expression_names"])
            if self.camera_name is not None:
                self.camera = add_camera(
                    self.camera_name, results.focal, tuple(results.center), results.width,
                    results.height, self.footage, max(self.total_frames, len(results.frames)),
                    self.first, self.collection)
        keys = clip_keyframes(results.params, results.cam_t, rig, self._bone_rest,
                              footage_frame(results.frames))
        if self._last is not None and keys.frames[0] <= self._last.frames[-1]:
            keys = crossfade(self._last, keys)
        self._last = keys  # as written: the next part's signs follow on from these
        self.action.add(keys)
        if getattr(results, "contacts", None) is not None:
            store_contacts(self.armature, footage_frame(results.frames), results.contacts)
        end = max(int(keys.frames[-1]), bpy.context.scene.frame_end if first_index else 1)
        set_frame_range(end, float(results.info.get("fps", 30.0)))


class LiveRig:
    """A rig a live capture drives (``live.LiveSession``): ``show`` poses it with the newest
    answer (no keys: the viewport follows), ``record`` keys answers at given scene frames on
    its action (made at the first recorded answer; the keys before a take's first frame stay)."""

    def __init__(self, name: str, collection: bpy.types.Collection | None = None):
        self.name, self.collection = name, collection
        self.armature: bpy.types.Object | None = None
        self.body: bpy.types.Object | None = None
        self.action: ClipAction | None = None
        self._rig: Mapping | None = None
        self._bone_rest: np.ndarray | None = None

    def _keyframes(self, rig: Mapping, answers: Sequence[Mapping],
                   frames: Sequence[int] | None = None) -> Keyframes:
        if self.armature is None:
            self.armature, self.body = build_rig(rig, self.name, self.collection)
            self._rig = rig
            self._bone_rest = bone_rest_rotations(self.armature, rig["joint_names"])
        params = {name: np.concatenate([np.asarray(a["params"][name]) for a in answers])
                  for name in answers[0]["params"]}
        cam_t = np.concatenate([np.asarray(a["cam_t"]) for a in answers])
        return clip_keyframes(params, cam_t, self._rig, self._bone_rest,
                              None if frames is None else np.asarray(frames))

    def show(self, rig: Mapping, answers: Sequence[Mapping]) -> None:
        keys = self._keyframes(rig, answers[-1:])
        bones = self.armature.pose.bones
        for joint, name in enumerate(self._rig["joint_names"]):
            bones[name].rotation_quaternion = keys.rotations[0, joint]
        bones[self._rig["joint_names"][0]].location = keys.root_location[0]
        shape_keys = self.body.data.shape_keys
        if shape_keys is not None:
            for column, name in enumerate(self._rig["expression_names"]):
                shape_keys.key_blocks[name].value = float(keys.shape_keys[0, column])

    def record(self, rig: Mapping, answers: Sequence[Mapping], frames: Sequence[int]) -> None:
        keys = self._keyframes(rig, answers, frames)
        if self.action is None:
            self.action = ClipAction(self.armature, self.body, self._rig["joint_names"],
                                     self._rig["expression_names"])
        self.action.add(keys)
