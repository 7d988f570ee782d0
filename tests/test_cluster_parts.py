"""A split clip and its parts joined back (``pipeline.parts``), and a cluster clip's outputs
published whole with a record a rerun trusts (``cluster.outputs``): pure logic and files."""

from __future__ import annotations

import numpy as np
import pytest

from backend.cluster import outputs
from backend.cluster.work import Settings, Survey, parts_of
from backend.pipeline.parts import Part, join_parts, plan_parts
from backend.results import ClipResults


def test_parts_cover_the_clip_each_fitting_from_the_overlap_before_it():
    assert plan_parts(40, 16, 8) == [Part(0, 0, 16, 0), Part(1, 16, 32, 8), Part(2, 32, 40, 24)]
    assert plan_parts(40, 0, 8) == [Part(0, 0, 40, 0)]
    assert plan_parts(10, 4, 8) == [Part(0, 0, 4, 0), Part(1, 4, 8, 0), Part(2, 8, 10, 4)]
    for bad in [(0, 10, 8), (10, 1, 0), (10, -3, 0), (10, 4, -1)]:
        with pytest.raises(ValueError):
            plan_parts(*bad)


def test_a_clip_is_split_for_spare_workers_and_only_the_most_prominent_persons():
    survey = Survey(frames=100, people=[None])
    assert len(parts_of(survey, Settings("open", part_frames=30))) == 4
    assert len(parts_of(survey, Settings("open", part_frames=30), spare_workers=False)) == 1
    assert len(parts_of(survey, Settings("open", part_frames=30, person=2))) == 1
    assert len(parts_of(survey, Settings("open", part_frames=0))) == 1


def _clip(frames: np.ndarray, offset: float = 0.0) -> ClipResults:
    """Per-frame values that are a function of the frame (plus ``offset``), a per-subject row."""
    t = frames.astype(np.float32)[:, None]
    return ClipResults(
        asset_id="open", spec_hash="x", frames=frames, times=frames / 30.0,
        params={"body_pose": np.repeat(t * 0.01 + offset, 6, 1).reshape(-1, 2, 3),
                "betas": np.full((1, 4), 0.5 + offset, np.float32)},
        cam_t=np.concatenate([t, t, t + 3.0], 1) * 0.1, focal=500.0, center=(32.0, 24.0),
        width=64, height=48, detections={"pose": np.repeat(t[:, :, None], 3, 2) + offset},
        info={"detect_s": 1.0, "fit_s": 2.0}, contacts=np.zeros((len(frames), 4), np.uint8))


def test_parts_of_one_motion_join_into_that_motion():
    whole = _clip(np.arange(40))
    parts = [_clip(np.arange(p.fit_from, p.stop)) for p in plan_parts(40, 16, 8)]
    joined = join_parts(parts)
    np.testing.assert_array_equal(joined.frames, whole.frames)
    np.testing.assert_allclose(joined.params["body_pose"], whole.params["body_pose"], atol=1e-6)
    np.testing.assert_allclose(joined.cam_t, whole.cam_t, atol=1e-6)
    assert joined.params["betas"].shape == (1, 4)
    assert joined.detections["pose"].shape == (40, 1, 3) and joined.contacts.shape == (40, 4)
    assert joined.info["parts"] == 3 and joined.info["fit_s"] == 6.0


def test_a_later_part_fades_in_over_the_frames_both_hold():
    earlier, later = _clip(np.arange(0, 16)), _clip(np.arange(12, 30), offset=1.0)
    joined = join_parts([earlier, later])
    gap = joined.params["body_pose"][:, 0, 0] - earlier.params["body_pose"][0, 0, 0] - \
        0.01 * joined.frames  # how far each frame is towards ``later``
    np.testing.assert_allclose(gap[:12], 0.0, atol=1e-6)
    np.testing.assert_allclose(gap[12:16], [0.2, 0.4, 0.6, 0.8], atol=1e-6)  # rising
    np.testing.assert_allclose(gap[16:], 1.0, atol=1e-6)
    # The body is the first part's; detections of shared frames are the earlier part's.
    np.testing.assert_array_equal(joined.params["betas"], earlier.params["betas"])
    np.testing.assert_array_equal(joined.detections["pose"][12:16, 0, 0], np.arange(12, 16))


def test_published_outputs_are_trusted_until_a_file_changes_or_the_settings_do(tmp_path):
    key = Settings("open", formats=("npz",)).key("bake")
    assert key == Settings("open", formats=("npz",), part_frames=50).key("bake")
    assert key != Settings("open", formats=("fbx",)).key("bake")
    staging = outputs.staging_folder(tmp_path, "walk")
    (staging / "walk.blend").write_bytes(b"blend" * 10)
    (staging / "walk.npz").write_bytes(b"npz")
    published = outputs.publish({"blend": staging / "walk.blend", "npz": staging / "walk.npz"},
                                tmp_path, "walk", key, {"frames": 12})
    assert published["blend"] == tmp_path / "walk.blend"
    assert not (tmp_path / outputs.STAGING).exists()
    record = outputs.finished(tmp_path, "walk", key)
    assert record["frames"] == 12 and record["files"]["npz"]["bytes"] == 3
    assert outputs.finished(tmp_path, "walk", "another") is None
    (tmp_path / "walk.npz").write_bytes(b"cut")  # same size: still trusted ...
    assert outputs.finished(tmp_path, "walk", key) is not None
    (tmp_path / "walk.npz").write_bytes(b"cu")  # ... cut short: not
    assert outputs.finished(tmp_path, "walk", key) is None
    outputs.forget(tmp_path, "walk")
    assert not outputs.record_path(tmp_path, "walk").exists()


def test_an_attempt_that_never_finished_leaves_nothing_a_rerun_trusts(tmp_path):
    staging = outputs.staging_folder(tmp_path, "run")
    (staging / "run.blend").write_bytes(b"half")
    assert outputs.finished(tmp_path, "run", "k") is None
    assert not (tmp_path / "run.blend").exists()
    outputs.clear_staging(tmp_path)
    assert not (tmp_path / outputs.STAGING).exists()



def test_workers_take_a_gpu_each_only_when_the_regressor_runs_on_a_cluster_with_gpus():
    from backend.cluster.ray_run import worker_resources

    tracker, regressor = Settings("open"), Settings("open", estimator="regressor+tracker")
    assert worker_resources(tracker, {"CPU": 16.0, "GPU": 4.0}) == ({"num_cpus": 1}, 16)
    assert worker_resources(regressor, {"CPU": 16.0, "GPU": 4.0}) == (
        {"num_cpus": 1, "num_gpus": 1}, 4)
    assert worker_resources(regressor, {"CPU": 2.0}) == ({"num_cpus": 1}, 2)
