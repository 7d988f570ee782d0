"""The fitted mesh drawn over footage (``backend fit --overlay``): the cheap rasterizer covers what
the exact one does, the footage shows through, and a clip's overlay video has all its frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from backend.body.model import BodyModel
from backend.camera import to_camera
from backend.perception.frames import open_footage
from backend.pipeline import overlay
from backend.pipeline.overlay import draw_mesh, meshes_on_screen, write_overlay
from backend.renderer.mesh_raster import project, rasterize, visible_faces
from backend.results import ClipResults
from backend.tracking.synthetic import make_clip

WIDTH, HEIGHT, FOCAL = 640, 360, 600.0


@pytest.fixture(scope="module")
def posed(open_asset):
    """A 5-frame clip of the open model seen in a 640x360 frame: model, clip, vertices."""
    model = BodyModel(open_asset)
    clip = make_clip(model, frames=5, seed=3, size=(WIDTH, HEIGHT), focal=FOCAL)
    with torch.no_grad():
        vertices = model({k: v.float() for k, v in clip.params.items()}).vertices
    return model, clip, vertices


def _screen(posed, t, center=(WIDTH / 2, HEIGHT / 2)):
    model, clip, vertices = posed
    camera = to_camera(vertices[t:t + 1], clip.cam_t[t:t + 1])[0]
    return project(camera, FOCAL, center)


def _overlay(image, posed, t, center=(WIDTH / 2, HEIGHT / 2)):
    """Frame t's mesh drawn over ``image``."""
    model, clip, vertices = posed
    screen, colors = meshes_on_screen(vertices[t:t + 1], clip.cam_t[t:t + 1], model.faces,
                                      FOCAL, center)
    return draw_mesh(image, screen[0], colors[0], model.faces.numpy())


def _nearest_faces(screen, faces):
    """visible_faces' answer pasted into the whole frame."""
    face, box = visible_faces(screen.numpy(), faces.numpy(), HEIGHT, WIDTH)
    frame = np.full((HEIGHT, WIDTH), -1)
    frame[box] = face
    return frame


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize("center", [(WIDTH / 2, HEIGHT / 2), (60.0, 0.0)],
                         ids=["whole", "cut by the frame's edges"])
def test_visible_faces_finds_the_exact_rasterizers_faces_for_either_winding(posed, center):
    model, _, _ = posed
    screen = _screen(posed, 0, center)
    exact = rasterize(screen, model.faces, HEIGHT, WIDTH).face.numpy()
    assert (exact >= 0).sum() > 3000  # the person fills a good part of the frame
    for faces in (model.faces, model.faces[:, [0, 2, 1]]):  # culling must not assume a winding
        cheap = _nearest_faces(screen, faces)
        assert _iou(cheap >= 0, exact >= 0) > 0.995
        assert (cheap[exact >= 0] == exact[exact >= 0]).mean() > 0.99


def test_a_mesh_outside_the_frame_leaves_the_footage_alone(posed):
    model, clip, vertices = posed
    face, box = visible_faces(_screen(posed, 0, (-2000.0, 0.0)).numpy(), model.faces.numpy(),
                              HEIGHT, WIDTH)
    assert face.size == 0
    image = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    assert (_overlay(image, posed, 0, (-2000.0, 0.0)) == image).all()


def test_the_overlay_covers_the_mesh_and_lets_the_footage_show_through(posed):
    model, clip, vertices = posed
    exact = (rasterize(_screen(posed, 0), model.faces, HEIGHT, WIDTH).face >= 0).numpy()
    drawn, covered = {}, {}
    for level in (0, 255):
        image = np.full((HEIGHT, WIDTH, 3), level, np.uint8)
        out = _overlay(image, posed, 0)
        covered[level] = (out != image).any(-1)
        assert _iou(covered[level], exact) > 0.97
        drawn[level] = out.astype(int)
    # Blended, not pasted: under the mesh, white footage comes out 0.4 x 255 brighter than black.
    both = covered[0] & covered[255]
    assert both.sum() > 0.97 * exact.sum()
    assert np.abs((drawn[255] - drawn[0])[both] - 102).max() <= 1


def test_write_overlay_draws_the_fitted_frames_of_a_clip(posed, tmp_path, monkeypatch):
    model, clip, vertices = posed
    monkeypatch.setattr(overlay, "FORWARD_CHUNK", 2)  # fitted rows span several forward chunks
    footage = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(footage), cv2.VideoWriter_fourcc(*"mp4v"), 25.0,
                             (WIDTH, HEIGHT))
    for _ in range(6):
        writer.write(np.full((HEIGHT, WIDTH, 3), 40, np.uint8))
    writer.release()
    fitted = [0, 2, 3, 4]  # frame 1 failed, frame 5 was cut: both stay plain footage
    results = ClipResults(
        asset_id=model.asset_id, spec_hash="", frames=np.array(fitted),
        times=np.array(fitted) / 25.0,
        params={k: (v[fitted] if v.shape[0] > 1 else v).numpy().astype(np.float32)
                for k, v in clip.params.items()},
        cam_t=clip.cam_t[fitted].numpy(), focal=FOCAL, center=(WIDTH / 2, HEIGHT / 2),
        width=WIDTH, height=HEIGHT)

    out = write_overlay(results, model, tmp_path / "overlay.mp4", footage=footage)
    frames = [frame.image for frame in open_footage(out)]
    assert len(frames) == 6
    plain = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
    background = frames[1].astype(int)  # plain footage, as the lossy codec gives it back
    assert background.std(axis=(0, 1)).max() < 1
    for index, image in enumerate(frames):
        image = image.astype(int)
        if index in fitted:  # this frame's mesh, not a neighbour's
            expected = _overlay(plain, posed, index)
            mesh = (expected != plain).any(-1)
            assert mesh.sum() > 5000
            assert (np.abs(image - expected)[mesh].mean()
                    < 0.25 * np.abs(image - background)[mesh].mean())
        else:  # the codec may leave a faint trace of the previous frame's mesh
            assert (np.abs(image - background).max(-1) > 20).sum() < 50
