"""MediaPipe's facial blendshape scores on renders of the open asset, and the tracker's use of
them."""

import numpy as np
import pytest
import torch

from backend.body.model import BodyModel
from backend.conventions import FACE_BLENDSHAPES
from backend.errors import SetupError
from backend.perception.face_scores import FaceScorer, face_crop
from backend.tracking.render_clip import render_frames
from backend.tracking.synthetic import FACIAL_ACTIONS, face_clip
from backend.tracking.tracker import Keypoints, Tracker, TrackerConfig


def test_the_crop_is_a_square_about_the_found_face_inside_the_image():
    face = np.zeros((478, 3))
    face[:, :2] = np.random.default_rng(0).uniform([100, 50], [160, 130], (478, 2))
    face[:, 2] = 1.0
    face[0] = (900, 900, 0.0)  # an unseen point does not count
    x0, y0, x1, y1 = face_crop(face, 640, 480)
    assert x1 - x0 == pytest.approx(y1 - y0, abs=2)  # square: 2x the face's 80 px height
    assert (x1 - x0) == pytest.approx(160, abs=3)
    assert x0 <= 100 and x1 >= 160 and y0 <= 50 and y1 >= 130
    x0, y0, x1, y1 = face_crop(face, 150, 100)  # the image's edge cuts it
    assert x1 == 150 and y1 == 100
    assert face_crop(np.zeros((478, 3)), 640, 480) is None


def test_a_missing_model_file_says_how_to_install_it(tmp_path):
    with pytest.raises(SetupError, match="make venv.*face_landmarker.task"):
        FaceScorer(tmp_path / "face_landmarker.task")


def test_scores_follow_a_rendered_action_on_the_persons_side(open_asset):
    """Neutral, the jaw open, the person's left eye closed: each score rises where its action
    is, on the side named (ARKit's and the open asset's left is the person's left)."""
    names = open_asset.meta["expression_names"]
    model = BodyModel(open_asset).double()
    clip = face_clip(model, names, frames=1, seed=3)
    params = {name: value.expand(3, *value.shape[1:]) for name, value in clip.params.items()}
    expression = torch.zeros(3, len(names), dtype=torch.float64)
    expression[1, names.index("jawOpen")] = 1.0
    expression[2, names.index("eyeBlinkLeft")] = 1.0
    params["expression"] = expression
    colors = torch.as_tensor(open_asset.arrays["vertex_colors"], dtype=torch.float64)
    images = render_frames(model, params, clip.cam_t.expand(3, 3), clip.focal, (1280, 720),
                           colors)
    face = clip.keypoints.parts["face"][0]
    scorer = FaceScorer()
    try:
        neutral, jaw, blink = (scorer(image, face) for image in images)
        # Where no face is, nothing is scored.
        empty = scorer(np.full_like(images[0], 200), face)
    finally:
        scorer.close()
    score = {name: FACE_BLENDSHAPES.index(name) for name in FACE_BLENDSHAPES}
    assert jaw[score["jawOpen"]] > neutral[score["jawOpen"]] + 0.3
    assert blink[score["eyeBlinkLeft"]] > blink[score["eyeBlinkRight"]] + 0.15
    assert blink[score["eyeBlinkLeft"]] > neutral[score["eyeBlinkLeft"]] + 0.15
    assert np.isfinite(neutral).all() and np.isnan(empty).all()


# Face Mesh's eye contours, each eye's 16 points: with them hidden, the landmarks cannot tell
# an open eye from a closed one.
EYE_CONTOURS = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246,
                263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]


def test_the_fit_follows_the_scores_where_the_landmarks_cannot_tell(open_asset):
    """The eye contours hidden: a blink comes from the scores alone; without scores it is
    not seen at all."""
    names = open_asset.meta["expression_names"]
    clip = face_clip(BodyModel(open_asset), names, frames=16, seed=5)
    parts = {part: points.copy() for part, points in clip.keypoints.parts.items()}
    parts["face"][:, EYE_CONTOURS, 2] = 0.0
    blink = clip.actions["blink"]
    closed = blink > 0.5
    assert 0 < closed.sum() < 8  # one blink
    columns = [names.index(shape) for shape in FACIAL_ACTIONS["blink"]]
    config = TrackerConfig(focal=clip.focal, iterations=(20, 40, 120), contact=0.0)

    def fitted_blink(face_scores):
        keypoints = Keypoints(parts, clip.keypoints.width, clip.keypoints.height,
                              face_scores=face_scores)
        fit = Tracker(BodyModel(open_asset), config).fit(keypoints)
        return fit.params["expression"][:, columns].mean(1)

    scores = np.full((16, len(FACE_BLENDSHAPES)), np.nan)
    for shape in FACIAL_ACTIONS["blink"]:
        scores[:, FACE_BLENDSHAPES.index(shape)] = blink
    followed = fitted_blink(scores)
    assert np.corrcoef(followed, blink)[0, 1] > 0.9 and followed[closed].mean() > 0.5
    unscored = fitted_blink(np.full_like(scores, np.nan))
    assert unscored[closed].mean() - unscored[~closed].mean() < 0.1  # the blink is not seen


def test_scores_of_the_wrong_shape_are_named(open_asset):
    clip = face_clip(BodyModel(open_asset), open_asset.meta["expression_names"], frames=3)
    keypoints = Keypoints(clip.keypoints.parts, clip.keypoints.width, clip.keypoints.height,
                          face_scores=np.zeros((3, 10)))
    with pytest.raises(ValueError, match=r"face_scores has shape \(3, 10\)"):
        Tracker(BodyModel(open_asset), TrackerConfig(iterations=(1, 1, 1))).fit(keypoints)


def test_fit_takes_the_scores_unless_told_not_to(open_asset, tmp_path):
    """`backend fit` on a rendered close-up keeps the face's scores in its result and fits
    with them; `--no-face-scores` takes none."""
    from PIL import Image

    from backend.body.asset import save_asset
    from backend.cli import main
    from backend.paths import assets_dir
    from backend.results import load_results

    names = open_asset.meta["expression_names"]
    model = BodyModel(open_asset).double()
    clip = face_clip(model, names, frames=2, seed=3)
    colors = torch.as_tensor(open_asset.arrays["vertex_colors"], dtype=torch.float64)
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, image in enumerate(render_frames(model, clip.params, clip.cam_t, clip.focal,
                                            (1280, 720), colors)):
        Image.fromarray(image).save(folder / f"{t:03d}.png")
    save_asset(open_asset, assets_dir() / "open.npz")
    for flags, name in (([], "with.npz"), (["--no-face-scores"], "without.npz")):
        assert main(["fit", str(folder), "-o", str(tmp_path / name), "--focal", "1100",
                     *flags]) == 0
    with_scores, without = (load_results(tmp_path / name) for name in ("with.npz", "without.npz"))
    scores = with_scores.detections["face_scores"]
    assert scores.shape == (2, 52) and np.isfinite(scores).all()
    assert "face_scores" not in without.detections
    assert np.abs(with_scores.params["expression"] - without.params["expression"]).max() > 0.02
