"""Standard-dataset readers (training/data/readers): each reads fixtures this file writes in
the published format (COCO-WholeBody json + JPEG, mmhuman3d/SPIN npz + image, an SMPL-X
parameter npz + image); Eq. 4's SMPL -> SMPL-X offset; the weighted mixture and
``open_sources``. The last tests read the small real samples in ../shared/data/real and skip
without them; everything they show is also shown here on fixtures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from backend.body.model import BodyModel
from backend.body.rotations import axis_angle_to_matrix
from backend.evaluation.coco_wholebody import COCO17_FROM_POSE33
from training.data.mixing import MixedSource
from training.data.readers.coco_wholebody import CocoWholeBody
from training.data.readers.mmhuman3d import SPIN24_TO_POSE33, Mmhuman3dSamples
from training.data.readers.smpl_offset import BODY_JOINTS, rest_joints, tpose_offset
from training.data.readers.smplx_params import SmplxParamSamples
from training.data.sources import open_sources, parse_entry, smpl_pose_offset
from training.errors import TrainingDataError

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
WIDTH, HEIGHT = 320, 240
BOX_XYWH = (100.0, 40.0, 90.0, 160.0)  # x, y, w, h: the crop is 192 px tall, centred (145, 120)
DOT = (130.0, 80.0)  # a white dot drawn in the image and labelled as a keypoint


def _write_image(path: Path) -> None:
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    cv2.circle(image, (int(DOT[0]), int(DOT[1])), 4, (255, 255, 255), -1)
    cv2.imwrite(str(path), image)


def _crop_pixel(normalized: np.ndarray) -> tuple[int, int]:
    """Normalized crop units -> (row, column) in the 256x192 crop."""
    return round(normalized[1] * 256 + 128), round(normalized[0] * 256 + 96)


def _check_dot(sample, point: np.ndarray) -> None:
    # The keypoint and the image agree: the dot lies where the label says, in the crop.
    assert sample.image.shape == (256, 192, 3)
    row, col = _crop_pixel(point)
    assert sample.image[row, col].min() > 200
    assert sample.image[row, col + 20].max() < 30


# --- COCO-WholeBody ----------------------------------------------------------------------------

@pytest.fixture
def coco_folder(tmp_path) -> Path:
    _write_image(tmp_path / "000001.jpg")
    body = np.zeros((17, 3))
    body[5] = (*DOT, 2)  # left shoulder, visible
    body[6] = (150, 80, 1)  # right shoulder, labelled but hidden
    left = np.zeros((21, 3))
    left[0] = (120, 150, 1)
    person = {"id": 7, "image_id": 1, "bbox": list(BOX_XYWH), "iscrowd": 0,
              "keypoints": body.ravel().tolist(), "lefthand_kpts": left.ravel().tolist(),
              "righthand_kpts": [0.0] * 63, "face_kpts": [0.0] * 204}
    crowd = {**person, "id": 8, "iscrowd": 1}
    nothing = {**person, "id": 9, "keypoints": [0.0] * 51, "lefthand_kpts": [0.0] * 63}
    (tmp_path / "coco_wholebody_val_v1.0.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "000001.jpg", "width": WIDTH, "height": HEIGHT}],
        "annotations": [person, crowd, nothing]}))
    return tmp_path


def test_coco_wholebody_crops_people_and_maps_keypoints(coco_folder, open_asset):
    source = CocoWholeBody(coco_folder, open_asset)
    assert len(source) == 1  # the crowd and the unlabelled person are skipped
    sample = source[0]
    assert sample.id == "coco-wholebody/7"
    assert sample.box_height == pytest.approx(160 * 1.2)
    assert sample.box_center == pytest.approx((145, 120))
    assert sample.focal == WIDTH and sample.principal_point == (WIDTH / 2, HEIGHT / 2)
    assert sample.params == {} and sample.joints3d is None
    pose = sample.keypoints2d["mediapipe_pose33"]
    shoulder = pose[COCO17_FROM_POSE33[5]]
    assert shoulder == pytest.approx([(130 - 145) / 192, (80 - 120) / 192, 1])
    assert pose[COCO17_FROM_POSE33[6], 2] == 1  # labelled though hidden
    assert (pose[:, 2] > 0).sum() == 2
    hand = sample.keypoints2d["mediapipe_hand_left"]
    assert hand[0] == pytest.approx([(120 - 145) / 192, (150 - 120) / 192, 1])
    assert "mediapipe_hand_right" not in sample.keypoints2d  # nothing labelled there
    _check_dot(sample, shoulder)


def test_coco_wholebody_errors_name_the_file(tmp_path, coco_folder, open_asset):
    with pytest.raises(TrainingDataError, match="no COCO-WholeBody annotation file"):
        CocoWholeBody(tmp_path / "nowhere", open_asset)
    bad = tmp_path / "other" / "bad_wholebody.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(TrainingDataError, match="bad_wholebody.json.*'annotations'"):
        CocoWholeBody(bad, open_asset)
    (coco_folder / "000001.jpg").unlink()
    with pytest.raises(TrainingDataError, match="000001.jpg: missing or not an image"):
        CocoWholeBody(coco_folder, open_asset)[0]


# --- mmhuman3d / SPIN npz ----------------------------------------------------------------------

def _spin_npz(folder: Path, pose: np.ndarray | None = None) -> Path:
    _write_image(folder / "S1_Walk_000001.jpg")
    part = np.zeros((1, 24, 3))
    part[0, 9] = (*DOT, 1)  # SPIN's left shoulder
    center = np.array([[145.0, 120.0]])
    arrays = {"imgname": np.array(["S1_Walk_000001.jpg"]), "center": center,
              "scale": np.array([0.96]), "part": part}
    if pose is not None:
        arrays |= {"pose": pose.reshape(1, 72), "shape": np.zeros((1, 10))}
    np.savez(folder / "h36m_train.npz", **arrays)
    return folder / "h36m_train.npz"


def test_mmhuman3d_spin_layout_keypoints(tmp_path, open_asset):
    source = Mmhuman3dSamples(_spin_npz(tmp_path), open_asset)
    assert len(source) == 1
    sample = source[0]
    assert sample.box_height == pytest.approx(192 * 1.2)  # scale 0.96 -> a 192 px box
    pose = sample.keypoints2d["mediapipe_pose33"]
    assert pose[11] == pytest.approx([(130 - 145) / 230.4, (80 - 120) / 230.4, 1])
    assert (pose[:, 2] > 0).sum() == 1
    assert sample.params == {} and sample.joints3d is None
    _check_dot(sample, pose[11])
    assert sorted(dict(SPIN24_TO_POSE33).values()) == sorted(set(dict(SPIN24_TO_POSE33)
                                                                  .values()))


def test_mmhuman3d_humandata_smpl_params_need_smplx_and_the_offset(tmp_path, open_asset,
                                                                   smplx_asset):
    (tmp_path / "imageFiles").mkdir()
    _write_image(tmp_path / "imageFiles" / "image_00001.jpg")
    rng = np.random.default_rng(0)
    smpl = {"global_orient": rng.normal(0, 0.3, (1, 3)),
            "body_pose": rng.normal(0, 0.3, (1, 23, 3)), "betas": np.zeros((1, 10))}
    np.savez(tmp_path / "pw3d_train.npz", image_path=np.array(["imageFiles/image_00001.jpg"]),
             bbox_xywh=np.array([BOX_XYWH]), smpl=np.array(smpl, dtype=object))
    offset = rng.normal(0, 0.05, (BODY_JOINTS, 3))
    plain = Mmhuman3dSamples(tmp_path / "pw3d_train.npz", open_asset, offset=offset)[0]
    assert plain.params == {} and plain.keypoints2d == {}  # the open asset: nothing from SMPL
    assert plain.box_center == pytest.approx((145, 120))
    labelled = Mmhuman3dSamples(tmp_path / "pw3d_train.npz", smplx_asset, offset=offset)[0]
    assert labelled.params["global_orient"] == pytest.approx(
        smpl["global_orient"] + offset[:1], abs=1e-6)
    assert labelled.params["body_pose"] == pytest.approx(
        smpl["body_pose"][0, :21] + offset[1:], abs=1e-6)
    assert "betas" not in labelled.params  # SMPL's shape space is not SMPL-X's
    no_offset = Mmhuman3dSamples(tmp_path / "pw3d_train.npz", smplx_asset)[0]
    assert no_offset.params == {}


def test_mmhuman3d_errors(tmp_path, open_asset):
    with pytest.raises(TrainingDataError, match="missing.npz: no such file"):
        Mmhuman3dSamples(tmp_path / "missing.npz", open_asset)
    np.savez(tmp_path / "odd.npz", images=np.array(["a.jpg"]))
    with pytest.raises(TrainingDataError, match="odd.npz: not a preprocessed.*"
                       "found \\['images'\\]"):
        Mmhuman3dSamples(tmp_path / "odd.npz", open_asset)
    np.savez(tmp_path / "mpii.npz", imgname=np.array(["a.jpg"]), center=np.zeros((1, 2)),
             scale=np.ones(1), part=np.zeros((1, 16, 3)))
    with pytest.raises(TrainingDataError, match="SPIN's is \\(N, 24, 3\\)"):
        Mmhuman3dSamples(tmp_path / "mpii.npz", open_asset)


# --- Eq. 4's offset ---------------------------------------------------------------------------

def _forward_kinematics(rest: np.ndarray, local: np.ndarray, parents) -> np.ndarray:
    """Joints of a skeleton with rest joints ``rest`` turned by ``local`` axis-angles."""
    world, posed = [np.eye(3)] * len(rest), rest.copy()
    for joint in range(1, len(rest)):
        parent = parents[joint]
        turn = axis_angle_to_matrix(torch.as_tensor(local[joint])).numpy()
        world[joint] = world[parent] @ turn
        posed[joint] = posed[parent] + world[parent] @ (rest[joint] - rest[parent])
    return posed


def test_tpose_offset_lays_smplx_bones_along_smpl(smplx_asset):
    from backend.body.joint_names import SMPLX_PARENTS

    smplx_rest = rest_joints(smplx_asset)[:BODY_JOINTS]
    # A stand-in SMPL T-pose: SMPL-X's bent a little at every joint, bones 5% longer.
    rng = np.random.default_rng(3)
    bends = rng.normal(0, 0.1, (BODY_JOINTS, 3))
    bends[0] = 0
    smpl_rest = _forward_kinematics(smplx_rest * 1.05, bends, SMPLX_PARENTS)
    offset = tpose_offset(smpl_rest, smplx_rest)
    assert offset[0] == pytest.approx(np.zeros(3))
    model = BodyModel(smplx_asset).double()
    with torch.no_grad():
        posed = model(global_orient=torch.as_tensor(offset[None, :1]),
                      body_pose=torch.as_tensor(offset[None, 1:])).joints[0].numpy()
    worst = 0.0
    for joint in range(1, BODY_JOINTS):
        parent = SMPLX_PARENTS[joint]
        ours, theirs = posed[joint] - posed[parent], smpl_rest[joint] - smpl_rest[parent]
        cosine = ours @ theirs / np.linalg.norm(ours) / np.linalg.norm(theirs)
        worst = max(worst, math.degrees(math.acos(min(1.0, cosine))))
    assert worst < 0.01
    untouched = tpose_offset(smplx_rest, smplx_rest)
    assert np.abs(untouched).max() < 1e-9


def test_smpl_model_file_gives_the_offset_for_smplx_only(tmp_path, smplx_asset, open_asset):
    from backend.body.joint_names import SMPLX_PARENTS

    smplx_rest = rest_joints(smplx_asset)[:BODY_JOINTS]
    smpl_rest = _forward_kinematics(smplx_rest, np.full((BODY_JOINTS, 3), 0.05), SMPLX_PARENTS)
    # A SMPL file whose 24 vertices are its joints (SMPL's two hand joints: the wrists).
    template = np.concatenate([smpl_rest, smpl_rest[20:22]])
    np.savez(tmp_path / "SMPL_NEUTRAL.npz", v_template=template, J_regressor=np.eye(24))
    offset = smpl_pose_offset(str(tmp_path / "SMPL_NEUTRAL.npz"), smplx_asset)
    assert offset == pytest.approx(tpose_offset(smpl_rest, smplx_rest))
    assert np.abs(offset).max() > 0.01
    assert smpl_pose_offset("", smplx_asset) is None
    with pytest.raises(TrainingDataError, match="'open' is not SMPL-X"):
        smpl_pose_offset(str(tmp_path / "SMPL_NEUTRAL.npz"), open_asset)


# --- SMPL-X parameter sets ---------------------------------------------------------------------

def test_smplx_params_become_labels_for_smplx_only(tmp_path, smplx_asset, open_asset):
    _write_image(tmp_path / "seq_000001.png")
    rng = np.random.default_rng(1)
    pose = rng.normal(0, 0.2, (1, 55, 3))
    pose[0, 0] = (math.pi, 0, 0)  # the camera frame's upright, facing the camera
    intrinsics = np.array([[[500.0, 0, 150], [0, 500, 110], [0, 0, 1]]])
    np.savez(tmp_path / "bedlam.npz", imgname=np.array(["seq_000001.png"]),
             center=np.array([[145.0, 120.0]]), scale=np.array([0.8]),
             pose_cam=pose.reshape(1, 165), shape=rng.normal(0, 1, (1, 11)),
             cam_int=intrinsics)
    sample = SmplxParamSamples(tmp_path / "bedlam.npz", smplx_asset)[0]
    assert sample.focal == 500 and sample.principal_point == (150, 110)
    assert sample.box_height == pytest.approx(160 * 1.2)
    params = sample.params
    assert params["global_orient"] == pytest.approx(np.zeros((1, 3)), abs=1e-6)
    assert params["body_pose"] == pytest.approx(pose[0, 1:22], abs=1e-6)
    assert params["left_hand_pose"] == pytest.approx(pose[0, 25:40], abs=1e-6)
    assert params["eye_pose"] == pytest.approx(pose[0, 23:25], abs=1e-6)
    assert params["betas"].shape == (10,)
    model = BodyModel(smplx_asset)
    model.prepare_params({k: torch.as_tensor(v)[None] for k, v in params.items()})
    assert SmplxParamSamples(tmp_path / "bedlam.npz", open_asset)[0].params == {}
    np.savez(tmp_path / "broken.npz", imgname=np.array(["x.png"]), center=np.zeros((1, 2)),
             scale=np.ones(1))
    with pytest.raises(TrainingDataError, match="broken.npz: not an SMPL-X parameter npz"):
        SmplxParamSamples(tmp_path / "broken.npz", smplx_asset)


# --- mixing and open_sources -------------------------------------------------------------------

class _Numbers:
    def __init__(self, name: str, count: int):
        self.name, self.count = name, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[str, int]:
        return self.name, index


def test_mixed_source_follows_weights_and_seed():
    sources = [_Numbers("a", 10), _Numbers("b", 1000), _Numbers("c", 5)]
    mixed = MixedSource(sources, [0.5, 0.5, 0.0], seed=4, length=4000)
    drawn = [mixed[i] for i in range(len(mixed))]
    names = [name for name, _ in drawn]
    assert names.count("c") == 0
    assert abs(names.count("a") / 4000 - 0.5) < 0.03  # by weight, not by size
    small = sorted(index for name, index in drawn if name == "a")
    assert set(small) == set(range(10))  # the small source is cycled, all of it
    again = MixedSource(sources, [0.5, 0.5, 0.0], seed=4, length=4000)
    assert [again.locate(i) for i in range(4000)] == [mixed.locate(i) for i in range(4000)]
    other = MixedSource(sources, [0.5, 0.5, 0.0], seed=5, length=4000)
    assert [other.locate(i) for i in range(50)] != [mixed.locate(i) for i in range(50)]
    assert len(MixedSource(sources, [1, 1, 1])) == 1015
    with pytest.raises(TrainingDataError, match="one weight per source"):
        MixedSource(sources, [1.0])
    with pytest.raises(TrainingDataError, match="hold no samples"):
        MixedSource([_Numbers("e", 0)], [1.0])


def test_open_sources_reads_entries_and_mixture(tmp_path, coco_folder, open_asset):
    spin = _spin_npz(tmp_path)
    assert parse_entry(f"mmhuman3d:{spin}:/images") == ("mmhuman3d", str(spin), "/images")
    assert parse_entry("runs/data/train") == ("shards", "runs/data/train", None)
    entries = [f"coco-wholebody:{coco_folder}", f"mmhuman3d:{spin}"]
    joined = open_sources(entries, {}, open_asset)
    assert [joined[i].id for i in range(len(joined))] == ["coco-wholebody/7",
                                                          "mmhuman3d/h36m_train/0"]
    mixed = open_sources(entries, {"coco-wholebody": 3.0, "mmhuman3d": 1.0}, open_asset,
                         seed=2)
    assert isinstance(mixed, MixedSource) and len(mixed) == 2
    with pytest.raises(TrainingDataError, match="no weight for 'mmhuman3d"):
        open_sources(entries, {"coco-wholebody": 1.0}, open_asset)
    with pytest.raises(TrainingDataError, match="names \\['agora'\\]"):
        open_sources(entries, {"coco-wholebody": 1.0, "mmhuman3d": 1.0, "agora": 1.0},
                     open_asset)
    with pytest.raises(TrainingDataError, match="no synth manifest|manifest.json"):
        open_sources([str(tmp_path / "not_shards")], {}, open_asset)


# --- the real samples in ../shared/data/real ---------------------------------------------------

needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/real is not here")


@needs_real
def test_real_coco_wholebody(open_asset):
    source = CocoWholeBody(REAL / "mmpose/tests/data/coco/test_coco_wholebody.json", open_asset)
    assert len(source) == 12
    for sample in (source[i] for i in range(len(source))):
        pose = sample.keypoints2d["mediapipe_pose33"]
        labelled = pose[pose[:, 2] > 0, :2]
        assert len(labelled) >= 10 and np.abs(labelled).max() < 0.6


@needs_real
def test_real_mmhuman3d_samples(open_asset):
    pw3d = Mmhuman3dSamples(REAL / "mmhuman3d/tests/data/preprocessed_datasets/"
                            "sample_3dpw_train.npz", open_asset,
                            REAL / "mmhuman3d/tests/data/datasets/3dpw")
    assert len(pw3d) == 1 and pw3d[0].image.mean() > 10
    h36m = Mmhuman3dSamples(REAL / "mmpose/tests/data/h36m/test_h36m.npz", open_asset)
    assert len(h36m) == 4
    for sample in (h36m[i] for i in range(4)):
        assert (sample.keypoints2d["mediapipe_pose33"][:, 2] > 0).sum() == 12


def test_reader_samples_go_through_the_trainers_loader(tmp_path, coco_folder, open_asset):
    from training.data.augment import AugmentConfig, Augmenter
    from training.data.loader import batches, keypoint_sizes

    entries = [f"coco-wholebody:{coco_folder}", f"mmhuman3d:{_spin_npz(tmp_path)}"]
    source = open_sources(entries, {"coco-wholebody": 1.0, "mmhuman3d": 1.0}, open_asset)
    for config in (AugmentConfig(), AugmentConfig.off()):
        batch = next(batches(source, open_asset, 2, seed=0, start_step=0, steps=1,
                             prepare=Augmenter(open_asset, config)))
        assert batch.images.shape == (2, 3, 256, 192)
        assert all(has.sum() == 0 for has in batch.has_params.values())
        assert batch.has_joints3d.sum() == 0
        assert {name: value.shape[1] for name, value in batch.keypoints2d.items()} == \
            keypoint_sizes(open_asset)
    # Unaugmented, the labels arrive as the reader gave them.
    for i, sample_id in enumerate(batch.ids):
        sample = next(source[k] for k in range(len(source)) if source[k].id == sample_id)
        pose = sample.keypoints2d["mediapipe_pose33"]
        assert batch.keypoints2d["mediapipe_pose33"][i].numpy() == pytest.approx(pose, abs=1e-6)


def test_stage1_trains_on_dataset_entries_with_a_mixture(tmp_path, coco_folder, server_home,
                                                         monkeypatch, capsys):
    from training.cli import main as pear_train
    from training.config import CONFIG_DIR

    home = tmp_path / "home"
    (home / "assets").mkdir(parents=True)
    (home / "assets" / "open.npz").symlink_to(server_home / "assets" / "open.npz")
    monkeypatch.setenv("PEAR_HOME", str(home))
    spin = _spin_npz(tmp_path)
    train = f"['coco-wholebody:{coco_folder}', 'mmhuman3d:{spin}']"
    out = tmp_path / "run"
    assert pear_train(["stage1", "--config", str(CONFIG_DIR / "smoke.toml"),
                       "--set", f"data.train={train}",
                       "--set", "data.mixture={coco-wholebody = 3.0, mmhuman3d = 1.0}",
                       "--set", "optim.steps=2", "--set", f"run.out='{out}'"]) == 0
    assert "done at step 2" in capsys.readouterr().out
    assert (out / "log.csv").is_file()
    # Eval reads dataset entries too: 2D-only labels give 2D metrics, beside the baseline.
    assert pear_train(["eval", "--checkpoint", str(out / "checkpoint"), "--data",
                       f"coco-wholebody:{coco_folder}", "--json", "--overlay",
                       str(tmp_path / "overlays")]) == 0
    result = json.loads(capsys.readouterr().out)
    for side in ("network", "baseline"):
        assert result[side]["pose33_kp2d_px"] > 0 and "mpjpe_mm" not in result[side]
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 1  # one person in the fixture
