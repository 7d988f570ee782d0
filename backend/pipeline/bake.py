"""``backend bake``: footage in, a keyframed rig out, headless.

Per clip: perception and the estimator (``fit_footage``), then the Blender extension's own
scene builder through the ``bpy`` module — the very code the add-on runs — into a fresh scene
saved as ``<clip>.blend``, optionally exported to FBX (with the animation: the exporter needs
``bake_anim_use_nla_strips=False``), glTF binary and BVH, and the result file (``.npz``).
With a ``RetargetTo``, a character from a .blend or .fbx is brought into the scene and keyed
with the motion through a preset (the add-on's ``retarget_scene``), so the exports carry it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..body.asset import Asset
from ..body.model import BodyModel
from ..errors import SetupError
from ..estimator_names import ESTIMATORS
from ..results import ClipResults, save_results
from .fit import Progress, fit_footage
from .overlay import write_overlay
from .parts import join_parts
from .rig import build_rig, subject_params


class BakeError(SetupError, RuntimeError):
    """Nothing can be baked as asked (no bpy, an unknown estimator): says why and what to do."""


@dataclass
class BakeOutputs:
    clip: Path
    frames: int
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the user should know

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


@dataclass
class RetargetTo:
    """A character to bake the motion onto: ``preset`` (a shipped preset's name, a preset
    file, or ``auto``), its file (.blend or .fbx) and, if it holds several, the armature."""

    preset: str
    character: Path
    armature: str | None = None


def _import_bpy():
    try:
        import bpy
    except ImportError as exc:
        raise BakeError("`backend bake` needs the bpy module (Blender as a Python module): "
                        "`pip install -e '.[blender]'` in this environment (Python 3.11)"
                        ) from exc
    return bpy


@dataclass
class PersonMotion:
    """One person's fitted motion: the clip's parts in order, each as (first footage frame it
    keys, results); one part unless the clip was split (``parts.plan_parts``)."""

    number: int | None  # as ``--person`` numbers people; None: the most prominent one
    parts: list[tuple[int, ClipResults]]


def bake_clip(footage: Path, out_dir: Path, asset: Asset, estimator: str = "tracker",
              smooth: float = 1.0, focal: float | None = None, formats: tuple[str, ...] = (),
              background: bool = True, max_frames: int | None = None,
              overlay: bool = False, body_shape_keys: bool = False,
              person: int | str | None = None, checkpoint: Path | None = None,
              progress: Progress | None = None, contact: bool = True,
              retarget: RetargetTo | None = None, adapter: Path | None = None,
              face_scores: bool = True) -> BakeOutputs:
    """Bake one clip of ``asset``'s body into ``out_dir``; ``formats`` from ``fbx``, ``glb``,
    ``bvh`` (the PEAR armature), ``npz``; ``retarget``: also key that character; with
    ``overlay``, also a video of the fitted mesh over the footage; with
    ``body_shape_keys``, shape keys for the leading body-shape components too; ``person``:
    which person to follow when several are in view (``ClipDetector``), or ``"all"``: each
    person of the first frame showing anybody, each into a rig of their own (``Person1``,
    ``Person2`` ... from the left; files per person get ``_PersonN``); ``estimator``,
    ``checkpoint``, ``adapter``, ``progress``, ``contact`` and ``face_scores`` as in
    ``fit_footage``."""
    if estimator not in ESTIMATORS:
        raise BakeError(f"estimator {estimator!r} is not available; choose from "
                        f"{list(ESTIMATORS)}")
    _import_bpy()
    if retarget is not None:  # before minutes of fitting, not after
        check_retarget(retarget)

    start = time.perf_counter()
    followed, notes = people_to_follow(footage, person, max_frames)
    people = [PersonMotion(number, [(0, fit_footage(
        footage, asset, smooth=smooth, focal=focal, max_frames=max_frames, person=number,
        estimator=estimator, checkpoint=checkpoint, progress=progress, contact=contact,
        adapter=adapter, face_scores=face_scores).results)]) for number in followed]
    files = write_bake(footage, out_dir, asset, people, formats, background=background,
                       overlay=overlay, body_shape_keys=body_shape_keys, retarget=retarget,
                       everyone=person == "all")
    frames = sum(len(results.frames) for _, results in people[0].parts)
    return BakeOutputs(footage, frames, time.perf_counter() - start, files, notes)


def clip_name(footage: Path) -> str:
    """What a clip's outputs are called: the file's stem, or the folder's name."""
    return footage.stem if footage.is_file() else footage.name


