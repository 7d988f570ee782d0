"""Synthetic stage-1 samples: exact labels (the trainer's forward reproduces them from the
ground truth), determinism per (seed, split, index), z-buffer visibility, alpha from the
render's coverage, and the shard folders (round trip, resume, damage named)."""

from __future__ import annotations

import dataclasses
import os
from functools import partial

import numpy as np
import pytest
import torch

from backend.body.landmark_model import LandmarkModel
from backend.body.model import BodyModel
from backend.camera import to_camera
from backend.errors import InputError
from backend.mocap.poses import RangePoses
from backend.regressor.crop_camera import crop_intrinsics, crop_to_full, full_to_crop
from backend.regressor.layout import ParamLayout
from backend.renderer.mesh_raster import nearest_fragments, project, rasterize
from training.data.appearance import sample_appearance
from training.data.batch import collate
from training.data.loader import keypoint_sizes
from training.data.shards import (
    Manifest,
    ShardError,
    ShardSamples,
    stream_records,
    write_shards,
)
from training.data.synth import (
    GENERATOR_VERSION,
    SUPERSAMPLE,
    SynthGenerator,
    facing_yaw,
    sample_params,
    sample_rng,
    sample_shot,
)
from training.forward import JOINTS, predict

SEED = 7


def make_generator(asset, seed: int = SEED, split: str = "train") -> SynthGenerator:
    return SynthGenerator(asset, RangePoses(BodyModel(asset).double()), seed, split)


@pytest.fixture(scope="module")
def generator(open_asset) -> SynthGenerator:
    return make_generator(open_asset)


@pytest.fixture(scope="module")
def records(generator):
    """Samples 0-2 of the test seed, rendered once for the module."""
    return [generator(index) for index in range(3)]


def manifest_for(asset, count: int, shard_size: int, seed: int = SEED) -> Manifest:
    return Manifest(asset.asset_id, asset.spec_hash, seed, "train", count, shard_size, "ranges",
                    GENERATOR_VERSION)


def assert_same_record(a, b) -> None:
    """The same sample: equal pixels and parameters, the computed labels equal up to float
    rounding (a process with another thread count sums in another order)."""
    assert a.index == b.index and a.source == b.source
    np.testing.assert_array_equal(a.sample.image, b.sample.image)
    assert a.sample.params.keys() == b.sample.params.keys()
    for name in a.sample.params:
        np.testing.assert_array_equal(a.sample.params[name], b.sample.params[name])
    assert a.sample.keypoints2d.keys() == b.sample.keypoints2d.keys()
    for name in a.sample.keypoints2d:
        np.testing.assert_allclose(a.sample.keypoints2d[name], b.sample.keypoints2d[name],
                                   atol=1e-6)
    close = partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-6)
    close(a.sample.joints3d, b.sample.joints3d)
    close(a.cam_t, b.cam_t)
    close([a.sample.focal, *a.sample.box_center, a.sample.box_height],
          [b.sample.focal, *b.sample.box_center, b.sample.box_height])


def test_crop_camera_inverts_cliff():
    cam_t = torch.tensor([[0.3, -0.2, 6.0], [-1.0, 0.5, 2.5]], dtype=torch.float64)
    center = torch.tensor([[700.0, 400.0], [200.0, 900.0]], dtype=torch.float64)
    height = torch.tensor([500.0, 1200.0], dtype=torch.float64)
    focal = torch.tensor([1500.0, 900.0], dtype=torch.float64)
    principal = torch.tensor([[640.0, 360.0], [540.0, 960.0]], dtype=torch.float64)
    crop = full_to_crop(cam_t, center, height, focal, principal)
    torch.testing.assert_close(crop_to_full(crop, center, height, focal, principal), cam_t)


