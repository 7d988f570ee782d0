"""Frame sources, Holistic on a render of the model, hand sides, and the result file."""

import numpy as np
import pytest
import torch

from backend.archive import load_archive, save_archive
from backend.body.model import BodyModel
from backend.perception.frames import FootageError, open_footage
from backend.perception.holistic import (
    HAND,
    assign_hands,
    detect_clip,
    face_agrees_with_pose,
    hand_agrees_with_pose,
    own_parts,
    person_box,
)
from backend.results import FORMAT_VERSION, ClipResults, ResultsError, load_results, save_results
from backend.tracking.render_clip import render_frames
from backend.tracking.synthetic import make_clip
from backend.tracking.world_bones import world_targets

cv2 = pytest.importorskip("cv2")


def _write_video(path, frames, fps=25.0):
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def _gradient_frames(count, width=64, height=48):
    return [np.full((height, width, 3), 10 * i, np.uint8) for i in range(count)]


def test_video_source_knows_count_and_rate_up_front(tmp_path):
    path = tmp_path / "clip.mp4"
    _write_video(path, _gradient_frames(12), fps=24.0)
    source = open_footage(path)
    assert (source.frame_count, source.fps, source.width, source.height) == (12, 24.0, 64, 48)
    frames = list(source)
    assert [f.index for f in frames] == list(range(12))
    assert abs(frames[6].time - 0.25) < 1e-9
    assert abs(int(frames[11].image.mean()) - 110) <= 3  # decoded, in order, RGB


def test_truncated_video_reports_missing_frames(tmp_path):
    path = tmp_path / "clip.mp4"
    _write_video(path, _gradient_frames(30))
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    try:
        source = open_footage(cut)
    except FootageError as exc:  # a container too damaged to open is refused by name
        assert "cut.mp4" in str(exc)
        return
    frames = list(source)
    assert len(frames) + len(source.failures) == source.frame_count
    assert len({f.index for f in frames}) == len(frames)  # nothing duplicated
    with pytest.raises(FootageError, match=r"cut.mp4: frame \d+"):
        list(open_footage(cut, on_error="fail"))


def test_image_folder_in_natural_order_and_bad_images_reported(tmp_path):
    for i in (1, 2, 10):
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), np.full((8, 8, 3), i, np.uint8))
    (tmp_path / "frame5.png").write_bytes(b"not an image")
    source = open_footage(tmp_path, fps=10)
    frames = list(source)
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 2, 10]
    assert [f.index for f in frames] == [0, 1, 3]
    assert source.failures == [(2, "(frame5.png) cannot be decoded as an image")]
    with pytest.raises(FootageError, match=r"frame 2 \(frame5.png\)"):
        list(open_footage(tmp_path, on_error="fail"))


