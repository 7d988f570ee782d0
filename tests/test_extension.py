"""The Blender extension zip: its layout, Blender's own validation of it, and an install and
enable through Blender's extension operators (in a subprocess: installing changes sys.path and
sys.modules for good)."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path, PurePosixPath

import cv2
import pytest

from backend.paths import pear_home
from backend.pipeline.demo import demo_frames
from backend.server.process import serve_process

from .blender_support import OPERATORS

REPO = Path(__file__).resolve().parents[1]
# Taken at collection, before each test gets its own PEAR_HOME: the wheels are downloaded once
# per machine, like the other caches.
WHEEL_CACHE = pear_home() / "cache" / "wheels"
# Wheel platform tags that run on each Blender platform.
PLATFORM_TAGS = {"linux-x64": ("manylinux",), "windows-x64": ("win_amd64",),
                 "macos-arm64": ("arm64", "universal2")}


@pytest.fixture(scope="session")
def build_script():
    spec = importlib.util.spec_from_file_location("build_extension",
                                                  REPO / "scripts" / "build_extension.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def extension_zip(build_script, tmp_path_factory) -> Path:
    return build_script.build_extension(tmp_path_factory.mktemp("dist"), cache=WHEEL_CACHE)


@pytest.fixture(scope="session")
def zip_manifest(extension_zip) -> dict:
    with zipfile.ZipFile(extension_zip) as archive:
        return tomllib.loads(archive.read("blender_manifest.toml").decode())


def test_zip_name_and_manifest(extension_zip, zip_manifest):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert zip_manifest["version"] == project["version"]
    assert extension_zip.name == f"pear_recover_mesh-{project['version']}.zip"
    assert zip_manifest["id"] == "pear_recover_mesh"
    assert zip_manifest["type"] == "add-on"
    assert zip_manifest["schema_version"] == "1.0.0"
    assert (zip_manifest["blender_version_min"], zip_manifest["blender_version_max"]) == (
        "5.0.0", "6.0.0")
    assert zip_manifest["license"] == ["SPDX:Apache-2.0"]
    assert set(zip_manifest["permissions"]) == {"network", "files"}


def test_zip_layout(extension_zip, zip_manifest, build_script):
    with zipfile.ZipFile(extension_zip) as archive:
        names = archive.namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names  # at the root
    assert not [name for name in names
                if any(part == "__pycache__" or part.startswith(".")
                       for part in PurePosixPath(name).parts)]
    assert "vendor/__init__.py" in names
    assert {f"vendor/{path}" for path in build_script.VENDORED} <= set(names)

    assert zip_manifest["platforms"] == ["linux-x64", "windows-x64", "macos-arm64"]
    wheels = zip_manifest["wheels"]
    assert len(wheels) == 6
    assert {wheel.removeprefix("./") for wheel in wheels} <= set(names)
    for platform, tags in PLATFORM_TAGS.items():
        for package in ("pyzmq", "msgpack"):
            assert [wheel for wheel in wheels if wheel.startswith(f"./wheels/{package}-")
                    and "-cp311-" in wheel and any(tag in wheel for tag in tags)], \
                f"no {package} wheel for {platform}"


def test_blender_validates_zip(extension_zip):
    """Blender's own validator (the one behind `blender --command extension validate`)."""
    bpy_dir = Path(importlib.util.find_spec("bpy").origin).parent
    validator, = bpy_dir.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py")
    result = subprocess.run([sys.executable, str(validator), "validate", str(extension_zip)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_vendored_client_imports_only_what_blender_has(build_script):
    """Outside the standard library, the vendored modules import only numpy (Blender ships it)
    and the bundled msgpack and zmq. cv2 is imported lazily to encode and decode frames, and
    Pillow to read BMP/TIFF/WebP headers, which the add-on does not do: Blender has neither."""
    allowed = {"numpy", "msgpack", "zmq", *sys.stdlib_module_names}
    for relative in build_script.VENDORED:
        tree = ast.parse((REPO / relative).read_text(), relative)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {node.module.partition(".")[0]}
            else:
                continue
            lazy = relative == "backend/server/images.py" and node.col_offset > 0
            assert roots <= allowed | ({"cv2", "PIL"} if lazy else set()), \
                f"{relative}:{node.lineno} imports {roots - allowed}"


def test_cli_builds_chosen_platforms(build_script, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PEAR_HOME", str(WHEEL_CACHE.parents[1]))  # reuse the cached wheels
    assert build_script.main(["--out", str(tmp_path), "--platforms", "linux-x64"]) == 0
    built = Path(capsys.readouterr().out.strip())
    assert built.parent == tmp_path
    with zipfile.ZipFile(built) as archive:
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
    assert manifest["platforms"] == ["linux-x64"] and len(manifest["wheels"]) == 2


def test_install_enable_and_recover_with_the_installed_extension(extension_zip, tmp_path,
                                                                server_home, open_asset):
    """Blender's operators install and enable the zip; the installed extension (its bundled
    pyzmq/msgpack and vendored client, nothing from this venv) connects to a live backend and
    recovers a 4-frame clip into a rig."""
    clip = tmp_path / "clip"
    clip.mkdir()
    for index, image in enumerate(demo_frames(open_asset, 4)):
        cv2.imwrite(str(clip / f"frame_{index:04d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    user_dir, home = tmp_path / "blender_user", tmp_path / "home"
    home.mkdir()
    report_path = tmp_path / "report.json"
    with serve_process(server_home, "--estimator", "tracker") as backend:
        result = subprocess.run(
            [sys.executable, "-m", "tests.blender_support", str(user_dir), str(extension_zip),
             str(report_path), backend.endpoint, str(clip)],
            cwd=REPO, env={**os.environ, "HOME": str(home)}, capture_output=True, text=True,
            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(report_path.read_text())

    assert report["install"] == ["FINISHED"] and report["enabled"]
    assert report["registered"] == {"panel": True, "scene_property": True,
                                    **dict.fromkeys(OPERATORS, True)}
    assert report["client_class"]
    for name, path in report["module_files"].items():  # from the bundled wheels
        assert Path(path).is_relative_to(user_dir), name
    session = report["session"]
    assert session["connect"] == ["FINISHED"] and session["status"].startswith("connected")
    assert session["state"] == "done", session["error"]
    assert session["client_module"] == f"{report['module']}.vendor.backend.server.client"
    assert sorted(session["bones"]) == sorted(open_asset.joint_names)
    assert session["keyframes"] == [4]
    assert session["shape_key_curves"] == len(open_asset.meta["expression_names"])

    assert report["disable"] == ["FINISHED"]
    assert not any(report["registered_after_disable"].values())
    assert report["uninstall"] == ["FINISHED"] and not report["installed_after_uninstall"]
    assert not any(home.iterdir()), "bpy wrote into HOME"