def test_labels_are_exact(records, open_model, open_asset):
    """THE test of exact labels: the ground-truth parameters through ParamLayout.encode and
    the crop camera of the true cam_t, fed to the trainer's forward, reproduce every 2D
    keypoint (< 1e-3 crop units) and the camera-frame joints."""
    layout = ParamLayout(open_asset.param_spec)
    samples = [dataclasses.replace(r.sample, image=r.sample.image[..., :3]) for r in records]
    batch = collate(samples, open_asset.param_spec, len(open_asset.joint_names),
                    keypoint_sizes(open_asset))
    batch.focal, batch.principal_point, batch.box_center, batch.box_height = (
        value.double() for value in (batch.focal, batch.principal_point, batch.box_center,
                                     batch.box_height))
    params = {name: value.double() for name, value in batch.params.items()}
    camera = torch.as_tensor(np.stack([r.crop_camera for r in records])).double()
    vector = layout.encode(params, camera)
    with torch.no_grad():
        prediction = predict(vector, batch, layout, LandmarkModel(open_model),
                             list(keypoint_sizes(open_asset)))
    for name, labels in batch.keypoints2d.items():
        error = (prediction.keypoints2d[name] - labels[..., :2].double()).abs().max()
        assert error < 1e-3, f"{name}: {error}"
    assert (prediction.joints3d - batch.joints3d.double()).abs().max() < 1e-4
    # The crop camera is the one that places the body at the true translation.
    torch.testing.assert_close(prediction.cam_t.float(),
                               torch.as_tensor(np.stack([r.cam_t for r in records])),
                               rtol=1e-5, atol=1e-5)
    # Labels carry the whole spec, the root at the model origin (the camera places it).
    assert set(records[0].sample.params) == {p.name for p in open_asset.param_spec}
    assert not records[0].sample.params["transl"].any()


def test_person_is_inside_the_crop_and_samples_vary(records):
    for record in records:
        alpha = record.sample.image[..., 3]
        rows, columns = np.nonzero(alpha)
        assert rows.min() > 0 and columns.min() > 0  # nothing cut by the crop's edge
        assert rows.max() < alpha.shape[0] - 1 and columns.max() < alpha.shape[1] - 1
        assert rows.max() - rows.min() > 0.6 * alpha.shape[0]  # the person fills the crop
        joints = record.sample.keypoints2d[JOINTS]
        assert np.abs(joints[:, 0]).max() < 0.375 and np.abs(joints[:, 1]).max() < 0.5
    assert len({r.sample.focal for r in records}) == 3
    betas = [r.sample.params["betas"] for r in records]
    assert not np.allclose(betas[0], betas[1]) and np.abs(np.concatenate(betas)).max() <= 2.5


def test_each_sample_has_its_own_generator():
    draws = {(seed, split, index): sample_rng(seed, split, index).uniform(size=4).tobytes()
             for seed in (0, 1) for split in ("train", "val") for index in (0, 1)}
    assert len(set(draws.values())) == len(draws)
    assert sample_rng(0, "val", 1).uniform(size=4).tobytes() == draws[(0, "val", 1)]


class TurnedPoses:
    """A pose source whose performer always stands turned ``yaw`` degrees from the camera."""

    def __init__(self, yaw: float):
        self.yaw = yaw

    def draw(self, rng):
        return {"global_orient": np.array([[0.0, np.radians(self.yaw), 0.0]])}, "turned"


@pytest.mark.parametrize("performer_yaw", [0.0, 120.0, -150.0])
def test_facing_bounds_the_view_whatever_way_the_performer_stands(open_model, performer_yaw):
    model = open_model
    assert facing_yaw(np.array([0.0, np.radians(performer_yaw), 0.0])) == pytest.approx(
        performer_yaw)
    yaws = np.array([facing_yaw(sample_params(model, TurnedPoses(performer_yaw),
                                              np.random.default_rng(k), facing=30)[0]
                                ["global_orient"]) for k in range(200)])
    # within 30 degrees either way, up to what the few degrees of pitch and roll add
    assert np.abs(yaws).max() < 33 and yaws.min() < -20 and yaws.max() > 20
    turned = [facing_yaw(sample_params(model, TurnedPoses(performer_yaw),
                                       np.random.default_rng(k))[0]["global_orient"])
              for k in range(200)]
    assert np.abs(turned).max() > 150  # the default turns the body any way


