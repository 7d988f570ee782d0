"""``backend bench blender``: how fast results become Blender animation.

- ``apply_300_s``: keyframing 300 frames of a rig (55 bones' quaternions, the root's
  location, every expression shape key) through the add-on's scene builder, rig already
  built: the cost a user waits for once a clip is fitted (goal < 0.5 s).
- ``retarget_300_s``: those 300 frames retargeted onto Rigify's human meta-rig (Rigify's own,
  made by its operator): reading the keys, the retarget, keying the meta-rig (goal <= 0.5 s).
- ``bake_fps``: ``backend bake`` end to end (MediaPipe, the tracker, smoothing, rig, action,
  .blend) on the demo clip the project renders, frames per second of footage.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

APPLY_FRAMES = 300


def run_blender_bench(progress: bool = True, bake_frames: int = 30) -> dict:
    from pear_recover_mesh import scene
    from pear_recover_mesh.keyframes import clip_keyframes

    from ..body import registry
    from ..body.model import BodyModel
    from ..pipeline.bake import _import_bpy, bake_clip
    from ..pipeline.demo import demo_motion, render_demo_clip
    from ..pipeline.rig import build_rig

    bpy = _import_bpy()
    frames = APPLY_FRAMES
    say = print if progress else (lambda *_: None)
    asset = registry.load(progress=say)
    rig = build_rig(asset)
    model = BodyModel(asset).double()
    params = {k: v.numpy() for k, v in demo_motion(
        model, frames, asset.meta.get("expression_names", [])).items()}
    cam_t = np.tile([0.0, 0.15, 3.4], (frames, 1))

    bpy.ops.wm.read_factory_settings(use_empty=True)
    say("building the rig ...")
    start = time.perf_counter()
    armature, body = scene.build_rig(rig, "bench")
    build_s = time.perf_counter() - start
    say(f"keyframing {frames} frames ...")
    start = time.perf_counter()
    keys = clip_keyframes(params, cam_t, rig, scene.bone_rest_rotations(armature,
                                                                        rig["joint_names"]))
    scene.ClipAction(armature, body, rig["joint_names"], rig["expression_names"]).add(keys)
    apply_s = time.perf_counter() - start
    retarget_s, retarget_bones = _retarget_onto_rigify(bpy, armature)

    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "demo_clip.mp4"
        say(f"rendering a {bake_frames}-frame demo clip, then baking it ...")
        import torch

        colors = torch.as_tensor(asset.arrays["vertex_colors"], dtype=torch.float64)
        motion = demo_motion(model, bake_frames, asset.meta.get("expression_names", []))
        render_demo_clip(model, colors, motion, clip)
        baked = bake_clip(clip, Path(folder) / "baked", asset)
    return {
        "apply_300_s": round(apply_s, 4),
        "curves": len(rig["joint_names"]) * 4 + 3 + len(rig["expression_names"]),
        "rig_build_s": round(build_s, 3),
        "retarget_300_s": round(retarget_s, 4),
        "retarget_bones": retarget_bones,
        "bake_frames": baked.frames,
        "bake_s": round(baked.seconds, 2),
        "bake_fps": round(baked.fps, 3),
    }


def _retarget_onto_rigify(bpy, armature) -> tuple[float, int]:
    """Seconds to retarget the rig's action onto a fresh Rigify meta-rig; its bones keyed."""
    import addon_utils
    from pear_recover_mesh.retarget_scene import resolve_preset, retarget_armature

    addon_utils.enable("rigify", default_set=True)
    bpy.ops.object.armature_human_metarig_add()
    metarig = bpy.context.active_object
    start = time.perf_counter()
    done = retarget_armature(armature, metarig, resolve_preset("rigify_metarig", metarig))
    return time.perf_counter() - start, done.bones
