"""``backend serve`` and its client over real ZeroMQ sockets on loopback, the server running as
a real subprocess."""

from __future__ import annotations

import threading
import time

import cv2
import msgpack
import numpy as np
import pytest
import zmq

from backend.perception.frames import Frame
from backend.perception.holistic import detect_clip
from backend.pipeline.demo import demo_frames
from backend.pipeline.recovery import recover_clip
from backend.server.client import BackendError, BackendTimeout, Client, VersionMismatch, frames_of
from backend.server.images import encode_image
from backend.server.process import serve_process
from backend.server.protocol import ErrorCode, pack, unpack

from .server_process import noise_frames


@pytest.fixture(scope="module")
def server(server_home):
    with serve_process(server_home, "--session-timeout", "600") as running:
        yield running


@pytest.fixture(scope="module")
def clip_frames(open_asset) -> list[np.ndarray]:
    """Ten frames of the open model performing: footage the project renders itself."""
    return demo_frames(open_asset, 10)


def test_hello_describes_the_server(server):
    with Client(server.endpoint) as client:
        (hello,) = client.hello()
    assert hello["server"] == "pear-backend" and 1 in hello["protocols"]
    assert hello["device"] == "cpu"
    assert {e["name"] for e in hello["estimators"]} == {"tracker", "regressor",
                                                        "regressor+tracker", "detector"}
    spec = {p["name"]: p for p in hello["assets"]["open"]["params"]}
    assert spec["body_pose"]["shape"] == [21, 3] and spec["expression"]["shape"] == [52]
    assert len(hello["assets"]["open"]["joint_names"]) == 55


# Ten frames through a window of four; the fast run's three through a window of two still
# refill the window and fit a clip.
@pytest.mark.parametrize(("count", "window"), [pytest.param(10, 4, marks=pytest.mark.slow),
                                               (3, 2)])
