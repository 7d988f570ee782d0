"""Choosing a person when the footage shows several: found by real Holistic on rendered
footage of two people, numbered from the left, followed through the clip."""

import numpy as np
import pytest
import torch

from backend.body.model import BodyModel
from backend.perception.frames import Frame
from backend.perception.holistic import PersonFinder, detect_clip
from backend.perception.people import (
    FILL,
    PersonFollower,
    PersonNotFound,
    find_people,
    paint_out,
    paint_out_others,
    window,
)

pytest.importorskip("mediapipe")


def _frames(images):
    return [Frame(i, i / 30, image) for i, image in enumerate(images)]


def test_paint_out_inside_and_outside_a_box():
    image = np.zeros((10, 20, 3), np.uint8)
    box = np.array([5.0, 2.0, 9.0, 6.0])
    inside = paint_out(image, box)
    assert (inside[2:6, 5:9] == FILL).all() and inside.sum() == 16 * 3 * FILL
    outside = paint_out(image, box, inside=False)
    assert (outside[2:6, 5:9] == 0).all() and (outside == FILL).sum() == (200 - 16) * 3
    assert image.sum() == 0  # the caller's image is left alone
    np.testing.assert_allclose(window(box, 0.5), [3.0, 0.0, 11.0, 8.0])


def test_others_are_painted_out_except_where_the_person_is():
    image = np.zeros((10, 20, 3), np.uint8)
    view = paint_out(image, np.array([0.0, 0, 16, 10]), inside=False)  # the window
    others = [np.array([0.0, 0, 6, 10]), np.array([12.0, 0, 20, 10])]
    out = paint_out_others(view, image, others, keep=np.array([5.0, 0, 13, 10]))
    assert (out[:, :5] == FILL).all() and (out[:, 13:] == FILL).all()  # others; outside
    assert (out[:, 5:13] == 0).all()  # the person's own box, overlaps included, as it was


@pytest.fixture(scope="module")
def three_people_frames(open_asset):
    """Two 420x480 frames of three people standing close, arms down, the middle one farther
    (smaller): the window around the middle one takes in both neighbours."""
    from backend.tracking.render_clip import render_frames

    model = BodyModel(open_asset).double()
    params = model.default_params(2)
    for joint, angle in (("left_shoulder", -1.1), ("right_shoulder", 1.1)):
        params["body_pose"][:, model.joint_names.index(joint) - 1, 2] = angle
    colors = torch.as_tensor(open_asset.arrays["vertex_colors"], dtype=torch.float64)
    strips = [render_frames(model, params, torch.tensor([[0.0, 0.15, depth]]).expand(2, 3)
                            .double(), 1000.0, (140, 480), colors) for depth in (4.2, 5.0, 4.2)]
    return [np.concatenate(images, axis=1) for images in zip(*strips, strict=True)]


@pytest.mark.parametrize("person", [1, 2, 3])
def test_a_person_between_close_neighbours_is_the_one_followed(three_people_frames, person):
    detections = detect_clip(_frames(three_people_frames), 420, 480, person=person)
    centres = (detections.boxes[:, 0] + detections.boxes[:, 2]) / 2
    # each person stands in their own 140-pixel strip
    assert ((centres >= 140 * (person - 1)) & (centres < 140 * person)).all(), centres


def test_people_are_found_and_numbered_from_the_left(two_people_frames):
    finder = PersonFinder()
    try:
        boxes = find_people(two_people_frames[0], finder)
    finally:
        finder.close()
    assert len(boxes) == 2
    left, right = boxes
    assert left[2] < 360 < right[0]  # one box per half of the frame
    assert (right[3] - right[1]) < 0.9 * (left[3] - left[1])  # the farther one looks smaller


@pytest.mark.parametrize("person, half", [(None, 0), (1, 0), (2, 1)])
def test_the_chosen_person_is_followed_through_the_clip(two_people_frames, person, half):
    detections = detect_clip(_frames(two_people_frames), 720, 640, person=person)
    assert detections.rates()["pose"] == 1.0 and detections.rates()["face"] == 1.0
    pose = detections.pose
    seen = pose[:, :, 2] > 0.5
    inside = (pose[:, :, 0] >= 360 * half) & (pose[:, :, 0] < 360 * (half + 1))
    assert inside[seen].all()  # every confident landmark on the chosen person's side


