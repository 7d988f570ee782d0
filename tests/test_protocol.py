"""The wire protocol's validation and encodings, without sockets."""

import struct
import subprocess
import sys

import cv2
import msgpack
import numpy as np
import pytest

from backend.server.images import decode_image, encode_image, jpeg_size, png_size
from backend.server.protocol import (
    MAX_IMAGE_SIDE,
    ErrorCode,
    ImagePayload,
    ProtocolError,
    decode_array,
    decode_arrays,
    encode_array,
    error_reply,
    ok_reply,
    pack,
    parse_reply,
    parse_request,
    unpack,
)
from backend.server.server import is_loopback


def request(op: str, **fields) -> dict:
    return {"v": 1, "id": 7, "op": op, **fields}


def code_of(message) -> str:
    with pytest.raises(ProtocolError) as caught:
        parse_request(unpack(pack(message)) if isinstance(message, dict) else message)
    return caught.value.code


def test_a_valid_frame_request_parses_into_typed_fields():
    image = encode_image(np.zeros((4, 6, 3), np.uint8), "raw")
    parsed = parse_request(unpack(pack(request("frame", session="abc", index=3, time=0.1,
                                               image=image))))
    assert (parsed.op, parsed.id, parsed.session) == ("frame", 7, "abc")
    assert parsed.fields == {"index": 3, "time": 0.1}
    assert parsed.image.shape == (4, 6, 3)


def test_session_open_fills_defaults_and_checks_ranges():
    parsed = parse_request(request("session.open"))
    assert parsed.fields == {"estimator": "tracker", "asset": "open", "smooth": 1.0,
                             "fps": 30.0, "intrinsics": None, "rig": False, "subject": None,
                             "person": None, "person_box": None, "adapter": None,
                             "live": False}
    assert parse_request(request("session.open", live=True)).fields["live"] is True
    for bad in ({"live": 1}, {"live": True, "estimator": "detector"}):
        assert code_of(request("session.open", **bad)) == ErrorCode.BAD_FIELD
    assert code_of(request("session.open", smooth=-1)) == ErrorCode.BAD_FIELD
    assert parse_request(request("session.open", adapter="actor-2.v1")).fields[
        "adapter"] == "actor-2.v1"
    for bad in ("", ".hidden", "a/b", "x" * 65, 7):
        assert code_of(request("session.open", adapter=bad)) == ErrorCode.BAD_FIELD
    assert code_of(request("session.open", fps=float("nan"))) == ErrorCode.BAD_FIELD
    assert code_of(request("session.open", intrinsics={"focal": "x"})) == ErrorCode.BAD_FIELD
    assert parse_request(request("session.open", intrinsics={"focal": 900})).fields[
        "intrinsics"] == {"focal": 900}


def test_capture_ops_name_a_source_and_their_capture():
    parsed = parse_request(request("capture.start", source="rtsp://cam.local/stream"))
    assert parsed.fields == {"source": "rtsp://cam.local/stream", "estimator": "tracker",
                             "asset": "open", "smooth": 1.0, "intrinsics": None,
                             "adapter": None}
    assert parse_request(request("capture.poll", capture="c1")).fields == {
        "capture": "c1", "after": -1, "rig": False}
    assert parse_request(request("capture.stop", capture="c1")).fields == {"capture": "c1"}
    for op, bad in (("capture.start", {}), ("capture.start", {"source": ""}),
                    ("capture.start", {"source": "x" * 1025}),
                    ("capture.start", {"source": "0", "estimator": "detector"}),
                    ("capture.poll", {}), ("capture.poll", {"capture": "c1", "after": -2}),
                    ("capture.poll", {"capture": "c1", "after": 1.5}), ("capture.stop", {})):
        assert code_of(request(op, **bad)) == ErrorCode.BAD_FIELD, (op, bad)


def test_session_open_person_is_a_number_or_a_box():
    assert parse_request(request("session.open", person=2)).fields["person"] == 2
    box = parse_request(request("session.open", person_box=[1, 2, 30.5, 40])).fields
    assert box["person_box"] == [1.0, 2.0, 30.5, 40.0] and box["person"] is None
    for bad in ({"person": 0}, {"person": 9}, {"person": 1.5}, {"person": True},
                {"person_box": [1, 2, 3]}, {"person_box": [3, 0, 1, 5]},
                {"person_box": [0, 0, float("nan"), 5]}, {"person_box": "0 0 5 5"},
                {"person": 1, "person_box": [0, 0, 5, 5]}):
        assert code_of(request("session.open", **bad)) == ErrorCode.BAD_FIELD, bad