def test_a_clip_through_the_server_equals_the_in_process_result(server, clip_frames, open_asset,
                                                                 count, window):
    frames = clip_frames[:count]
    with Client(server.endpoint, timeout=60) as client:
        session = client.open_session(estimator="tracker", fps=30.0, smooth=1.0)
        replies = list(session.stream(frames_of(frames), window=window,
                                      image_format="png"))
        served = session.finish()
    assert [r["index"] for r in replies] == list(range(count))

    height, width = frames[0].shape[:2]
    detections = detect_clip([Frame(i, i / 30, image) for i, image in enumerate(frames)],
                             width, height)
    local, _ = recover_clip(detections, 30.0, open_asset, smooth=1.0)
    for part, points in detections.parts.items():
        np.testing.assert_array_equal(served.detections[part], points)
        streamed = np.stack([r["result"]["detections"][part] for r in replies])
        np.testing.assert_allclose(streamed, points, atol=1e-4)  # float32 on the wire
    assert served.params.keys() == local.params.keys()
    for name, value in local.params.items():
        np.testing.assert_allclose(served.params[name], value, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(served.cam_t, local.cam_t, atol=1e-5)
    assert served.asset_id == "open" and served.spec_hash == open_asset.spec_hash


def test_every_still_format_the_addon_lists_reaches_the_detector_as_the_same_pixels(
        server, clip_frames, tmp_path):
    """The add-on sends a folder's stills as their files' bytes (BMP, TIFF, WebP as well as
    PNG, JPEG): the server decodes each to the pixels the PNG holds."""
    from pear_recover_mesh.footage import image_sequence

    detected = {}
    for suffix, params in ((".png", []), (".bmp", []), (".tif", []),
                           (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])):  # lossless
        folder = tmp_path / suffix[1:]
        folder.mkdir()
        for index, image in enumerate(clip_frames[:2]):
            cv2.imwrite(str(folder / f"frame{index}{suffix}"),
                        cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
        with Client(server.endpoint, timeout=60) as client:
            session = client.open_session(estimator="detector")
            replies = [session.receive(session.send_frame(index, time_s, encoded))
                       for index, time_s, encoded in image_sequence(folder).frames()]
            session.finish()
        detected[suffix] = np.stack([r["result"]["detections"]["pose"] for r in replies])
    assert (detected[".png"][..., 2] > 0.5).any()  # somebody was found
    for suffix in (".bmp", ".tif", ".webp"):
        np.testing.assert_array_equal(detected[suffix], detected[".png"], err_msg=suffix)


# 500 frames each; the fast run's 60 still go round each client's window of 16 several times.
@pytest.mark.parametrize("frames_per_client", [pytest.param(500, marks=pytest.mark.slow), 60])
def test_eight_clients_at_once_nothing_lost_or_mismatched(server, frames_per_client):
    results, errors = {}, []

    def run(client_number: int) -> None:
        try:
            with Client(server.endpoint, timeout=120) as client:
                session = client.open_session(estimator="detector")
                frames = noise_frames(frames_per_client, client_number)
                indices = [(r["session"], r["index"]) for r in session.stream(
                    frames_of(frames), window=16, image_format="raw")]
                final = session.finish()
                results[client_number] = (session.id, indices, final)
        except Exception as exc:  # reported below, with the client it happened to
            errors.append((client_number, repr(exc)))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    assert len(results) == 8
    for session_id, indices, final in results.values():
        assert indices == [(session_id, i) for i in range(frames_per_client)]
        assert final["count"] == frames_per_client
        np.testing.assert_array_equal(final["frames"], np.arange(frames_per_client))
        assert final["detections"]["pose"].shape == (frames_per_client, 33, 3)
    with Client(server.endpoint) as client:
        assert client.status()[0]["sessions"] == 0


@pytest.mark.parametrize("examples", [pytest.param(10_000, marks=pytest.mark.slow), 500])
def test_fuzzed_messages_get_typed_errors_and_the_server_stays_up(server, examples):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(server.endpoint)
    with Client(server.endpoint) as helper:
        sessions_before = helper.status()[0]["sessions"]
        session = helper.open_session(estimator="detector")
    codes: dict[str, int] = {}
    counter = {"sent": 0, "index": 0}
    rss_before = server.rss_mb()

    integers = st.integers(-(2**63), 2**64 - 1)  # what msgpack can carry
    scalars = st.none() | st.booleans() | integers | st.floats() | st.text(max_size=20) \
        | st.binary(max_size=50)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
    good_jpeg = encode_image(noise_frames(1, 0)[0], "jpeg")["data"]

    def frame(image) -> dict:
        counter["index"] += 1
        return {"v": 1, "id": counter["sent"], "op": "frame", "session": session.id,
                "index": counter["index"], "image": image}

    payloads = st.one_of(
        st.binary(max_size=200),  # not msgpack, or msgpack of anything
        values.map(lambda v: msgpack.packb(v, use_bin_type=True)),
        st.dictionaries(st.text(max_size=10), values, max_size=6).map(pack),  # random maps
        st.fixed_dictionaries({"v": values, "id": values, "op": values}).map(pack),
        st.fixed_dictionaries({"v": st.sampled_from([0, 1, 2]), "id": st.integers(0, 10**6),
                               "op": st.sampled_from(["ping", "hello", "frame", "x"])}).map(pack),
        st.fixed_dictionaries({"v": st.just(1), "id": st.integers(0, 10**6),
                               "op": st.sampled_from(["session.open", "frame", "cancel",
                                                      "session.close"]),
                               "session": values, "index": values, "image": values,
                               "smooth": values, "fps": values, "estimator": values}).map(pack),
        st.integers(1, len(good_jpeg) - 1).map(  # truncated images in a live session
            lambda n: pack(frame({"format": "jpeg", "data": good_jpeg[:n]}))),
        st.binary(min_size=1, max_size=300).map(  # garbage raw pixels of a claimed shape
            lambda data: pack(frame({"format": "raw", "data": data, "shape": [10, 10, 3]}))),
    )
    known = {v for k, v in vars(ErrorCode).items() if k.isupper() and isinstance(v, str)}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(payloads)
    def check(payload: bytes) -> None:
        counter["sent"] += 1
        socket.send(payload)
        assert socket.poll(10_000), f"no reply to {payload[:80]!r}"
        reply = unpack(socket.recv())
        if reply["ok"]:  # a random map can be a valid request (ping, hello, a new session)
            codes["ok"] = codes.get("ok", 0) + 1
            if "session" in reply and "window" in reply:  # opened one: do not leak it
                socket.send(pack({"v": 1, "id": 0, "op": "cancel",
                                  "session": reply["session"]}))
                assert unpack(socket.recv())["ok"]
            return
        assert reply["error"]["code"] in known, reply
        codes[reply["error"]["code"]] = codes.get(reply["error"]["code"], 0) + 1

    try:
        check()
    finally:
        socket.close()
    # A message over the size limit is dropped by ZeroMQ (its connection closed), unanswered.
    big = context.socket(zmq.DEALER)
    big.setsockopt(zmq.LINGER, 0)
    big.connect(server.endpoint)
    big.send(b"\x00" * (65 * 2**20))
    assert not big.poll(1000)
    big.close()
    with Client(server.endpoint) as client:
        assert client.ping()[0] < 1.0
        # Only the helper's session was added.
        assert client.status()[0]["sessions"] == sessions_before + 1
    context.term()
    assert counter["sent"] >= examples, counter
    for code in ("bad_message", "bad_version", "unknown_op", "bad_field", "bad_image"):
        assert codes.get(code), (code, codes)
    assert server.rss_mb() - rss_before < 150, (rss_before, server.rss_mb())


def test_a_corrupt_frame_is_refused_and_the_rest_of_the_clip_is_kept(server):
    frames = noise_frames(4, 1)
    with Client(server.endpoint) as client:
        session = client.open_session(estimator="detector")
        ids = [session.send_frame(0, 0.0, frames[0], "png"),
               session.send_frame(1, 0.1, {"format": "png", "data": b"\x89PNG\r\n\x1a\nbroken"}),
               session.send_frame(2, 0.2, frames[2], "png"),
               session.send_frame(3, 0.3, noise_frames(1, 2, size=(20, 20))[0], "png")]
        assert session.receive(ids[0])["index"] == 0
        with pytest.raises(BackendError) as corrupt:
            session.receive(ids[1])
        assert corrupt.value.code == ErrorCode.BAD_IMAGE and "frame 1" in corrupt.value.message
        assert session.receive(ids[2])["index"] == 2
        with pytest.raises(BackendError, match="open a new session per clip"):
            session.receive(ids[3])
        with pytest.raises(BackendError) as order:
            session.receive(session.send_frame(2, 0.2, frames[2]))
        assert order.value.code == ErrorCode.BAD_FRAME_ORDER
        final = session.finish()
    np.testing.assert_array_equal(final["frames"], [0, 2])


def test_sessions_belong_to_the_client_that_opened_them(server):
    with Client(server.endpoint) as owner, Client(server.endpoint) as other:
        session = owner.open_session(estimator="detector")
        stolen = type(session)(other._connections[0], session.id, session.window)
        with pytest.raises(BackendError) as caught:
            stolen.cancel()
        assert caught.value.code == ErrorCode.UNKNOWN_SESSION
        assert session.cancel() == 0


def test_a_slow_client_does_not_stall_others(server):
    with Client(server.endpoint, timeout=60) as slow, Client(server.endpoint) as fast:
        lazy = slow.open_session(estimator="detector")
        owed = [lazy.send_frame(i, i / 30, image, "raw")
                for i, image in enumerate(noise_frames(lazy.window, 3))]
        # The slow client reads nothing; the fast one still gets through promptly.
        session = fast.open_session(estimator="detector")
        start = time.monotonic()
        count = sum(1 for _ in session.stream(frames_of(noise_frames(30, 4)), window=4,
                                              image_format="raw"))
        fast_s = time.monotonic() - start
        assert count == 30 and session.finish()["count"] == 30
        # Nothing the slow client was owed is lost.
        assert [lazy.receive(request_id)["index"] for request_id in owed] == list(range(len(owed)))
        assert lazy.cancel() == 0
    assert fast_s < 30, fast_s


def test_frames_beyond_the_window_are_refused_busy_not_dropped(server):
    with Client(server.endpoint) as client:
        session = client.open_session(estimator="detector")
        frames = noise_frames(3 * session.window, 6)
        # Sent back to back (a few ms) while each takes the detector >10 ms: most of the
        # frames beyond the first window find it full.
        ids = [session.send_frame(i, 0.0, image, "raw") for i, image in enumerate(frames)]
        outcomes = []
        for request_id in ids:
            try:
                outcomes.append(session.receive(request_id)["index"])
            except BackendError as exc:
                outcomes.append(exc.code)
        session.cancel()
    accepted = [o for o in outcomes if isinstance(o, int)]
    assert len(accepted) >= session.window and accepted == sorted(accepted)
    assert outcomes.count(ErrorCode.BUSY) >= session.window
    assert len(accepted) + outcomes.count(ErrorCode.BUSY) == len(frames)


def test_version_mismatch_and_an_absent_server_give_clear_errors(server):
    with Client(server.endpoint) as client, pytest.raises(VersionMismatch, match="version 2"):
        client._connections[0].request({"op": "ping", "v": 2})
    with Client("tcp://127.0.0.1:9", timeout=0.5) as client, \
            pytest.raises(BackendTimeout, match="backend serve"):
        client.ping()


def test_a_session_follows_the_person_it_asked_for(server, two_people_frames):
    with Client(server.endpoint, timeout=60) as client:
        session = client.open_session(estimator="detector", person=2)
        replies = list(session.stream(frames_of(two_people_frames[:3]), image_format="png"))
        session.finish()
        pose = np.stack([r["result"]["detections"]["pose"] for r in replies])
        assert (pose[:, :, 2] > 0.5).any(1).all()
        assert (pose[pose[:, :, 2] > 0.5][:, 0] > 360).all()  # the right (smaller) person
        box = replies[-1]["result"]["detections"]["box"]
        assert box.shape == (4,) and box[0] > 360

        # The next stretch of the clip follows on from the last box.
        session = client.open_session(estimator="detector", person_box=box)
        replies = list(session.stream(frames_of(two_people_frames[3:]), image_format="png"))
        session.finish()
        pose = np.stack([r["result"]["detections"]["pose"] for r in replies])
        assert (pose[pose[:, :, 2] > 0.5][:, 0] > 360).all() and len(replies) == 3

        session = client.open_session(estimator="detector", person=3)
        with pytest.raises(BackendError) as caught:
            list(session.stream(frames_of(two_people_frames[:1]), image_format="png"))
        assert caught.value.code == ErrorCode.PERSON_NOT_FOUND
        assert "shows 2 people" in str(caught.value)
        with pytest.raises(BackendError, match="'person' = 9 is outside"):
            client.open_session(estimator="detector", person=9)
        with pytest.raises(BackendError, match="not both"):
            client.open_session(estimator="detector", person=1, person_box=box)
        with pytest.raises(BackendError, match="x0 < x1"):
            client.open_session(estimator="detector", person_box=[5, 0, 1, 9])