def test_facing_out_of_range_is_named(open_asset):
    with pytest.raises(InputError, match="facing 200"):
        SynthGenerator(open_asset, RangePoses(BodyModel(open_asset).double()), 0, "train",
                       facing=200)


def _posed(generator, yaw: float):
    params = {name: np.full(spec.shape, spec.default)
              for name, spec in generator.model.spec.items()}
    params["global_orient"] = np.array([[0.0, yaw, 0.0]])
    output = generator.pose(params)
    rng = np.random.default_rng(0)
    origin = torch.zeros(1, 3, dtype=torch.float64)
    shot = sample_shot(to_camera(output.vertices, origin)[0].numpy(), rng)
    return generator.render(0, params, output, shot, sample_appearance(generator.regions, rng),
                            "test")


def test_visibility_follows_the_z_buffer(generator):
    nose = 1  # MediaPipe face mesh: the nose tip
    front, back = _posed(generator, 0.0), _posed(generator, np.pi)
    face_front = front.sample.keypoints2d["mediapipe_face478"]
    face_back = back.sample.keypoints2d["mediapipe_face478"]
    assert face_front[nose, 2] == 1 and face_back[nose, 2] == 0  # behind the head
    assert face_front[:, 2].mean() > 0.7 and face_back[:, 2].mean() < 0.05
    # Positions are labelled either way; only the flag says what the camera sees.
    assert np.abs(face_back[:, :2]).max() < 0.5
    # Seen from behind, the hands' palms and fingers are partly hidden, the body's back not.
    joints = back.sample.keypoints2d[JOINTS]
    names = generator.model.joint_names
    assert joints[names.index("pelvis"), 2] == 1 and joints[names.index("jaw"), 2] == 0


