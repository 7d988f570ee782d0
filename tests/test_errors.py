"""What a user sees when something is wrong: the ``backend`` command's error paths each end
in one ``error: ...`` line and the exit code of the error's kind (input 2, set-up 3, clip 4),
never a traceback; every exception class the project defines is one of those kinds; a
server's ``hello`` reports a broken asset file instead of failing."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import struct
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

import backend
from backend.body import registry
from backend.cli import main
from backend.errors import (
    EXIT_BATCH_PARTLY_FAILED,
    EXIT_BUG,
    ClipError,
    FootageError,
    InputError,
    PearError,
    SetupError,
    describe,
    exit_code,
)
from backend.perception.frames import open_footage

from .footage_support import write_demo_clip

cv2 = pytest.importorskip("cv2")

INPUT, SETUP, CLIP = 2, 3, 4


def _backend(capsys, *args) -> tuple[int, str]:
    """Run ``backend ARGS`` in this process: (exit code, stderr)."""
    code = main([str(arg) for arg in args])
    return code, capsys.readouterr().err


def _one_error_line(stderr: str) -> str:
    """The single ``error:`` line of a failed command; no traceback around it."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def _fails_with(capsys, code: int, words: list[str], *args) -> str:
    got, stderr = _backend(capsys, *args)
    line = _one_error_line(stderr)
    assert stderr.strip() == line  # nothing but that line
    assert got == code, stderr
    for word in words:
        assert word in line, line
    return line


@pytest.fixture
def footage(tmp_path):
    """Good and broken footage, one file each."""
    folder = tmp_path / "footage"
    folder.mkdir()
    cv2.imwrite(str(folder / "still.png"), np.full((48, 64, 3), 120, np.uint8))
    (folder / "zero.png").write_bytes(b"")
    (folder / "header.png").write_bytes(b"GIF89a" + bytes(200))  # not the format its name says
    (folder / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    with wave.open(str(folder / "sound.wav"), "wb") as sound:  # audio only, in a .mp4 name
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(struct.pack("<800h", *[0] * 800))
    (folder / "sound.wav").rename(folder / "audio.mp4")
    (folder / "empty").mkdir()
    return folder


@pytest.fixture
def smplx_installed(smplx_asset):
    """The synthetic SMPL-X asset (no MediaPipe landmark sets) in this test's PEAR_HOME."""
    registry.install(smplx_asset)
    return smplx_asset.asset_id


@pytest.mark.parametrize("name, words", [
    ("missing.png", ["missing.png", "no such file"]),
    ("zero.png", ["zero.png", "empty (0 bytes)"]),
    ("header.png", ["header.png", "cannot be decoded as an image", "re-export"]),
    ("garbage.mp4", ["garbage.mp4", "cannot be opened as a video", "re-export"]),
    ("audio.mp4", ["audio.mp4", "no video stream"]),
    ("empty", ["empty", "holds no images"]),
])
def test_broken_footage_is_a_clip_error_naming_the_file(capsys, footage, smplx_installed, name,
                                                         words):
    with pytest.raises(FootageError) as refused:
        open_footage(footage / name)
    assert all(word in str(refused.value) for word in words)
    _fails_with(capsys, CLIP, words, "fit", footage / name, "-o", footage / "r.npz",
                "--asset", smplx_installed)
    assert not (footage / "r.npz").exists()


def test_set_up_errors_of_fit(capsys, footage, smplx_installed, tmp_path):
    still = footage / "still.png"
    _fails_with(capsys, SETUP, ["no body-model asset 'nope'", "backend models install"],
                "fit", still, "-o", tmp_path / "r.npz", "--asset", "nope")
    # The reported bug: a traceback from the tracker; now named before any frame is decoded.
    _fails_with(capsys, SETUP, [f"body model {smplx_installed!r} has no MediaPipe landmark set",
                                "backend models install"],
                "fit", still, "-o", tmp_path / "r.npz", "--asset", smplx_installed)
    _fails_with(capsys, SETUP, ["no regressor checkpoint in", "tracker estimator"],
                "fit", still, "-o", tmp_path / "r.npz", "--asset", smplx_installed,
                "--estimator", "regressor")

    broken = registry.asset_path("broken")
    broken.write_bytes(b"\x00" * 64)
    _fails_with(capsys, SETUP, ["broken.npz", "not a readable asset"],
                "fit", still, "-o", tmp_path / "r.npz", "--asset", "broken")


def test_models_list_copes_with_a_corrupt_asset(capsys, smplx_installed):
    registry.asset_path("broken").write_bytes(b"\x00" * 64)
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "broken: UNREADABLE" in out and f"{smplx_installed} [smplx]" in out


def test_serve_refuses_bad_settings(capsys):
    _fails_with(capsys, SETUP, ["without CURVE keys", "backend keys generate"],
                "serve", "--bind", "tcp://0.0.0.0:5555")
    _fails_with(capsys, INPUT, ["--gpu takes a CUDA device index", "'x'"], "serve", "--gpu", "x")


def test_eval_without_annotations_is_an_input_error(capsys, footage, smplx_installed):
    _fails_with(capsys, INPUT, ["no COCO-WholeBody annotation file", "--data"],
                "eval", "coco-wholebody", "--data", footage / "empty", "--asset", smplx_installed)


def test_a_corrupt_result_file_is_an_input_error(tmp_path):
    from backend.results import ResultsError, load_results

    path = tmp_path / "result.npz"
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ResultsError) as refused:
        load_results(path)
    assert exit_code(refused.value) == INPUT
    assert describe(refused.value).startswith(f"error: {path}: not a readable result")
    assert "\n" not in describe(refused.value)


