"""The ``backend`` command run as a real subprocess, as users run it."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def backend(*args: str, home) -> subprocess.CompletedProcess:
    env = dict(os.environ, PEAR_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


# Every command of `backend` and the actions (or targets) each takes, written out here rather
# than read from the parser, so a command missing from the help fails the test.
COMMANDS = {
    "models": ("install", "build-open", "preview", "list"), "priors": ("train", "show"),
    "bench": ("ehm", "open-model", "tracker", "server", "blender", "regressor", "renderer",
              "cluster", "live"),
    "fit": (), "bake": (), "live": (), "people": (), "eval": ("coco-wholebody",), "serve": (),
    "keys": ("generate",), "demo": (), "avatar": (),
}


def _listed(help_text: str) -> set[str]:
    """The entries of an argparse help: sub-command lines and {choice,...} lists."""
    entries = set(re.findall(r"^ {4}(\S+)", help_text, re.MULTILINE))
    for group in re.findall(r"\{([^}]*)\}", help_text):
        entries.update(group.split(","))
    return entries


def test_help_lists_the_subcommands(tmp_path):
    result = backend("--help", home=tmp_path)
    assert result.returncode == 0
    assert _listed(result.stdout) == set(COMMANDS)
    for command, actions in COMMANDS.items():
        if actions:
            result = backend(command, "--help", home=tmp_path)
            assert result.returncode == 0, command
            assert set(actions) <= _listed(result.stdout), (command, result.stdout)
    # The README's list of commands names no other command or action.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for command, action in re.findall(r"(?:`|bin/)backend ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?",
                                      readme):
        assert command in COMMANDS, command
        if COMMANDS[command] and action:
            assert action in COMMANDS[command], (command, action)


def test_output_piped_into_a_reader_that_stops_early_is_no_bug(tmp_path):
    """``backend models list | head -1``: the reader closes the pipe before the command has
    written; the command ends quietly with exit 0, not with a bug report."""
    env = dict(os.environ, PEAR_HOME=str(tmp_path))
    process = subprocess.Popen([sys.executable, "-m", "backend.cli", "models", "list"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # long before the interpreter has started and written anything
    _, errors = process.communicate(timeout=300)
    assert process.returncode == 0, errors.decode()[-2000:]
    assert b"bug in PEAR" not in errors and b"Traceback" not in errors


def test_install_then_list(model_files, open_asset, tmp_path):
    from backend.body.asset import save_asset

    save_asset(open_asset, tmp_path / "assets" / "open.npz")  # where the landmarks come from
    result = backend("models", "install", "--smplx", str(model_files.smplx),
                     "--flame", str(model_files.flame),
                     "--correspondence", str(model_files.correspondence),
                     "--eyelids", str(model_files.eyelids), "--num-expression", "30",
                     home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "installed smplx+flame" in result.stdout
    assert "landmarks mediapipe_face478: carried from 'open'" in result.stdout
    assert (tmp_path / "assets" / "smplx+flame.npz").is_file()

    listing = backend("models", "list", "--json", home=tmp_path)
    assert listing.returncode == 0, listing.stderr
    (row,) = [r for r in json.loads(listing.stdout) if r["asset_id"] != "open"]
    assert row["asset_id"] == "smplx+flame"
    assert row["landmark_sets"]["mediapipe_face478"] == 478
    assert row["landmark_sets"]["mediapipe_hand_left"] == 21
    assert row["vertices"] == 10475 and row["joints"] == 55
    assert row["params"]["expression"] == 30
    assert "non-commercial" in row["license"]

    text = backend("models", "list", home=tmp_path)
    assert "smplx+flame [smplx+flame] 10475 vertices, 55 joints" in text.stdout


def test_install_with_a_missing_file_names_it(tmp_path):
    result = backend("models", "install", "--smplx", str(tmp_path / "SMPLX_NEUTRAL.npz"),
                     home=tmp_path)
    assert result.returncode == 2
    assert "SMPL-X file not found" in result.stderr
    assert "SMPLX_NEUTRAL.npz" in result.stderr


def test_a_corrupt_installed_asset_is_listed_as_unreadable(tmp_path):
    (tmp_path / "assets").mkdir(parents=True)
    (tmp_path / "assets" / "broken.npz").write_bytes(b"\x00" * 64)
    listing = backend("models", "list", "--json", home=tmp_path)
    (row,) = json.loads(listing.stdout)
    assert row["asset_id"] == "broken" and "not a readable asset" in row["error"]


def test_caches_are_routed_into_pear_home(tmp_path):
    code = ("import os; from backend.paths import route_caches; route_caches(); "
            "print(os.environ['TORCH_HOME']); print(os.environ['ANNY_CACHE_DIR'])")
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_HOME", "ANNY_CACHE_DIR")}
    env["PEAR_HOME"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True)
    assert all(line.startswith(str(tmp_path)) for line in result.stdout.split())


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    result = backend("demo", "--out", str(tmp_path / "demo"), "--frames", "12", home=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "The recovered body motion is" in result.stdout
    for name in ("demo_clip.mp4", "demo_clip.blend", "demo_clip.fbx", "demo_clip.npz",
                 "demo_clip_overlay.mp4"):
        assert (tmp_path / "demo" / name).is_file(), name


@pytest.mark.slow
def test_bench_ehm_prints_one_json_object(tmp_path):
    result = backend("bench", "ehm", "--json", "--repeats", "2", home=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("ours_ms_b1", "ours_ms_b64", "smplx_ms_b1", "smplx_ms_b64",
                "max_abs_diff_vs_smplx"):
        assert key in data
    assert data["max_abs_diff_vs_smplx"] < 1e-5


def test_build_open_then_list_and_preview(tmp_path):
    built = backend("models", "build-open", "--samples", "300", "--quick", home=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "built open: 13718 vertices, 55 joints, 20 shape components" in built.stdout
    assert "52 ARKit expressions" in built.stdout

    listing = backend("models", "list", "--json", home=tmp_path)
    (row,) = json.loads(listing.stdout)
    assert row["asset_id"] == "open" and row["kind"] == "open"
    assert "Apache-2.0" in row["license"] and "commercial" in row["license"]
    assert len(row["expression_names"]) == 52

    preview = backend("models", "preview", "open", "--out", str(tmp_path / "p.png"),
                      home=tmp_path)
    assert preview.returncode == 0, preview.stderr
    from PIL import Image

    image = Image.open(tmp_path / "p.png").convert("L")
    assert image.size == (6 * 320, 480)
    histogram = image.histogram()
    assert sum(histogram[:200]) > 0.05 * sum(histogram)  # a drawn body, not a blank sheet


@pytest.mark.slow
def test_bench_refuses_repeats_where_it_runs_once(tmp_path):
    result = backend("bench", "cluster", "--repeats", "2", home=tmp_path)
    assert result.returncode != 0
    assert "runs once" in result.stderr and "tracker" in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_renderer_prints_one_json_object(tmp_path):
    result = backend("bench", "renderer", "--json", "--repeats", "1", home=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["gaussians"] > 10_000 and set(data["raster_ms"]) == {"16", "32"}
    assert data["raster_fwd_bwd_ms"] > data["raster_ms"]["32"] > 0
    assert data["avatar_build_ms"] > 0 and data["render_ms"] > 0
    assert data["reference_speedup"] > 1
    if not torch.cuda.is_available():
        assert data["cuda_raster_ms"] is None and data["cuda_gsplat_raster_ms"] is None


@pytest.mark.slow
def test_bench_open_model_prints_one_json_object(tmp_path):
    result = backend("bench", "open-model", "--json", "--repeats", "2", home=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("build_s", "load_s", "ms_b1", "ms_b64", "equiv_mean_mm", "equiv_max_mm",
                "shape_components", "expression_names"):
        assert key in data
    assert data["equiv_mean_mm"] < 1.0 and data["equiv_max_mm"] < 5.0
    assert data["load_s"] < 1.0