def test_alpha_is_the_render_coverage(generator, records):
    record = records[1]
    params = {k: v.astype(np.float64) for k, v in record.sample.params.items()}
    output = generator.pose(params)
    vertices = to_camera(output.vertices, torch.as_tensor(record.cam_t, dtype=torch.float64
                                                          )[None])[0]
    sample = record.sample
    focal, principal = crop_intrinsics(*(torch.tensor([v], dtype=torch.float64) for v in (
        sample.focal, sample.principal_point, sample.box_center, sample.box_height)))
    screen = project(vertices, float(focal[0]) * SUPERSAMPLE,
                     tuple((principal[0] * SUPERSAMPLE).tolist()))
    height, width = sample.image.shape[0] * SUPERSAMPLE, sample.image.shape[1] * SUPERSAMPLE
    exact = rasterize(screen, generator.model.faces, height, width)  # the reference rasterizer
    fast = nearest_fragments(screen, generator.model.faces, height, width)
    assert torch.equal(exact.face >= 0, fast.face >= 0)
    same = (exact.face == fast.face) & (exact.face >= 0)
    assert same.sum() > 0.999 * (exact.face >= 0).sum()
    torch.testing.assert_close(fast.bary[same], exact.bary[same])
    coverage = (exact.face >= 0).reshape(height // 2, 2, width // 2, 2).sum((1, 3)).numpy()
    alpha = sample.image[..., 3]
    np.testing.assert_array_equal(alpha, np.round(coverage / 4 * 255).astype(np.uint8))
    assert not sample.image[alpha == 0, :3].any()
    np.testing.assert_array_equal(sample.mask, alpha >= 128)


@pytest.fixture(scope="module")
def shard_folder(open_asset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("synth")
    done = write_shards(folder, manifest_for(open_asset, 3, 2),
                        partial(make_generator, open_asset))
    assert done == 3
    return folder


def test_shards_round_trip(shard_folder, records):
    """Written by a second generator of the same seed: also the same samples whoever
    renders them."""
    samples = ShardSamples(shard_folder)
    assert len(samples) == 3
    for index in range(3):
        assert_same_record(samples.record(index), records[index])
    sample = samples[1]
    assert sample.image.shape == (256, 192, 4) and sample.mask.dtype == bool
    # Streamed: each rank reads its own shards, together all of them.
    ranks = [[r.index for r in stream_records(shard_folder, rank, 2)] for rank in (0, 1)]
    assert ranks == [[0, 1], [2]]


def test_workers_render_the_same_samples(open_asset, shard_folder, tmp_path):
    # One shard, its two samples rendered by two processes.
    write_shards(tmp_path, manifest_for(open_asset, 2, 2), partial(make_generator, open_asset),
                 workers=2)
    by_workers, in_process = ShardSamples(tmp_path), ShardSamples(shard_folder)
    for index in range(2):
        assert_same_record(by_workers.record(index), in_process.record(index))


def test_resume_keeps_finished_shards(open_asset, shard_folder, tmp_path):
    for name in os.listdir(shard_folder):
        (tmp_path / name).write_bytes((shard_folder / name).read_bytes())
    first, second = tmp_path / "shard-train-000000.tar", tmp_path / "shard-train-000001.tar"
    kept = first.stat().st_mtime_ns
    second.write_bytes(second.read_bytes()[:1000])  # interrupted mid-shard
    # One more sample: shard 0 stays, the damaged shard 1 is rewritten with samples 2 and 3.
    make = partial(make_generator, open_asset)
    assert write_shards(tmp_path, manifest_for(open_asset, 4, 2), make) == 2
    assert first.stat().st_mtime_ns == kept
    assert [r.index for r in stream_records(tmp_path)] == [0, 1, 2, 3]
    with pytest.raises(ShardError, match="another run"):
        write_shards(tmp_path, manifest_for(open_asset, 4, 2, seed=SEED + 1), make)


def test_damaged_shards_are_named(shard_folder, tmp_path):
    for name in os.listdir(shard_folder):
        (tmp_path / name).write_bytes((shard_folder / name).read_bytes())
    shard = tmp_path / "shard-train-000001.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[:700])  # a truncated header
    with pytest.raises(ShardError, match="shard-train-000001.tar"):
        ShardSamples(tmp_path)
    with pytest.raises(ShardError, match="shard-train-000001.tar"):
        list(stream_records(tmp_path))
    # Damaged bytes inside a member: the sample is named when read.
    png = data.index(b"IDAT")
    shard.write_bytes(data[:png] + bytes(64) + data[png + 64:])
    with pytest.raises(ShardError, match="shard-train-000001.tar: sample 000000002"):
        ShardSamples(tmp_path)[2]
    shard.unlink()
    with pytest.raises(ShardError, match="shard-train-000001.tar: shard missing"):
        ShardSamples(tmp_path)


def test_synth_command(server_home, monkeypatch, tmp_path, capsys):
    from training.cli import main

    monkeypatch.setenv("PEAR_HOME", str(server_home))
    out = tmp_path / "shards"
    assert main(["synth", "--count", "1", "--out", str(out), "--seed", "3"]) == 0
    printed = capsys.readouterr()
    assert "1/1 samples" in printed.err and "samples/s" in printed.out
    assert len(ShardSamples(out)) == 1
    # Rerun: nothing left to render; another seed in the same folder is refused by name.
    assert main(["synth", "--count", "1", "--out", str(out), "--seed", "3"]) == 0
    assert "0 samples rendered" in capsys.readouterr().out
    assert main(["synth", "--count", "1", "--out", str(out), "--seed", "4"]) == 2
    assert "another run" in capsys.readouterr().err