def test_bake_goes_on_after_a_broken_clip_and_stops_at_a_set_up_error(capsys, footage,
                                                                      smplx_installed, tmp_path,
                                                                      bpy_module):
    code, stderr = _backend(capsys, "bake", footage / "zero.png", footage / "header.png",
                            "--out", tmp_path / "out", "--asset", smplx_installed)
    assert code == EXIT_BATCH_PARTLY_FAILED and "Traceback" not in stderr
    assert "zero.png: the file is empty" in stderr and "header.png: cannot be decoded" in stderr
    assert "2 of 2 clip(s) failed" in stderr

    # No landmark sets: nothing can be baked with this body model, so the batch stops.
    code, stderr = _backend(capsys, "bake", footage / "still.png", footage / "zero.png",
                            "--out", tmp_path / "out", "--asset", smplx_installed)
    line = _one_error_line(stderr)
    assert code == SETUP and "no MediaPipe landmark set" in line
    assert "[2/2]" not in capsys.readouterr().out + stderr


@pytest.mark.slow
def test_bake_of_a_good_and_a_broken_clip_bakes_the_good_one(capsys, footage, open_asset,
                                                              tmp_path, bpy_module):
    registry.install(open_asset)
    clip = write_demo_clip(open_asset, 2, tmp_path / "walk.mp4")
    code = main(["bake", str(footage / "zero.png"), str(clip), "--out", str(tmp_path / "out"),
                 "--max-frames", "2"])
    captured = capsys.readouterr()
    assert code == EXIT_BATCH_PARTLY_FAILED and "Traceback" not in captured.err
    assert "zero.png: the file is empty" in captured.err
    assert "1 of 2 clip(s) failed" in captured.err
    assert "baked 2 frames" in captured.out and (tmp_path / "out" / "walk.blend").is_file()


def test_an_unexpected_exception_is_called_a_bug(capsys, monkeypatch):
    def broken() -> list:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(registry, "summaries", broken)  # a fault no check anticipates
    code, stderr = _backend(capsys, "models", "list")
    assert code == EXIT_BUG and "Traceback" in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: this is a bug in PEAR "
                                                      "(ZeroDivisionError)")


def test_user_triggered_checks_raise_typed_errors():
    from backend.device import choose_device
    from backend.perception.holistic import ClipDetector
    from backend.perception.people import PersonFollower

    with pytest.raises(FootageError, match="no frame of the footage could be decoded"):
        ClipDetector(64, 48).finish()
    with pytest.raises(InputError, match="person must be 1"):
        PersonFollower(lambda image: np.full(4, np.nan), person=9)
    with pytest.raises(InputError, match="--gpu takes"):
        choose_device("first")


def _defined_exceptions(module) -> list[type]:
    return [value for value in vars(module).values()
            if inspect.isclass(value) and issubclass(value, BaseException)
            and value.__module__ == module.__name__]


