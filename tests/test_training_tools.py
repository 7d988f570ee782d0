"""pear-train's tools around the trainer: plot (a run's curves as a PNG), pseudo-label (the
tracker as teacher: footage -> shards) and the pieces of bench."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
from PIL import Image

from training.cli import main as pear_train
from training.errors import TrainingDataError
from training.plot import DPI, SIZE_INCHES, plot_run

from .footage_support import write_demo_clip
from .training_support import forward_of_records


def _write_log(run: Path, rows: list[dict]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(run / "log.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)


def test_plot_draws_a_run_log_with_validation(tmp_path):
    rows = [{"step": s, "loss": 2.0 / s, "kp2d": 0.1 / s, "kp3d": 1.5 / s, "lr": 1e-3,
             "img_s": 30.0} for s in range(1, 21)]
    rows += [{"step": 10, "val_mpjpe_mm": 250.0}, {"step": 20, "val_mpjpe_mm": 180.0}]
    _write_log(tmp_path / "run", rows)
    out = tmp_path / "elsewhere" / "curves.png"
    assert pear_train(["plot", str(tmp_path / "run"), "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.size == (SIZE_INCHES[0] * DPI, SIZE_INCHES[1] * DPI)
        assert len(image.convert("RGB").getcolors(1 << 16) or ()) > 20  # curves, not a blank canvas


def test_plot_defaults_into_the_run_folder(tmp_path):
    _write_log(tmp_path, [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}])
    assert plot_run(tmp_path) == tmp_path / "curves.png"
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_plot_names_a_missing_or_empty_log(tmp_path, capsys):
    with pytest.raises(TrainingDataError, match=str(tmp_path / "log.csv")):
        plot_run(tmp_path)
    (tmp_path / "log.csv").write_text("")
    with pytest.raises(TrainingDataError, match="log.csv.*empty"):
        plot_run(tmp_path)
    assert pear_train(["plot", str(tmp_path)]) != 0
    assert "log.csv" in capsys.readouterr().err


# -- pseudo-label -------------------------------------------------------------------------------

PSEUDO_FRAMES = 4


@pytest.fixture(scope="module")
def pseudo_labelled(server_home, open_asset, tmp_path_factory):
    """A 4-frame clip of the open asset, rendered by the project, pseudo-labelled."""
    folder = tmp_path_factory.mktemp("pseudo")
    clip = write_demo_clip(open_asset, PSEUDO_FRAMES, folder / "walk.mp4")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PEAR_HOME", str(server_home))
        assert pear_train(["pseudo-label", str(clip), "--out", str(folder / "labels"),
                           "--shard-size", "3"]) == 0
    return folder / "labels"


def test_pseudo_labels_load_and_project_consistently(pseudo_labelled, open_asset, open_model):
    from training.data.shards import ShardSamples

    report = json.loads((pseudo_labelled / "pseudo_labels.json").read_text())["clips"][0]
    samples = ShardSamples(pseudo_labelled)
    assert report["frames"] == PSEUDO_FRAMES
    assert len(samples) == report["kept"] >= PSEUDO_FRAMES - 1  # the render fits well
    assert report["kept"] + report["no_person"] + report["over_error"] == PSEUDO_FRAMES
    records = [samples.record(i) for i in range(len(samples))]
    first = records[0].sample
    assert first.image.shape == (256, 192, 4) and (first.image[..., 3] == 255).all()
    assert first.image[..., :3].std() > 5  # a real crop of the person, not a blank
    assert set(first.params) == {p.name for p in open_asset.param_spec}
    # The body is detected in every kept frame, so its keypoints are trusted.
    assert (first.keypoints2d["mediapipe_pose33"][:, 2] == 1).all()

    prediction, batch = forward_of_records(records, open_asset, open_model)
    for name, labels in batch.keypoints2d.items():
        error = (prediction.keypoints2d[name] - labels[..., :2].double()).abs().max()
        assert error < 1e-3, f"{name}: {error}"
    assert (prediction.joints3d - batch.joints3d.double()).abs().max() < 1e-3
    # The keypoints lie inside the crop they were cut around.
    assert batch.keypoints2d["mediapipe_pose33"][..., 1].abs().max() < 0.5


def test_pseudo_label_drops_frames_over_the_error_threshold(pseudo_labelled, open_asset):
    """The clip's fit with a threshold no fit meets keeps no frame, and counts why."""
    from backend.body.model import BodyModel
    from backend.results import load_results
    from training.pseudo_label import FITS, label_frames

    (fit,) = (pseudo_labelled / FITS).iterdir()  # the teacher's fit, kept beside the labels
    results = load_results(fit)
    model = BodyModel(open_asset).double()
    labels, report = label_frames(results, model, max_error=1.0)
    assert len(labels) == report.kept >= PSEUDO_FRAMES - 1
    labels, report = label_frames(results, model, max_error=1e-6)
    assert labels == [] and report.kept == 0
    assert report.over_error + report.no_person == PSEUDO_FRAMES and report.over_error > 0


def test_joint_parts():
    from training.pseudo_label import joint_part

    assert [joint_part(n) for n in ("left_index2", "right_thumb1", "jaw", "left_eye_smplhf",
                                    "left_wrist", "pelvis")] == [
        "left_hand", "right_hand", "face", "face", "pose", "pose"]


# -- bench (its pieces; the whole bench takes minutes) -------------------------------------------

def test_timed_rate_counts_items_after_the_warm_up():
    from training.bench import timed_rate

    calls = []

    def work() -> int:
        calls.append(time.perf_counter())
        time.sleep(0.3 if len(calls) == 1 else 0.02)  # a slow first call is left out
        return 4

    rate = timed_rate(work, repeats=3)
    assert len(calls) == 4
    assert 100 < rate <= 200


def test_logged_rate_leaves_out_the_start_up_steps(tmp_path):
    from training.bench import DDP_SKIP, _logged_rate

    _write_log(tmp_path, [{"step": s, "loss": 1.0, "img_s": 1.0 if s <= DDP_SKIP else 10.0}
                          for s in range(1, DDP_SKIP + 4)] + [{"step": 4, "val_x": 3.0}])
    assert _logged_rate(tmp_path) == 10.0


def test_bench_loader_runs_on_shards(pseudo_labelled, open_asset):
    from training.bench import bench_loader

    assert bench_loader(open_asset, pseudo_labelled) > 0


def test_bench_times_the_adapters_step_with_the_network_frozen(pseudo_labelled, open_asset):
    from training.bench import bench_train_step

    assert bench_train_step(open_asset, pseudo_labelled, "vit_micro", adapted=True) > 0