def test_asking_for_a_person_who_is_not_there_says_how_many_are(two_people_frames):
    with pytest.raises(PersonNotFound, match=r"person 3 .* frame 0 .* shows 2 people"):
        detect_clip(_frames(two_people_frames), 720, 640, person=3)
    nobody = lambda image: np.full(4, np.nan)  # noqa: E731  (never asked: the input is refused)
    with pytest.raises(ValueError, match="person must be 1"):
        PersonFollower(nobody, person=0)
    with pytest.raises(ValueError, match="x0 < x1"):
        PersonFollower(nobody, box=np.array([10.0, 0, 5, 20]))
    with pytest.raises(ValueError, match="not both or neither"):
        PersonFollower(nobody)


def test_a_box_from_an_earlier_stretch_picks_the_person_to_follow(two_people_frames):
    right = np.array([400.0, 200, 680, 520])  # around the right person, as a reply's box
    detections = detect_clip(_frames(two_people_frames[2:]), 720, 640, person_box=right)
    seen = detections.pose[:, :, 2] > 0.5
    assert seen.any(1).all() and (detections.pose[seen][:, 0] > 360).all()


def test_a_clip_that_starts_empty_chooses_when_people_appear(two_people_frames):
    empty = np.full_like(two_people_frames[0], 190)
    detections = detect_clip(_frames([empty, empty, *two_people_frames[:3]]), 720, 640,
                             person=2)
    found = (detections.pose[:, :, 2] > 0).any(1)
    assert found.tolist() == [False, False, True, True, True]
    assert (detections.pose[2:, 0, 0] > 360).all()


def test_the_protocol_allows_every_person_perception_numbers():
    """A session may ask for exactly the person numbers perception can follow."""
    from backend.server.protocol import ProtocolError, parse_request

    def followed(person: int) -> bool:
        try:
            PersonFollower(lambda image: np.full(4, np.nan), person=person)
        except ValueError:
            return False
        return True

    def accepted(person: int) -> bool:
        try:
            parse_request({"v": 1, "id": 1, "op": "session.open", "person": person})
        except ProtocolError:
            return False
        return True

    numbers = range(-2, 100)
    assert [n for n in numbers if followed(n)] == [n for n in numbers if accepted(n)]
    assert followed(1) and followed(2)  # there is something to choose from


def test_backend_people_and_fit_person_on_a_video(two_people_frames, open_asset, tmp_path):
    """As a TD would: list the people, then fit the second one."""
    import cv2

    from backend.body.asset import save_asset
    from backend.results import load_results

    from .test_cli import backend

    video = tmp_path / "two.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (720, 640))
    for image in two_people_frames:
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    home = tmp_path / "home"
    save_asset(open_asset, home / "assets" / "open.npz")

    listed = backend("people", str(video), "--out", str(tmp_path / "people.png"), home=home)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "frame 0 shows 2 people" in listed.stdout and "person 2: box x 4" in listed.stdout
    drawn = cv2.imread(str(tmp_path / "people.png"))
    assert drawn.shape == (640, 720, 3)

    fitted = backend("fit", str(video), "-o", str(tmp_path / "r.npz"), "--person", "2",
                     "--max-frames", "3", home=home)
    assert fitted.returncode == 0, fitted.stderr[-2000:]
    results = load_results(tmp_path / "r.npz")
    assert results.info["person"] == 2 and (results.detections["boxes"][:, 0] > 360).all()
    assert results.info["reprojection_px"]["pose"] < 10.0

    missing = backend("fit", str(video), "-o", str(tmp_path / "r3.npz"), "--person", "3",
                      "--max-frames", "3", home=home)
    assert missing.returncode == 4 and "shows 2 people" in missing.stderr  # a clip error
    refused = backend("fit", str(video), "-o", str(tmp_path / "r0.npz"), "--person", "0",
                      home=home)
    assert refused.returncode == 2 and "from 1 (the leftmost)" in refused.stderr