def test_every_exception_class_is_a_pear_error_of_one_kind():
    found = []
    for info in pkgutil.walk_packages(backend.__path__, "backend."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # needs bpy or another optional package
            continue
        found += _defined_exceptions(module)
    from pear_recover_mesh import footage, local_backend

    script = importlib.util.spec_from_file_location(
        "build_extension", Path(__file__).resolve().parents[1] / "scripts" / "build_extension.py")
    build_extension = importlib.util.module_from_spec(script)
    script.loader.exec_module(build_extension)
    found += [footage.FootageError, local_backend.LocalBackendError, build_extension.BuildError]
    assert len(found) >= 25
    kinds = (SetupError, InputError, ClipError)
    for error in found:
        assert issubclass(error, PearError), error
        if error not in (PearError, *kinds) and error.__name__ != "BodyModelError":
            assert issubclass(error, kinds), error
    assert footage.FootageError is FootageError  # the add-on's is the backend's


def test_hello_skips_and_reports_a_broken_asset(tmp_path, open_asset, smplx_asset):
    from backend.body.asset import save_asset
    from backend.server.client import BackendError, Client
    from backend.server.process import serve_process

    home = tmp_path / "home"
    save_asset(open_asset, home / "assets" / "open.npz")
    save_asset(smplx_asset, home / "assets" / "smplx.npz")
    (home / "assets" / "broken.npz").write_bytes(b"\x00" * 64)
    with serve_process(home) as server, Client(server.endpoint, timeout=60) as client:
        (hello,) = client.hello()
        assert sorted(hello["assets"]) == ["open", "smplx"]
        (unreadable,) = hello["assets_unreadable"]
        assert unreadable["id"] == "broken" and "not a readable asset" in unreadable["reason"]
        for asset, why in (("broken", "not a readable asset"),
                           ("smplx", "no MediaPipe landmark set")):
            with pytest.raises(BackendError, match=why) as refused:
                client.open_session(asset=asset)
            assert refused.value.code == "unavailable"
        client.open_session(asset="smplx", estimator="detector").cancel()


def test_bake_retarget_mistakes_are_named_before_any_fitting(capsys, footage, tmp_path,
                                                             bpy_module):
    clip = footage / "still.png"
    code, stderr = _backend(capsys, "bake", clip, "--out", tmp_path, "--retarget", "mixamo")
    assert code == INPUT and "--retarget PRESET and --target-rig FILE go together" in stderr
    code, stderr = _backend(capsys, "bake", clip, "--out", tmp_path, "--retarget", "mixamo",
                            "--target-rig", tmp_path / "hero.blend")
    assert code == SETUP and "hero.blend does not exist" in _one_error_line(stderr)
    (tmp_path / "hero.blend").write_bytes(b"")
    code, stderr = _backend(capsys, "bake", clip, "--out", tmp_path, "--retarget", "cartoon",
                            "--target-rig", tmp_path / "hero.blend")
    line = _one_error_line(stderr)
    assert code == SETUP and "no such preset" in line and "'mixamo'" in line


def test_ray_mistakes_are_named_before_any_work(capsys, footage, tmp_path, monkeypatch):
    clip, out = footage / "still.png", tmp_path / "out"
    code, stderr = _backend(capsys, "bake", clip, "--out", out, "--ray", "127.0.0.1:9")
    line = _one_error_line(stderr)
    assert code == SETUP and "nothing answers there" in line and "ray start --head" in line
    code, stderr = _backend(capsys, "bake", clip, "--out", out, "--ray", "headnode")
    assert code == SETUP and "host:port" in _one_error_line(stderr)
    code, stderr = _backend(capsys, "fit", clip, "-o", tmp_path / "r.npz", "--ray",
                            "--overlay", tmp_path / "o.mp4")
    assert code == INPUT and "result file only" in _one_error_line(stderr)
    monkeypatch.setitem(sys.modules, "ray", None)  # as where the [cluster] extra is missing
    code, stderr = _backend(capsys, "bake", clip, "--out", out, "--ray")
    assert code == SETUP and "pip install -e '.[cluster]'" in _one_error_line(stderr)
    assert not list(out.glob("*.blend"))
