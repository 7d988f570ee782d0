"""``backend bake --ray`` with a real local Ray (2 CPUs, started by the command as a user's
would be): the same outputs as the local bake, a broken clip reported while the others are
done, a rerun that skips finished clips, a worker killed mid-clip whose task runs again, and
Ctrl-C leaving nothing half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.cluster import outputs
from backend.cluster.ray_run import worker_processes
from backend.results import load_results

from .footage_support import write_demo_clip

pytest.importorskip("ray", reason="the [cluster] extra (ray) is not installed")

CLIPS = {"a": 4, "b": 5, "c": 6, "d": 7}  # frames each: different motions, short fits
LONG = 20  # frames of the clip whose worker is killed: its fit takes long enough to hit


def _bake(clips: list[Path], out: Path, home: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PEAR_HOME": str(home), "OMP_NUM_THREADS": "1"}
    # Ctrl-C as a terminal sends it, whatever this run inherited: a shell's background job
    # starts with SIGINT ignored, and the bake would inherit that and never see the test's.
    return subprocess.Popen([sys.executable, "-m", "backend.cli", "bake", *map(str, clips),
                             "--out", str(out), "--npz", "--ray", *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out + err


def _report(out: Path) -> dict[str, dict]:
    return {row["clip"]: row for row in json.loads((out / "report.json").read_text())["clips"]}


@pytest.fixture(scope="module")
def footage(tmp_path_factory, open_asset) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cluster_footage")
    clips = {name: write_demo_clip(open_asset, frames, folder / f"{name}.mp4")
             for name, frames in CLIPS.items()}
    broken = folder / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))  # a header, no stream
    return {**clips, "broken": broken}


@pytest.fixture(scope="module")
def ray_bake(footage, server_home, tmp_path_factory) -> tuple[int, str, Path]:
    out = tmp_path_factory.mktemp("ray_bake")
    order = [footage[n] for n in ("a", "b", "broken", "c", "d")]
    code, log = _finish(_bake(order, out, server_home))
    return code, log, out


@pytest.fixture(scope="module")
def local_bake(footage, server_home, bpy_module, tmp_path_factory) -> Path:
    from backend.body import registry
    from backend.pipeline.bake import bake_clip

    out = tmp_path_factory.mktemp("local_bake")
    # A Ray worker with one CPU runs torch on one thread; so does this bake, or sums taken in
    # another order would differ in the last digits (~5e-6 rad here on two threads).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PEAR_HOME", str(server_home))
            asset = registry.load("open")
            for name in CLIPS:
                bake_clip(footage[name], out, asset, formats=("npz",))
    finally:
        torch.set_num_threads(threads)
    return out


def _keys(bpy, path: Path) -> dict[tuple[str, int], np.ndarray]:
    """Every keyframe of the saved scene's actions, by (data path, index)."""
    from bpy_extras import anim_utils

    bpy.ops.wm.open_mainfile(filepath=str(path))
    keys = {}
    for action in bpy.data.actions:
        for slot in action.slots:
            bag = anim_utils.action_get_channelbag_for_slot(action, slot)
            for curve in bag.fcurves if bag is not None else ():
                points = np.array([tuple(p.co) for p in curve.keyframe_points])
                keys[(curve.data_path, curve.array_index)] = points
    return keys


def test_clips_baked_on_ray_equal_the_local_bake(ray_bake, local_bake, bpy_module):
    code, log, out = ray_bake
    report = _report(out)
    for name in CLIPS:
        assert report[name]["status"] == "done", log
        ray_results, local = load_results(out / f"{name}.npz"), load_results(
            local_bake / f"{name}.npz")
        np.testing.assert_array_equal(ray_results.frames, local.frames)
        assert ray_results.params.keys() == local.params.keys()
        for key, value in local.params.items():  # the tracker on CPU: the very same numbers
            np.testing.assert_array_equal(ray_results.params[key], value, err_msg=key)
        np.testing.assert_array_equal(ray_results.cam_t, local.cam_t)
        ray_keys, local_keys = (_keys(bpy_module, folder / f"{name}.blend")
                                for folder in (out, local_bake))
        assert ray_keys.keys() == local_keys.keys() and len(ray_keys) > 100
        for curve, points in local_keys.items():
            np.testing.assert_allclose(ray_keys[curve], points, atol=1e-6, err_msg=str(curve))