def test_session_open_subject_is_a_bounded_map_of_finite_numbers():
    subject = {"betas": [0.5, -1, 2.0], "head_scale": [1.0, 1.0, 1.0]}
    assert parse_request(request("session.open", subject=subject)).fields["subject"] == {
        "betas": [0.5, -1.0, 2.0], "head_scale": [1.0, 1.0, 1.0]}
    for bad in ([1.0], {"betas": 1.0}, {"betas": [float("inf")]}, {"betas": [True]},
                {"betas": ["1"]}, {"": [1.0]}, {"betas": [0.0] * 5000}):
        assert code_of(request("session.open", subject=bad)) == ErrorCode.BAD_FIELD, bad


@pytest.mark.parametrize(("message", "code"), [
    ({"id": 1, "op": "ping"}, ErrorCode.BAD_VERSION),
    ({"v": 2, "id": 1, "op": "ping"}, ErrorCode.BAD_VERSION),
    ({"v": True, "id": 1, "op": "ping"}, ErrorCode.BAD_VERSION),
    ({"v": 1, "op": "ping"}, ErrorCode.BAD_FIELD),
    ({"v": 1, "id": -1, "op": "ping"}, ErrorCode.BAD_FIELD),
    ({"v": 1, "id": "x" * 65, "op": "ping"}, ErrorCode.BAD_FIELD),
    ({"v": 1, "id": 1, "op": "explode"}, ErrorCode.UNKNOWN_OP),
    ({"v": 1, "id": 1, "op": 5}, ErrorCode.UNKNOWN_OP),
    ({"v": 1, "id": 1, "op": "frame", "index": 0,
      "image": {"format": "png", "data": b"x"}}, ErrorCode.BAD_FIELD),  # no session
    (request("frame", session="s", index=-1, image={"format": "png", "data": b"x"}),
     ErrorCode.BAD_FIELD),
    (request("frame", session="s", index=1.5, image={"format": "png", "data": b"x"}),
     ErrorCode.BAD_FIELD),
    (request("frame", session="s", index=0, image={"format": "gif", "data": b"x"}),
     ErrorCode.BAD_FIELD),
    (request("frame", session="s", index=0, image={"format": "raw", "data": b"xyz",
                                                    "shape": [1, 1, 3, 1]}),
     ErrorCode.BAD_FIELD),
    (request("frame", session="s", index=0, image={"format": "raw", "data": b"xy",
                                                    "shape": [1, 1, 3]}),
     ErrorCode.BAD_IMAGE),
    (request("frame", session="s", index=0, image={
        "format": "raw", "data": b"x", "shape": [MAX_IMAGE_SIDE + 1, 1, 3]}),
     ErrorCode.BAD_FIELD),
    (request("ping", **{f"f{i}": i for i in range(40)}), ErrorCode.BAD_FIELD),
])
def test_malformed_requests_get_typed_errors(message, code):
    assert code_of(message) == code


def test_unpack_refuses_non_maps_extensions_and_garbage():
    for data in (b"\xc1", msgpack.packb([1, 2]), msgpack.packb(msgpack.ExtType(5, b"x")),
                 msgpack.packb({1: 2}), b""):
        with pytest.raises(ProtocolError) as caught:
            unpack(data)
        assert caught.value.code == ErrorCode.BAD_MESSAGE


def test_arrays_round_trip_and_bad_arrays_are_refused():
    for array in (np.arange(12, dtype=np.float32).reshape(3, 4), np.array([True, False]),
                  np.zeros((0, 3)), np.arange(5, dtype=">i4")):
        back = decode_array(unpack(pack({"a": array}))["a"])
        np.testing.assert_array_equal(back, array)
    nested = decode_arrays(unpack(pack({"x": [{"y": np.ones(2)}], "z": 1})))
    np.testing.assert_array_equal(nested["x"][0]["y"], np.ones(2))
    good = encode_array(np.ones((2, 2), np.float32))
    for broken in ({**good, "shape": [3, 2]}, {**good, "dtype": "<U4"}, {**good, "shape": "2"}):
        with pytest.raises(ProtocolError):
            decode_array(broken)
    with pytest.raises(TypeError):
        encode_array(np.array(["text"]))


