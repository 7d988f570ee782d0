"""The server's avatar ops over real sockets: a person built from one rendered image with a
(barely) trained renderer, rendered in a motion's poses where the body is in its frame; the
ops unavailable without a renderer; bad requests typed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.pipeline.avatar_frames import AvatarFrame, place_in_frame
from backend.results import results_to_message
from backend.server.client import BackendError, Client
from backend.server.process import serve_process
from backend.server.protocol import ErrorCode

from .avatar_scene import SIZE, avatar_scene


@pytest.fixture(scope="module")
def scene(open_asset, tmp_path_factory):
    return avatar_scene(open_asset, tmp_path_factory.mktemp("server_avatar"), frames=3)


@pytest.fixture(scope="module")
def server(server_home, smoke_renderer):
    with serve_process(server_home, "--renderer", str(smoke_renderer),
                       "--session-timeout", "600") as running:
        yield running


def _decode_png(data: bytes) -> np.ndarray:
    bgra = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)


def test_place_in_frame_puts_the_crop_where_the_body_is():
    alpha = np.zeros((256, 192), np.float32)
    alpha[120:136, 90:102] = 1.0  # a blob at the crop's centre
    frame = AvatarFrame(np.full((256, 192, 3), 200, np.uint8), alpha,
                        center=np.array([500.0, 150.0]), height=128.0)
    rgba = place_in_frame(frame, width=640, height=480, max_side=320)  # half size
    assert rgba.shape == (240, 320, 4)
    ys, xs = np.nonzero(rgba[..., 3] > 127)
    # The blob's centre, (96, 128) in the crop, is the box centre (500, 150) in the frame.
    assert abs(xs.mean() - 250) < 1.5 and abs(ys.mean() - 75) < 1.5
    # A crop pixel is half a frame pixel (height 128 of 256), a quarter of an output pixel.
    assert rgba[..., 3].sum() / 255 == pytest.approx(16 * 12 / 16, rel=0.2)


def test_an_avatar_is_built_and_rendered_over_the_footage(server, scene):
    images, motion = scene
    with Client(server.endpoint, timeout=600) as client:
        (hello,) = client.hello()
        assert hello["avatar"] == {"available": True, "reason": ""}
        avatar = client.build_avatar(images[0])
        assert avatar.gaussians > 10_000 and len(avatar.source.frames) == 1
        rendered = avatar.render(motion, frames=[0, 2], max_side=320)
        assert rendered.frames == [0, 2] and rendered.size == (320, 240)
        for t, png, box in zip([0, 2], rendered.images, rendered.boxes, strict=True):
            rgba = _decode_png(png)
            assert rgba.shape == (240, 320, 4)
            ys, xs = np.nonzero(rgba[..., 3] > 127)
            assert len(xs) > 500  # the avatar covers a body's worth of pixels
            # ...inside its box, which holds the true body (scaled to the image's half size).
            assert (xs.min() >= box[0] / 2 - 2 and xs.max() <= box[2] / 2 + 2
                    and ys.min() >= box[1] / 2 - 2 and ys.max() <= box[3] / 2 + 2)
            true_body = cv2.resize(images[t], (320, 240)).sum(2) > 0
            assert true_body[ys, xs].mean() > 0.5  # where the performer is in that frame
        status = client.status()[0]
        assert status["avatars"] == 1
        avatar.drop()
        assert client.status()[0]["avatars"] == 0
        with pytest.raises(BackendError) as dropped:
            avatar.render(motion, frames=[0])
        assert dropped.value.code == ErrorCode.UNKNOWN_SESSION


def test_bad_avatar_requests_get_typed_errors(server, scene, open_asset):
    images, motion = scene
    with Client(server.endpoint, timeout=600) as client, \
            Client(server.endpoint, timeout=600) as other:
        blank = np.zeros((*SIZE, 3), np.uint8)
        with pytest.raises(BackendError) as nobody:
            client.build_avatar(blank)
        assert nobody.value.code == ErrorCode.PERSON_NOT_FOUND
        pending = client.send_avatar_build(images[0])
        busy = client.send_avatar_build(images[1])  # two avatars may build at once
        avatar = pending.wait()
        busy.wait().drop()
        message = results_to_message(motion)
        cases = {
            "frames past the motion": ({"frames": [3]}, "past the motion"),
            "another body model": ({"motion": {**message, "spec_hash": "x"}},
                                   "recovered with body model"),
            "wrong pose shape": ({"motion": {**message, "params": {
                **motion.params, "body_pose": np.zeros((3, 5, 3), np.float32)}}},
                "'body_pose' has shape"),
            "not a result": ({"motion": {"frames": [0]}}, "'motion'"),
            "too many frames": ({"frames": list(range(65))}, "'frames'"),
        }
        for label, (change, words) in cases.items():
            request = {"op": "avatar.render", "avatar": avatar.id, "motion": message,
                       "frames": None, **change}
            with pytest.raises(BackendError) as refused:
                client._connections[0].request(request)
            assert refused.value.code == ErrorCode.BAD_FIELD and words in str(refused.value), \
                label
        first = avatar.send_render(motion, frames=[0])
        with pytest.raises(BackendError) as one_at_a_time:
            client._connections[0].request({"op": "avatar.render", "avatar": avatar.id,
                                             "motion": message, "frames": [1]})
        assert one_at_a_time.value.code == ErrorCode.BUSY
        assert avatar.rendered(client._connections[0].receive(first, 600)).frames == [0]
        with pytest.raises(BackendError) as not_yours:
            other._connections[0].request({"op": "avatar.drop", "avatar": avatar.id})
        assert not_yours.value.code == ErrorCode.UNKNOWN_SESSION
        avatar.drop()


def test_without_a_renderer_the_avatar_ops_say_why(server_home, scene):
    images, _ = scene
    with serve_process(server_home) as bare, Client(bare.endpoint) as client:
        (hello,) = client.hello()
        assert not hello["avatar"]["available"]
        assert "no renderer checkpoint" in hello["avatar"]["reason"]
        with pytest.raises(BackendError) as refused:
            client.build_avatar(images[0])
        assert refused.value.code == ErrorCode.UNAVAILABLE
        assert "pear-train renderer" in str(refused.value)
