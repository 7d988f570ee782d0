"""backend eval coco-wholebody on a tiny COCO-WholeBody set the test renders itself."""

import json

import numpy as np
import pytest
import torch

from backend.body.model import BodyModel
from backend.errors import InputError
from backend.evaluation.coco_wholebody import (
    COCO17_FROM_POSE33,
    FACE68_FROM_MESH478,
    evaluate,
    fuse_detections,
    pck_counts,
)
from backend.perception.holistic import FACE, HAND, POSE, FrameLandmarks
from backend.tracking.render_clip import render_frames
from backend.tracking.synthetic import make_clip

cv2 = pytest.importorskip("cv2")


def test_pck_counts_missing_predictions_as_wrong():
    truth = np.array([[0, 0, 2], [10, 0, 2], [5, 5, 0]], float)
    predicted = np.array([[1, 0, 1], [30, 0, 1], [5, 5, 1]], float)
    assert pck_counts(predicted, truth, threshold=5) == (1, 2)
    predicted[0, 2] = 0
    assert pck_counts(predicted, truth, threshold=5) == (0, 2)


def _crop(pose, hand, world):
    """A crop's detection: ``pose`` and ``world`` given, ``hand`` as the left, nothing else."""
    return FrameLandmarks(pose, np.zeros((FACE, 3)), hand, np.zeros((HAND, 3)), world)


def test_fused_crops_outvote_a_stray_point_and_keep_parts_one_crop_found():
    pose = np.zeros((POSE, 3))
    pose[:, :2] = np.linspace(10, 300, 2 * POSE).reshape(POSE, 2)
    pose[:, 2] = 0.9
    stray = pose.copy()
    stray[1, :2] = (300, -40)  # one crop put the second point far off
    hand = np.zeros((HAND, 3))
    hand[:, :2], hand[:, 2] = pose[15, :2] + 3, 0.7  # on the pose's left wrist
    missed = np.zeros_like(hand)
    world = np.ones((POSE, 4))
    fused = fuse_detections([_crop(pose, hand, world), _crop(stray, missed, 3 * world),
                             _crop(pose + [2, 0, 0], missed, 2 * world)])
    np.testing.assert_allclose(fused.pose[:2], [[pose[0, 0], pose[0, 1], 0.9],
                                                [pose[1, 0] + 2, pose[1, 1], 0.9]])  # medians
    np.testing.assert_allclose(fused.left_hand, hand)  # found by one crop only
    np.testing.assert_array_equal(fused.right_hand, missed)  # found by none
    np.testing.assert_allclose(fused.pose_world, 2 * world)  # the metric pose fused alike


def test_a_crops_hand_on_another_arm_is_dropped():
    """A wide crop found a left hand far from the fused pose's left wrist (a neighbour's): it
    does not count, while the same hand on the wrist does."""
    pose = np.zeros((POSE, 3))
    pose[[11, 12, 23, 24], :2] = [(120, 100), (80, 100), (115, 200), (85, 200)]  # torso 100 px
    pose[15, :2] = (140, 190)
    pose[:, 2] = 0.9
    far = np.zeros((HAND, 3))
    far[:, :2], far[:, 2] = (140 + 60, 190), 1.0  # 0.6 torso from the wrist
    near = far.copy()
    near[:, 0] = 140 + 20
    world = np.zeros((POSE, 4))
    assert not fuse_detections([_crop(pose, far, world)]).left_hand.any()
    np.testing.assert_allclose(fuse_detections([_crop(pose, near, world)]).left_hand, near)


def test_crop_scales_must_be_positive(tmp_path, open_asset):
    with pytest.raises(InputError, match="above 0"):
        evaluate(tmp_path, BodyModel(open_asset), crop_scales=(1.5, 0.0))


def test_face68_indices_are_valid_and_distinct():
    assert len(FACE68_FROM_MESH478) == 68 and len(set(FACE68_FROM_MESH478)) == 68
    assert max(FACE68_FROM_MESH478) < 478 and len(COCO17_FROM_POSE33) == 17


def test_eval_on_rendered_people(open_asset, tmp_path):
    model = BodyModel(open_asset)
    clip = make_clip(model, frames=2, seed=8, size=(480, 640), focal=700.0)
    colors = torch.as_tensor(open_asset.arrays["vertex_colors"], dtype=torch.float64)
    frames = render_frames(model, clip.params, clip.cam_t, clip.focal, (480, 640), colors)
    parts = clip.keypoints.parts
    images, annotations = [], []
    for t, frame in enumerate(frames):
        name = f"{t:03d}.jpg"
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        visible = np.argwhere(frame.min(axis=2) < 180)  # the body, against the grey background
        (y0, x0), (y1, x1) = visible.min(0), visible.max(0)

        def keypoints(points):
            return np.concatenate([points[:, :2], np.full((len(points), 1), 2.0)], 1).ravel()

        images.append({"id": t, "file_name": name, "width": 480, "height": 640})
        annotations.append({
            "image_id": t, "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "keypoints": keypoints(parts["pose"][t][COCO17_FROM_POSE33]).tolist(),
            "face_kpts": keypoints(parts["face"][t][FACE68_FROM_MESH478]).tolist(),
            "lefthand_kpts": keypoints(parts["left_hand"][t]).tolist(),
            "righthand_kpts": keypoints(parts["right_hand"][t]).tolist(),
        })
    (tmp_path / "toy_wholebody.json").write_text(json.dumps(
        {"images": images, "annotations": annotations}))
    result = evaluate(tmp_path, model, iterations=(40, 80, 60))
    assert set(result) == {"detector", "fit"}
    for source in result.values():
        assert set(source) == {"body", "left_hand", "right_hand", "face"}
        assert source["body"]["n"] == 34 and source["face"]["n"] == 136
    assert result["detector"]["body"]["pck10"] > 0.8
    assert result["fit"]["body"]["pck10"] > 0.8
    assert result["fit"]["face"]["pck05"] > 0.8