def test_replies_are_checked_on_the_client_side():
    assert parse_reply(ok_reply(3, x=1))["x"] == 1
    assert parse_reply(error_reply(3, "busy", "wait"))["error"]["code"] == "busy"
    with pytest.raises(ProtocolError):
        parse_reply({"v": 1, "id": 3, "ok": False})
    with pytest.raises(ProtocolError):
        parse_reply({"v": 9, "id": 3, "ok": True})


def _png(width: int, height: int) -> bytes:
    return cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))[1].tobytes()


def test_image_sizes_come_from_headers_before_decoding():
    assert png_size(_png(7, 5)) == (7, 5)
    jpeg = cv2.imencode(".jpg", np.zeros((9, 11, 3), np.uint8))[1].tobytes()
    assert jpeg_size(jpeg) == (11, 9)
    # A tiny PNG whose header claims 60000 x 60000 pixels is refused without decoding it.
    bomb = bytearray(_png(2, 2))
    bomb[16:24] = struct.pack(">II", 60000, 60000)
    with pytest.raises(ProtocolError, match="outside the limits"):
        decode_image(ImagePayload("png", bytes(bomb)))


@pytest.mark.parametrize("image_format", ["bmp", "tiff", "webp"])
def test_bmp_tiff_and_webp_frames_decode_and_their_headers_are_checked_first(image_format):
    rgb = np.random.default_rng(0).integers(0, 255, (9, 11, 3), dtype=np.uint8)
    encoded = encode_image(rgb, image_format, quality=101)  # WebP above 100: lossless
    assert parse_request(request("frame", session="s", index=0, image=encoded)).image.format \
        == image_format
    np.testing.assert_array_equal(decode_image(ImagePayload(image_format, encoded["data"])), rgb)
    with pytest.raises(ProtocolError, match=f"not a {image_format} file"):
        decode_image(ImagePayload(image_format, _png(4, 4)))


@pytest.mark.parametrize("side", [5000, 60000])  # beyond our limit; beyond Pillow's own too
def test_a_bmp_claiming_a_huge_image_is_refused_without_decoding_it(side):
    bomb = bytearray(cv2.imencode(".bmp", np.zeros((2, 2, 3), np.uint8))[1].tobytes())
    bomb[18:26] = struct.pack("<ii", side, side)  # BITMAPINFOHEADER width, height
    with pytest.raises(ProtocolError, match="outside the limits") as caught:
        decode_image(ImagePayload("bmp", bytes(bomb)))
    assert caught.value.code == ErrorCode.BAD_IMAGE


def test_images_decode_to_rgb_and_corrupt_ones_say_so():
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[..., 0] = 200  # red
    for image_format in ("png", "raw"):
        encoded = encode_image(rgb, image_format)
        shape = tuple(encoded["shape"]) if image_format == "raw" else None
        decoded = decode_image(ImagePayload(image_format, encoded["data"], shape))
        np.testing.assert_array_equal(decoded, rgb)
    jpeg = encode_image(rgb, "jpeg")["data"]
    assert decode_image(ImagePayload("jpeg", jpeg))[..., 0].mean() > 150
    for broken, why in ((jpeg[: len(jpeg) // 3], "does not decode|truncated"),
                        (b"\xff\xd8\xff\xe0\x00", "no frame header"),
                        (b"GIF89a" + bytes(30), "not a JPEG")):
        with pytest.raises(ProtocolError, match=why) as caught:
            decode_image(ImagePayload("jpeg", broken))
        assert caught.value.code == ErrorCode.BAD_IMAGE


@pytest.mark.parametrize(("address", "local"), [
    ("tcp://127.0.0.1:5555", True), ("tcp://localhost:1", True), ("tcp://[::1]:5", True),
    ("ipc:///tmp/x", True), ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False),
    ("tcp://10.1.2.3:5555", False), ("tcp://eth0:5555", False),
    ("tcp://127.0.0.1.example.com:5555", False), ("tcp://127.8.0.1:5", True),
])
def test_loopback_addresses_are_told_apart(address, local):
    assert is_loopback(address) is local


def test_the_client_side_imports_no_torch():
    code = ("import sys, backend.server.client, backend.server.protocol; "
            "print(sorted(m for m in ('torch', 'cv2', 'mediapipe') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