@pytest.mark.parametrize("name, content, message", [
    ("missing.mp4", None, "no such file"),
    ("notes.txt", b"hello", "unknown footage type"),
    ("broken.mp4", b"\x00" * 100, "cannot be opened as a video"),
])
def test_bad_footage_is_named(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(FootageError, match=message):
        open_footage(path)


def _hand_at(u, v):
    hand = np.zeros((HAND, 3))
    hand[:, :2] = (u, v)
    hand[:, 2] = 1
    return hand


def test_hands_go_to_the_nearest_pose_wrist():
    pose = np.zeros((33, 3))
    pose[15] = (300, 200, 1)  # the person's left wrist
    pose[16] = (100, 200, 1)
    near_left, near_right = _hand_at(305, 205), _hand_at(95, 195)
    left, right = assign_hands(pose, near_right, near_left)  # the detector's labels swapped
    assert left[0, 0] == 305 and right[0, 0] == 95
    left, right = assign_hands(pose, np.zeros((HAND, 3)), near_left)  # one hand only
    assert left[0, 0] == 305 and not right[:, 2].any()
    pose[15, 2] = 0  # no usable wrist: the detector's labels stand
    left, right = assign_hands(pose, near_right, near_left)
    assert left[0, 0] == 95


def test_a_face_mesh_on_another_face_is_not_the_persons(open_asset):
    """The model's own landmarks agree; the same mesh moved onto a neighbour below the head,
    or shrunk onto a hat above it (what Holistic did on COCO-WholeBody people), does not."""
    clip = make_clip(BodyModel(open_asset), frames=1, seed=3, size=(480, 640), focal=550.0)
    pose, face = clip.keypoints.parts["pose"][0], clip.keypoints.parts["face"][0]
    assert face_agrees_with_pose(pose, face)
    size = np.linalg.norm(np.ptp(face[:, :2], axis=0))
    rough = face.copy()
    rough[:, 0] += 0.3 * size  # BlazePose's face points are rough: this much is the same face
    assert face_agrees_with_pose(pose, rough)
    neighbour = face.copy()
    neighbour[:, 1] += 0.8 * size
    assert not face_agrees_with_pose(pose, neighbour)
    hat = face.copy()
    top = face[:, :2].min(0)
    hat[:, :2] = top + 0.3 * (face[:, :2] - top) - (0, 0.3 * size)
    assert not face_agrees_with_pose(pose, hat)
    unseen = pose.copy()
    unseen[:11, 2] = 0.0  # no face points to vote: the mesh stands
    assert face_agrees_with_pose(unseen, neighbour)


def test_a_hand_away_from_its_wrist_is_not_the_arms(open_asset):
    """The model's own hands agree with its pose; a right hand given the left hand's landmarks
    (what Holistic does with a hand hidden behind the body) does not, and is dropped."""
    clip = make_clip(BodyModel(open_asset), frames=1, seed=3, size=(480, 640), focal=550.0)
    parts = {name: points[0] for name, points in clip.keypoints.parts.items()}
    pose, left, right = parts["pose"], parts["left_hand"], parts["right_hand"]
    assert hand_agrees_with_pose(pose, left, "left")
    assert hand_agrees_with_pose(pose, right, "right")
    assert np.linalg.norm(left[0, :2] - right[0, :2]) > 50  # the hands are apart here
    assert not hand_agrees_with_pose(pose, left, "right")
    face, kept_left, kept_right = own_parts(pose, parts["face"], left, left.copy())
    np.testing.assert_array_equal(kept_left, left)
    assert not kept_right.any()
    np.testing.assert_array_equal(face, parts["face"])
    unseen = pose.copy()
    unseen[16, 2] = 0.0  # no right wrist to compare with: the hand stands
    assert hand_agrees_with_pose(unseen, left, "right")


def test_person_box_covers_found_points():
    pose = np.array([[10.0, 20.0, 1.0], [110.0, 220.0, 1.0], [500.0, 500.0, 0.0]])
    box = person_box(pose, margin=0.1)
    np.testing.assert_allclose(box, [-10, 0, 130, 240])
    assert np.isnan(person_box(np.zeros((3, 3)))).all()


def test_holistic_finds_the_rendered_model_with_sides_right(open_asset):
    model = BodyModel(open_asset)
    clip = make_clip(model, frames=3, seed=5, size=(360, 640), focal=550.0, world_noise_m=0.0)
    colors = torch.as_tensor(open_asset.arrays["vertex_colors"], dtype=torch.float64)
    frames = render_frames(model, clip.params, clip.cam_t, clip.focal, (360, 640), colors)
    from backend.perception.frames import Frame

    detections = detect_clip([Frame(i, i / 30, f) for i, f in enumerate(frames)], 360, 640)
    assert detections.rates()["pose"] == 1.0
    truth = clip.keypoints.parts["pose"][:, :, :2]
    found = detections.pose[:, :, :2]
    # The person's left shoulder/hip are detected where the model's left ones project.
    for index in (11, 12, 23, 24):
        assert np.linalg.norm(found[:, index] - truth[:, index], axis=1).mean() < 15, index
    # The metric 3D pose: about the hips, and its limbs point where the model's do.
    world = detections.pose_world
    assert world.shape == (3, 33, 4) and (world[:, :, 3] > 0.5).mean() > 0.5
    assert np.abs(world[:, [23, 24], :3].mean(1)).max() < 0.05
    found_bones, _ = world_targets(torch.as_tensor(world))
    true_bones, _ = world_targets(torch.as_tensor(clip.keypoints.world))
    angles = np.degrees(np.arccos((found_bones * true_bones).sum(-1).clamp(-1, 1).numpy()))
    assert angles.mean() < 25, angles.round()


def test_results_round_trip_and_errors(tmp_path):
    results = ClipResults(
        asset_id="open", spec_hash="abc", frames=np.arange(3), times=np.arange(3) / 30,
        params={"body_pose": np.zeros((3, 21, 3)), "betas": np.zeros((1, 20))},
        cam_t=np.zeros((3, 3)), focal=1000.0, center=(320.0, 240.0), width=640, height=480,
        detections={"pose": np.zeros((3, 33, 3))}, info={"fps": 30.0},
        contacts=np.array([[1, 0, 1, 0]] * 3, np.uint8))
    path = save_results(results, tmp_path / "r.npz")
    loaded = load_results(path)
    np.testing.assert_array_equal(loaded.contacts, results.contacts)
    assert loaded.params["betas"].shape == (1, 20) and loaded.info == {"fps": 30.0}
    assert loaded.center == (320.0, 240.0) and loaded.detections["pose"].shape == (3, 33, 3)
    assert load_archive(path, "result")[1]["format_version"] == FORMAT_VERSION == 2
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(ResultsError, match="not a readable result"):
        load_results(tmp_path / "bad.npz")


def test_version_1_results_still_read(tmp_path):
    """Files from before det/pose_world: read as they are, without the metric pose."""
    meta = {"format": "pear-results", "format_version": 1, "asset_id": "open",
            "spec_hash": "abc", "focal": 900.0, "center": [320.0, 240.0], "width": 640,
            "height": 480, "info": {}}
    arrays = {"frames": np.arange(2), "times": np.arange(2) / 30, "cam_t": np.zeros((2, 3)),
              "param/body_pose": np.zeros((2, 21, 3)), "det/pose": np.ones((2, 33, 3)),
              "det/boxes": np.zeros((2, 4))}
    loaded = load_results(save_archive(tmp_path / "v1.npz", arrays, meta, compressed=True))
    assert set(loaded.detections) == {"pose", "boxes"} and loaded.focal == 900.0


def test_backend_fit_end_to_end_on_rendered_footage(open_asset, tmp_path):
    """Render a short clip of the model, then run `backend fit` on it as a user would."""
    import subprocess
    import sys

    model = BodyModel(open_asset)
    clip = make_clip(model, frames=8, seed=6, size=(360, 640), focal=550.0)
    colors = torch.as_tensor(open_asset.arrays["vertex_colors"], dtype=torch.float64)
    video = tmp_path / "clip.mp4"
    _write_video(video, render_frames(model, clip.params, clip.cam_t, clip.focal, (360, 640),
                                      colors), fps=30.0)
    home = tmp_path / "home"
    from backend.body.asset import save_asset

    save_asset(open_asset, home / "assets" / "open.npz")
    import os

    env = dict(os.environ, PEAR_HOME=str(home))
    result = subprocess.run(
        [sys.executable, "-m", "backend.cli", "fit", str(video), "-o", str(tmp_path / "r.npz"),
         "--focal", "550", "--overlay", str(tmp_path / "overlay.mp4")],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "8 frames (360x640, 30.0 fps)" in result.stdout
    assert "found: pose 100.0%" in result.stdout
    fitted = load_results(tmp_path / "r.npz")
    assert fitted.asset_id == "open" and len(fitted.frames) == 8
    assert fitted.detections["pose_world"].shape == (8, 33, 4)
    # The face's blendshape scores are kept; a frame without a face has none.
    scores = fitted.detections["face_scores"]
    found = fitted.detections["face"][:, :, 2].any(1)
    assert scores.shape == (8, 52) and np.isnan(scores[~found]).all()
    assert fitted.info["reprojection_px"]["pose"] < 10.0
    assert open_footage(tmp_path / "overlay.mp4").frame_count == 8


def test_crop_maps_back_to_the_frame():
    from backend.perception.crops import crop, to_frame

    image = np.zeros((100, 200, 3), np.uint8)
    image[40:44, 150:154] = 255
    patch, transform = crop(image, np.array([152.0, 42.0]), 20.0, size=80)
    ys, xs = np.nonzero(patch[..., 0] > 128)
    centre = to_frame(np.array([[xs.mean() + 0.5, ys.mean() + 0.5]]), transform)[0]
    np.testing.assert_allclose(centre, [152.0, 42.0], atol=0.6)


def test_regions_need_enough_of_the_pose():
    from backend.perception.crops import face_region, hand_region

    pose = np.zeros((33, 3))
    assert face_region(pose) is None and hand_region(pose, "left") is None
    pose[[0, 2, 5], :] = [[100, 100, 1], [90, 90, 1], [110, 90, 1]]
    centre, side = face_region(pose)
    assert side > 40 and abs(centre[0] - 100) < 1
    pose[13] = (300, 300, 1)
    pose[15] = (300, 400, 1)
    centre, side = hand_region(pose, "left")
    assert centre[1] > 400 and side >= 100


def test_crop_pass_finds_a_small_face(open_asset):
    """A distant person: Face Mesh on the upscaled crop finds the face where it projects."""
    from backend.perception.crops import CropDetector

    model = BodyModel(open_asset)
    clip = make_clip(model, frames=1, seed=7, size=(720, 1280), focal=550.0)
    colors = torch.as_tensor(open_asset.arrays["vertex_colors"], dtype=torch.float64)
    (image,) = render_frames(model, clip.params, clip.cam_t, clip.focal, (720, 1280), colors)
    truth = clip.keypoints.parts
    detector = CropDetector()
    try:
        face = detector.face(image, truth["pose"][0])
    finally:
        detector.close()
    assert face is not None
    error = np.linalg.norm(face - truth["face"][0, :, :2], axis=1)
    face_size = np.ptp(truth["face"][0, :, 1])
    assert face_size < 60  # small in the frame
    assert np.median(error) < 0.15 * face_size


def test_regions_tried_start_where_the_part_was_and_skip_what_is_out_of_view():
    from backend.perception.crops import REGION_SCALES, regions

    before = np.array([[100.0, 100.0], [140.0, 120.0]])  # a hand's box in the frame before
    predicted = (np.array([300.0, 200.0]), 80.0)  # where the pose puts it
    tried = regions(before, predicted, "hand", 640, 480)
    np.testing.assert_allclose(tried[0][0], [120.0, 110.0])
    assert tried[0][1] == 80.0  # twice the box's longer side
    assert [side for _, side in tried[1:]] == [80.0 * s for s in REGION_SCALES]
    assert len(regions(None, predicted, "hand", 640, 480)) == len(REGION_SCALES)
    # A hand below the frame (a close-up): nothing to try.
    assert regions(None, (np.array([300.0, 520.0]), 80.0), "hand", 640, 480) == []


def test_live_detection_tries_one_region_a_frame_the_pose_s_in_turn():
    from backend.perception.crops import regions_this_frame

    before, pose_1x, pose_15x = [(np.array([float(i), 0.0]), 50.0) for i in range(3)]
    assert regions_this_frame([before, pose_1x, pose_15x], True, None, 0) == (
        [before, pose_1x, pose_15x], 0)  # offline: every region
    assert regions_this_frame([before, pose_1x, pose_15x], True, 1, 4) == ([before], 4)
    # Missed in the frame before: the pose's regions, one frame each, round and round.
    turn, seen = 0, []
    for _ in range(3):
        tried, turn = regions_this_frame([pose_1x, pose_15x], False, 1, turn)
        seen += tried
    assert seen == [pose_1x, pose_15x, pose_1x]
    assert regions_this_frame([pose_1x], False, 1, 7) == ([pose_1x], 7)


def test_live_crops_look_again_later_after_each_miss_and_at_once_once_found():
    """Under a ``CropBudget`` a part the crops keep missing is looked for again 2, 4, 4, 4
    ... frames; found again (by the crops, or Holistic in the frame before), every frame."""
    from backend.perception.crops import CropBudget, CropSchedule

    region = (np.array([10.0, 10.0]), 50.0)
    schedule = CropSchedule(CropBudget(regions_per_frame=1, max_wait=4))
    looked = []
    for frame in range(16):
        tried = schedule.regions([region], previous_found=False)
        if tried:
            looked.append(frame)
            schedule.tried(found=False)
    assert looked == [0, 2, 6, 10, 14]
    assert schedule.regions([region], previous_found=True) == [region]  # seen: no wait
    schedule.tried(found=False)
    assert schedule.regions([region], previous_found=False) == []
    assert schedule.regions([region], previous_found=False) == [region]
    schedule.tried(found=True)
    assert schedule.regions([region], previous_found=False) == [region]
    # Offline: every region, every frame, whatever was missed.
    offline = CropSchedule(None)
    for _ in range(3):
        assert offline.regions([region, region], previous_found=False) == [region, region]
        offline.tried(found=False)


def test_a_face_found_in_the_frame_before_is_found_again(open_asset):
    """The pose gives no face region (its face points unseen), but the face's landmarks from
    the frame before seed the crop: Face Mesh finds it there."""
    from backend.perception.crops import CropDetector

    model = BodyModel(open_asset)
    clip = make_clip(model, frames=2, seed=7, size=(720, 1280), focal=550.0)
    colors = torch.as_tensor(open_asset.arrays["vertex_colors"], dtype=torch.float64)
    image = render_frames(model, clip.params, clip.cam_t, clip.focal, (720, 1280), colors)[1]
    truth = clip.keypoints.parts
    pose = truth["pose"][1].copy()
    pose[:11, 2] = 0.0
    detector = CropDetector()
    try:
        assert detector.face(image, pose) is None
        face = detector.face(image, pose, previous=truth["face"][0, :, :2])
    finally:
        detector.close()
    assert face is not None
    error = np.linalg.norm(face - truth["face"][1, :, :2], axis=1)
    assert np.median(error) < 0.15 * np.ptp(truth["face"][1, :, 1])