def write_bake(footage: Path, out_dir: Path, asset: Asset, people: list[PersonMotion],
               formats: tuple[str, ...] = (), background: bool = True, overlay: bool = False,
               body_shape_keys: bool = False, retarget: RetargetTo | None = None,
               everyone: bool = False) -> dict[str, Path]:
    """The scene of fitted ``people`` — built by the add-on's own ``ClipApplier``, which joins
    a split clip's parts as the add-on does — saved as ``<clip>.blend`` in ``out_dir`` with
    the exports asked for (see ``bake_clip``); returns the files by kind. ``everyone``: rigs
    and per-person files are named ``PersonN`` (``--people all``)."""
    bpy = _import_bpy()
    from pear_recover_mesh import retarget_scene, scene

    out_dir.mkdir(parents=True, exist_ok=True)
    name = clip_name(footage)
    labels = [name if not everyone else f"{name}_Person{person.number}" for person in people]
    keys = ["" if not everyone else str(person.number) for person in people]
    files = {"blend": out_dir / f"{name}.blend"}
    motions = [join_parts([results for _, results in person.parts]) for person in people]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    appliers = []
    for index, (person, motion) in enumerate(zip(people, motions, strict=True)):
        rig = build_rig(asset, subject_params(asset, motion.params))
        apply = scene.ClipApplier(
            name if not everyone else f"Person{person.number}",
            footage.resolve() if background and index == 0 else None, len(motion.frames),
            body_shape_keys=body_shape_keys, camera=f"{name}_camera" if index == 0 else None)
        for start, results in person.parts:
            apply(rig, results, start)
        appliers.append(apply)
        if retarget is not None:
            _retarget(retarget_scene, apply.armature, retarget)
    bpy.ops.wm.save_as_mainfile(filepath=str(files["blend"]), check_existing=False)
    if "fbx" in formats:
        files["fbx"] = out_dir / f"{name}.fbx"
        export_fbx(files["fbx"])
    if "glb" in formats:
        files["glb"] = out_dir / f"{name}.glb"
        export_glb(files["glb"])
    for apply, results, label, key in zip(appliers, motions, labels, keys, strict=True):
        if "bvh" in formats:
            files[f"bvh{key}"] = out_dir / f"{label}.bvh"
            retarget_scene.export_bvh(apply.armature, files[f"bvh{key}"],
                                      (1, len(results.frames)))
        if "npz" in formats:
            files[f"npz{key}"] = save_results(results, out_dir / f"{label}.npz")
        if overlay:
            files[f"overlay{key}"] = write_overlay(results, BodyModel(asset),
                                                   out_dir / f"{label}_overlay.mp4")
    return files


def people_to_follow(footage: Path, person: int | str | None, max_frames: int | None
                     ) -> tuple[list[int | None], list[str]]:
    """Whom to fit: the one asked for, or with ``all`` everyone in the first frame showing
    anybody (numbered from the left, as ``--person``), and notes on people who appear only
    later (not followed: said, not silently ignored)."""
    if person != "all":
        return [person], []
    from ..perception.people import PersonNotFound
    from .people_in_footage import people_in_footage, people_later

    found = people_in_footage(footage)
    if not found.boxes:
        raise PersonNotFound(f"{footage}: nobody was found in the first 300 frames, so there "
                             "is no one to bake")
    count = len(found.boxes)
    notes = [f"frame {frame} shows {seen} people, more than the {count} of frame "
             f"{found.frame} that were baked: bake again with --person N once `backend people` "
             "numbers them" for frame, seen in people_later(footage, count, found.frame,
                                                            max_frames)]
    return list(range(1, count + 1)), notes[:1]


def check_retarget(retarget: RetargetTo) -> None:
    """A set-up error now, before any footage is fitted, for a character or preset that
    cannot be used."""
    from pear_recover_mesh.presets import PRESET_DIR

    if not retarget.character.is_file():
        raise BakeError(f"--target-rig {retarget.character} does not exist")
    if retarget.character.suffix.lower() not in (".blend", ".fbx"):
        raise BakeError(f"--target-rig {retarget.character.name}: a character comes as a "
                        ".blend or .fbx file")
    choice = retarget.preset
    if choice != "auto" and not (PRESET_DIR / f"{choice}.json").is_file() \
            and not Path(choice).is_file():
        names = sorted(p.stem for p in PRESET_DIR.glob("*.json"))
        raise BakeError(f"--retarget {choice}: no such preset; give one of {names}, 'auto', "
                        "or a preset file's path")


def _retarget(retarget_scene, source, retarget: RetargetTo) -> None:
    """Bring the character in and key it; its problems are the set-up's (exit 3)."""
    from pear_recover_mesh.presets import PresetError

    try:
        character = retarget_scene.load_character(retarget.character, retarget.armature)
        preset = retarget_scene.resolve_preset(retarget.preset, character)
        retarget_scene.retarget_armature(source, character, preset)
    except (retarget_scene.RetargetError, PresetError) as exc:
        raise BakeError(str(exc)) from None


def export_fbx(path: Path) -> None:
    """The rig, mesh and animation as FBX. Without ``bake_anim_use_nla_strips=False`` Blender's
    exporter writes no animation at all for an action that is not on an NLA strip."""
    import bpy

    bpy.ops.export_scene.fbx(filepath=str(path), object_types={"ARMATURE", "MESH"},
                             add_leaf_bones=False, bake_anim=True,
                             bake_anim_use_all_actions=False, bake_anim_use_nla_strips=False,
                             bake_anim_simplify_factor=0.0)


def export_glb(path: Path) -> None:
    import bpy

    bpy.ops.export_scene.gltf(filepath=str(path), export_format="GLB",
                              export_animations=True, export_morph=True,
                              export_def_bones=False, export_cameras=True)
