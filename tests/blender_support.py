"""Helpers for tests that need bpy (Blender as a Python module).

Left alone, bpy writes its preferences and extensions to ``~/.config/blender`` and creates
``~/.cache/thumbnails``. ``import_bpy`` moves both into a given folder first: bpy can be
imported once per process and reads its preferences at import. In the pytest process use the
session fixture ``bpy_module`` (tests/conftest.py).

``python -m tests.blender_support USER_DIR ZIP REPORT [ENDPOINT CLIP]`` (from the repository
root) installs an extension zip with Blender's own extension operators in a fresh process, as
a user's Blender would, and writes what registered to the JSON file REPORT; given a running
backend's ENDPOINT and a folder of frames CLIP, the installed extension also connects and
recovers the clip with its own modules.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import os
import sys
import tomllib
import zipfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

# Checked with bpy 5.0.1: BLENDER_USER_RESOURCES moves config/, scripts/, datafiles/ and
# extensions/ together; the thumbnail cache follows XDG_CACHE_HOME.
USER_DIR_VARIABLES = {"BLENDER_USER_RESOURCES": "blender", "XDG_CACHE_HOME": "cache"}

REPO_MODULE = "user_default"  # the local extension repository every Blender has
PANEL = "VIEW3D_PT_pear_recover"
OPERATORS = ("pear.recover", "pear.connect", "pear.backend_start", "pear.backend_stop")
CLIENT = "vendor.backend.server.client"
# Blender's own Python has none of these: the add-on must use the wheels and the vendored copy
# it bundles, and import itself relatively, not through the venv's packages.
BUNDLED_ONLY = ("zmq", "msgpack", "backend", "pear_recover_mesh")


def import_bpy(user_dir: Path) -> ModuleType:
    """Point bpy's user folders into ``user_dir``, then import bpy."""
    if "bpy" in sys.modules:
        raise RuntimeError("bpy was imported before its user folders were redirected: use the "
                           "bpy_module fixture instead of importing bpy at module level")
    # Left set: bpy looks them up again each time it needs a user folder.
    os.environ.update({variable: str(user_dir / sub)
                       for variable, sub in USER_DIR_VARIABLES.items()})
    import bpy

    return bpy


class _ImportOnlyFrom:
    """A meta-path finder: the given top-level packages import only from under ``root``."""

    def __init__(self, names: Sequence[str], root: Path) -> None:
        self.names = set(names)
        self.root = str(root) + os.sep

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if path is not None or name not in self.names:
            return None  # submodules are found through their parent's __path__
        inside = [entry for entry in sys.path if entry.startswith(self.root)]
        if (spec := importlib.machinery.PathFinder.find_spec(name, inside)) is None:
            raise ModuleNotFoundError(f"No module named {name!r} under {self.root}", name=name)
        return spec


def _operator_registered(bpy: ModuleType, idname: str) -> bool:
    category, name = idname.split(".")
    try:  # bpy.ops.<category>.<name> exists for any name; its RNA type only once registered
        getattr(getattr(bpy.ops, category), name).get_rna_type()
    except KeyError:
        return False
    return True


def _registered(bpy: ModuleType) -> dict[str, bool]:
    return {
        "panel": hasattr(bpy.types, PANEL),
        "scene_property": hasattr(bpy.types.Scene, "pear"),
        **{operator: _operator_registered(bpy, operator) for operator in OPERATORS},
    }


def session_report(bpy: ModuleType, module: str, endpoint: str, clip: Path) -> dict[str, Any]:
    """The installed extension's panel connects to ``endpoint``; its session (stepped here as
    the panel's modal operator steps it) recovers ``clip`` into the scene."""
    from bpy_extras import anim_utils

    settings = bpy.context.scene.pear
    settings.backend, settings.address = "REMOTE", endpoint
    report: dict[str, Any] = {"connect": sorted(bpy.ops.pear.connect()),
                              "status": settings.status}
    session_module = importlib.import_module(f"{module}.session")
    footage = importlib.import_module(f"{module}.footage").image_sequence(clip, fps=30)
    apply = importlib.import_module(f"{module}.scene").ClipApplier("installed", None,
                                                                   len(footage))
    client_module = importlib.import_module(f"{module}.backend_client")
    with client_module.Client(endpoint, timeout=60) as client:
        session = session_module.RecoverSession(
            client, footage, session_module.RecoverSettings(chunk=0), apply)
        session.run()
    report.update(state=session.state, error=session.error,
                  client_module=client_module.Client.__module__)
    if session.state == "done":
        armature, body = bpy.data.objects["installed"], bpy.data.objects["installed_body"]

        def curves(action):
            return anim_utils.action_get_channelbag_for_slot(action, action.slots[0]).fcurves

        report.update(
            bones=[bone.name for bone in armature.data.bones],
            keyframes=sorted({len(c.keyframe_points)
                              for c in curves(armature.animation_data.action)}),
            shape_key_curves=len(curves(body.data.shape_keys.animation_data.action)))
    return report


def install_report(bpy: ModuleType, zip_path: Path, endpoint: str | None = None,
                   clip: Path | None = None) -> dict[str, Any]:
    """Install and enable the extension in ``zip_path``, note what registered (and with
    ``endpoint`` and ``clip``, what a session did), then disable and uninstall it. Changes the
    process for good (sys.path, sys.modules): run it in a subprocess."""
    with zipfile.ZipFile(zip_path) as archive:
        package = tomllib.loads(archive.read("blender_manifest.toml").decode())["id"]
    module = f"bl_ext.{REPO_MODULE}.{package}"
    repo_directory = Path(bpy.utils.user_resource("EXTENSIONS", path=REPO_MODULE))

    report: dict[str, Any] = {"module": module}
    report["install"] = sorted(bpy.ops.extensions.package_install_files(
        filepath=str(zip_path), repo=REPO_MODULE, enable_on_install=True))
    report["enabled"] = module in bpy.context.preferences.addons
    report["registered"] = _registered(bpy)
    report["client_class"] = hasattr(importlib.import_module(f"{module}.{CLIENT}"), "Client")
    if endpoint is not None and clip is not None:
        report["session"] = session_report(bpy, module, endpoint, clip)
    report["module_files"] = {name: sys.modules[name].__file__ for name in ("zmq", "msgpack")}

    report["disable"] = sorted(bpy.ops.preferences.addon_disable(module=module))
    report["registered_after_disable"] = _registered(bpy)
    report["uninstall"] = sorted(bpy.ops.extensions.package_uninstall(
        repo_directory=str(repo_directory), pkg_id=package))
    report["installed_after_uninstall"] = (repo_directory / package).exists()
    return report


def main(user_dir: str, zip_path: str, report_path: str, endpoint: str | None = None,
         clip: str | None = None) -> None:
    sys.meta_path.insert(0, _ImportOnlyFrom(BUNDLED_ONLY, Path(user_dir)))
    report = install_report(import_bpy(Path(user_dir)), Path(zip_path), endpoint,
                            Path(clip) if clip else None)
    Path(report_path).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:])
