"""`backend avatar`: a rendered person animated by a motion result, end to end through the
real detector and fit, with a small trained renderer; bad input named."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from backend.results import save_results

from .avatar_scene import SIZE, avatar_scene


def _backend(*args, home):
    import os

    env = {**os.environ, "PEAR_HOME": str(home), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def scene(open_asset, smoke_renderer, tmp_path_factory):
    """A renderer trained a few steps, a rendered source image, and a 3-frame motion whose
    footage (its rendered frames) is where its result file says."""
    folder = tmp_path_factory.mktemp("avatar_command")
    images, motion = avatar_scene(open_asset, folder)
    source = folder / "source.png"
    cv2.imwrite(str(source), cv2.cvtColor(images[0], cv2.COLOR_RGB2BGR))
    save_results(motion, folder / "motion.npz")
    return folder, smoke_renderer, source


def test_backend_avatar_renders_the_motion_beside_its_footage(server_home, scene):
    folder, checkpoint, source = scene
    out = folder / "avatar.mp4"
    result = _backend("avatar", str(source), "--motion", str(folder / "motion.npz"), "--out",
                      str(out), "--checkpoint", str(checkpoint), "--side-by-side",
                      home=server_home)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 frames" in result.stdout
    video = cv2.VideoCapture(str(out))
    count = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = video.read()
    assert ok and count == 3 and frame.shape == (512, 768, 3)  # footage | avatar, 2x
    avatar_half = frame[:, 384:]
    assert avatar_half.mean() > 5  # the person is drawn, not an empty frame


def test_backend_avatar_names_bad_input(server_home, scene, tmp_path):
    folder, checkpoint, source = scene
    motion = folder / "motion.npz"
    missing = _backend("avatar", str(source), "--motion", str(motion), "--out",
                       str(tmp_path / "a.mp4"), "--checkpoint", str(tmp_path / "none"),
                       home=server_home)
    assert missing.returncode == 3 and "no renderer checkpoint" in missing.stderr
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.zeros((*SIZE, 3), np.uint8))
    nobody = _backend("avatar", str(blank), "--motion", str(motion), "--out",
                      str(tmp_path / "b.mp4"), "--checkpoint", str(checkpoint),
                      home=server_home)
    assert nobody.returncode == 4 and "bug" not in nobody.stderr, nobody.stderr[-2000:]
    from backend.results import load_results

    other = load_results(motion)
    other.spec_hash = "another"
    save_results(other, tmp_path / "other.npz")
    wrong = _backend("avatar", str(source), "--motion", str(tmp_path / "other.npz"), "--out",
                     str(tmp_path / "c.mp4"), "--checkpoint", str(checkpoint),
                     home=server_home)
    assert wrong.returncode == 2 and "recovered with body model" in wrong.stderr