def test_a_broken_clip_is_reported_and_the_others_are_done(ray_bake):
    code, log, out = ray_bake
    assert code == 1, log  # some clips failed, the rest baked
    broken = _report(out)["broken"]
    assert broken["status"] == "failed" and "cannot be opened as a video" in broken["error"]
    assert "broken" in log and "failed: " in log  # the summary table says it too
    assert not (out / "broken.blend").exists() and not (out / outputs.STAGING).exists()
    assert sorted(p.name for p in out.glob("*.done.json")) == [f"{n}.done.json" for n in CLIPS]


def test_a_rerun_skips_the_clips_already_done(ray_bake, footage, server_home):
    code, log, out = ray_bake
    before = {n: (out / f"{n}.blend").stat().st_mtime_ns for n in CLIPS}
    code, log = _finish(_bake([footage[n] for n in CLIPS], out, server_home))
    assert code == 0, log
    assert {row["status"] for row in _report(out).values()} == {"skipped"}
    assert {n: (out / f"{n}.blend").stat().st_mtime_ns for n in CLIPS} == before


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether process ``pid`` was started, directly or not, by ``ancestor`` (a local Ray's
    workers descend from the driver that started it)."""
    while pid > 1:
        if pid == ancestor:
            return True
        try:  # the parent's pid is the 2nd field after the command's ")"
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
    return False


def _wait_for_task(process: subprocess.Popen, task: str) -> int:
    """A Ray worker of this bake's own running ``task``: not one an earlier test's run left
    still going (a signal sent on seeing that one reached the driver before its clips began,
    and the bake ran to the end)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        busy = [pid for pid, title in worker_processes().items()
                if task in title and _descends_from(pid, process.pid)]
        if busy:
            return busy[0]
        time.sleep(0.1)
    raise AssertionError(f"no worker ran {task}: {_finish(process)[1]}")


@pytest.fixture(scope="module")
def long_clip(open_asset, tmp_path_factory) -> Path:
    return write_demo_clip(open_asset, LONG, tmp_path_factory.mktemp("long") / "long.mp4")


def test_a_worker_killed_mid_clip_is_restarted_and_the_clip_completes(long_clip, server_home,
                                                                      tmp_path):
    process = _bake([long_clip], tmp_path / "out", server_home, "--workers", "1")
    victim = _wait_for_task(process, "fit_part")
    time.sleep(1.0)  # well into the fit
    os.kill(victim, signal.SIGKILL)
    code, log = _finish(process)
    assert code == 0, log
    row = _report(tmp_path / "out")["long"]
    assert row["status"] == "done" and row["frames"] == LONG
    assert len(load_results(tmp_path / "out" / "long.npz").frames) == LONG
    assert not Path(f"/proc/{victim}").exists()


def test_ctrl_c_stops_the_run_and_leaves_nothing_half_written(long_clip, footage, server_home,
                                                             tmp_path):
    out = tmp_path / "out"
    process = _bake([long_clip, footage["a"]], out, server_home, "--workers", "1")
    _wait_for_task(process, "fit_part")
    process.send_signal(signal.SIGINT)
    code, log = _finish(process, timeout=120)
    assert code == 130, log
    assert "cancelled" in log
    assert not (out / outputs.STAGING).exists()
    assert not list(out.glob("*.done.json")) and not list(out.glob("*.blend"))
    deadline = time.monotonic() + 30  # the actors go with the run
    while worker_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not worker_processes()


def test_a_long_clip_is_fitted_in_parts_on_several_workers_and_joined(long_clip, server_home,
                                                                      tmp_path):
    env = {**os.environ, "PEAR_HOME": str(server_home), "OMP_NUM_THREADS": "1"}
    result = tmp_path / "long.npz"
    done = subprocess.run([sys.executable, "-m", "backend.cli", "fit", str(long_clip), "-o",
                           str(result), "--ray", "--part-frames", "8"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    joined = load_results(result)
    np.testing.assert_array_equal(joined.frames, np.arange(LONG))
    assert joined.info["parts"] == 3  # frames 0-7, 8-15 (fitted from 0), 16-19 (from 8)
    assert joined.params["betas"].shape[0] == 1  # one body for the clip
    report = json.loads(result.with_suffix(".report.json").read_text())
    assert report["clips"][0]["status"] == "done" and report["clips"][0]["frames"] == LONG
