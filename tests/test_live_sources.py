"""Live sources (issue #20): movies written here with OpenCV, played offline and in real time,
served as an HTTP stream; the single-slot hand-over; and every bad source failing at open with a
message that names it and says what to do."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
import time

import cv2
import numpy as np
import pytest

from backend.errors import FootageError, InputError
from backend.live import sources
from backend.live.sources import (
    LatestFrame,
    LiveFrame,
    LiveSource,
    SourceError,
    SourceSpec,
    open_source,
    parse_source,
)

FPS = 30
FRAMES = 45
WIDTH, HEIGHT = 64, 48


def _level(digit: int) -> int:
    return 30 + 25 * digit


def _picture(index: int) -> np.ndarray:
    """Frame ``index`` (BGR): its index in base 8, the high digit as the left half's grey level
    and the low one as the right half's (steps far wider than the codec's error), over a red
    strip that tells RGB from BGR. Every region is whole 16-pixel blocks."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[:32, : WIDTH // 2] = _level(index // 8)
    image[:32, WIDTH // 2:] = _level(index % 8)
    image[32:] = (0, 0, 255)
    return image


def _shown_index(rgb: np.ndarray) -> int:
    """The index a delivered (RGB, maybe resized) frame shows."""
    h, w = rgb.shape[:2]
    top = rgb[h // 12: 7 * h // 12]
    high = np.median(top[:, w // 8: 3 * w // 8])
    low = np.median(top[:, 5 * w // 8: 7 * w // 8])
    return 8 * round((high - 30) / 25) + round((low - 30) / 25)


def _write_movie(path, fourcc: str = "mp4v") -> str:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (WIDTH, HEIGHT))
    for index in range(FRAMES):
        writer.write(_picture(index))
    writer.release()
    return str(path)


@pytest.fixture
def movie(tmp_path) -> str:
    return _write_movie(tmp_path / "clip.mp4")


def _drain(source: LiveSource, per_frame: float = 0.0) -> list[LiveFrame]:
    frames = []
    while (frame := source.next(timeout=5.0)) is not None:
        frames.append(frame)
        time.sleep(per_frame)
    return frames


# -- the movie, offline and in real time ---------------------------------------------------


def test_offline_movie_yields_every_frame_in_order(movie):
    with open_source(movie, realtime=False) as source:
        assert (source.fps, source.frame_count, source.width, source.height) == (FPS, FRAMES,
                                                                                WIDTH, HEIGHT)
        frames = _drain(source)
        assert source.ended
        stats = source.stats()
    assert [f.index for f in frames] == list(range(FRAMES))
    assert [_shown_index(f.image) for f in frames] == list(range(FRAMES))
    assert [f.time for f in frames] == pytest.approx([i / FPS for i in range(FRAMES)])
    first = frames[0].image
    assert first.shape == (HEIGHT, WIDTH, 3) and first.dtype == np.uint8
    red = first[40].mean(axis=0)  # RGB: the red strip is red, not blue
    assert red[0] > 200 and red[2] < 60
    assert all(b.captured >= a.captured for a, b in zip(frames, frames[1:], strict=False))
    assert stats == {"produced": FRAMES, "dropped": 0, "consumed": FRAMES, "failed": 0,
                     "drop_frac": 0.0}


def test_realtime_movie_drops_what_a_slow_consumer_misses(movie):
    started = time.monotonic()
    with open_source(movie) as source:
        frames = _drain(source, per_frame=0.1)  # an estimator at 10 fps on a 30 fps movie
        elapsed = time.monotonic() - started
        stats = source.stats()
    indices = [f.index for f in frames]
    assert all(b > a for a, b in zip(indices, indices[1:], strict=False))
    assert indices[-1] == FRAMES - 1  # the last frame is never dropped: nothing replaces it
    assert [_shown_index(f.image) for f in frames] == indices
    assert [f.time for f in frames] == pytest.approx([i / FPS for i in indices])
    # Played at its own pace: about its 1.5 s, however slowly it was consumed.
    duration = FRAMES / FPS
    assert 0.8 * duration <= elapsed <= 3 * duration
    assert stats["consumed"] == len(frames) < FRAMES // 2
    assert stats["produced"] == FRAMES and stats["failed"] == 0
    assert stats["dropped"] == FRAMES - len(frames) > 0
    assert stats["drop_frac"] == pytest.approx(stats["dropped"] / FRAMES)


def test_size_resizes_frames_and_close_stops_a_waiting_reader(movie):
    source = open_source(movie, realtime=False, size=(32, 24))
    frame = source.next()
    assert (source.width, source.height) == (32, 24) and frame.image.shape == (24, 32, 3)
    assert _shown_index(frame.image) == 0
    started = time.monotonic()
    source.close()  # the reader waits for the next frame to be taken: close must free it
    assert time.monotonic() - started < 2
    assert not source._thread.is_alive()


def test_a_corrupt_movie_frame_is_skipped_and_counted(tmp_path):
    path = _write_movie(tmp_path / "clip.avi", "MJPG")  # one JPEG per frame
    data = bytearray((tmp_path / "clip.avi").read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i:i + 2] == b"\xff\xd8"]
    assert len(starts) == FRAMES
    data[starts[10] + 2: starts[11] - 16] = bytes(starts[11] - 16 - starts[10] - 2)
    (tmp_path / "clip.avi").write_bytes(data)
    with open_source(path, realtime=False) as source:
        frames = _drain(source)
        stats = source.stats()
    expected = [i for i in range(FRAMES) if i != 10]
    assert [f.index for f in frames] == expected
    assert [_shown_index(f.image) for f in frames] == expected
    assert stats["failed"] == 1 and stats["dropped"] == 0


def test_an_http_stream_plays_on_the_wall_clock(movie, tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
        with open_source(url, realtime=False) as source:
            assert source.spec == SourceSpec("stream", url) and source.frame_count is None
            frames = _drain(source)
    finally:
        server.shutdown()
        server.server_close()
    assert [_shown_index(f.image) for f in frames] == [f.index for f in frames]
    assert [f.index for f in frames] == list(range(FRAMES))
    times = [f.time for f in frames]
    assert times[0] == 0 and times == sorted(times)


class _BreaksOnFourthFrame(LiveSource):
    """A source whose frame conversion fails on its fourth frame: stands for any bug or decoder
    crash in the reader thread."""

    converted = 0

    def _to_rgb(self, image: np.ndarray) -> np.ndarray:
        self.converted += 1
        if self.converted == 4:
            raise RuntimeError("converter broke")
        return super()._to_rgb(image)


def test_an_error_in_the_reader_surfaces_from_next(movie):
    with _BreaksOnFourthFrame(SourceSpec("movie", movie), realtime=False) as source:
        assert [source.next().index for _ in range(3)] == [0, 1, 2]
        with pytest.raises(SourceError, match="RuntimeError: converter broke") as raised:
            source.next()
        assert movie in str(raised.value)
        assert isinstance(raised.value.__cause__, RuntimeError)
        assert source.ended
        with pytest.raises(SourceError):  # and it stays raised
            source.next()


# -- the single slot -------------------------------------------------------------------------


def _frame(index: int) -> LiveFrame:
    return LiveFrame(index, index / FPS, np.zeros((2, 2, 3), np.uint8), time.monotonic())


def test_latest_frame_replaces_an_unread_frame():
    slot = LatestFrame()
    slot.put(_frame(0))
    slot.put(_frame(1))
    assert slot.get(timeout=0).index == 1
    assert (slot.produced, slot.dropped, slot.consumed) == (2, 1, 1)


def test_latest_frame_get_times_out():
    slot = LatestFrame()
    started = time.monotonic()
    assert slot.get(timeout=0.05) is None
    assert 0.04 <= time.monotonic() - started < 1
    assert not slot.finished


def test_latest_frame_close_wakes_a_waiting_get():
    slot = LatestFrame()
    got = []
    reader = threading.Thread(target=lambda: got.append(slot.get(timeout=10)))
    started = time.monotonic()
    reader.start()
    time.sleep(0.05)
    slot.close()
    reader.join(timeout=2)
    assert got == [None] and time.monotonic() - started < 2


def test_latest_frame_close_keeps_the_unread_frame_and_refuses_more():
    slot = LatestFrame()
    slot.put(_frame(0))
    slot.close()
    assert not slot.finished
    assert not slot.put(_frame(1))
    assert slot.get(timeout=0).index == 0
    assert slot.get(timeout=5) is None and slot.finished


def test_latest_frame_waiting_for_the_consumer_loses_nothing():
    slot = LatestFrame(wait_for_consumer=True)

    def produce():
        for index in range(5):
            slot.put(_frame(index))
        slot.close()

    threading.Thread(target=produce, daemon=True).start()
    taken = []
    while (frame := slot.get(timeout=2)) is not None:
        taken.append(frame.index)
        time.sleep(0.01)
    assert taken == list(range(5)) and slot.dropped == 0


# -- what a source string means --------------------------------------------------------------


@pytest.mark.parametrize(("spec", "kind", "target"), [
    ("0", "camera", 0),
    ("12", "camera", 12),
    ("/dev/video2", "camera", "/dev/video2"),
    ("rtsp://cam.local:554/live", "stream", "rtsp://cam.local:554/live"),
    ("rtmp://host/app/key", "stream", "rtmp://host/app/key"),
    ("HTTPS://host/cam.mjpg", "stream", "HTTPS://host/cam.mjpg"),
    ("http://host/cam.mjpg", "stream", "http://host/cam.mjpg"),
    ("udp://@:1234", "stream", "udp://@:1234"),
])
def test_parse_source(spec, kind, target):
    assert parse_source(spec) == SourceSpec(kind, target)


def test_parse_source_takes_an_existing_movie(movie):
    assert parse_source(movie) == SourceSpec("movie", movie)


@pytest.mark.parametrize(("spec", "message"), [
    ("missing.mp4", "missing.mp4: no such file; give a movie file, a camera index"),
    ("", "no source given"),
    ("0x1", "0x1: no such file"),
])
def test_parse_source_refuses(spec, message):
    with pytest.raises(SourceError, match=message) as raised:
        parse_source(spec)
    assert isinstance(raised.value, FootageError) and isinstance(raised.value, ValueError)


def test_parse_source_refuses_a_folder(tmp_path):
    with pytest.raises(SourceError, match="is a folder, not a movie file"):
        parse_source(str(tmp_path))


def test_a_stream_label_hides_its_password():
    label = SourceSpec("stream", "rtsp://admin:secret@cam.local/live").label
    assert label == "stream 'rtsp://admin:***@cam.local/live'"


# -- bad sources fail at open, quickly, saying what to do --------------------------------------


@pytest.mark.parametrize(("spec", "message"), [
    ("97", r"no camera 97 \(cv2 could not open it\): check `ls /dev/video\*`.*another index"),
    ("/dev/video97", r"no camera /dev/video97 \(no such device\).*another device"),
    ("http://127.0.0.1:9/none.mjpg", r"could not open stream 'http://127.0.0.1:9/none.mjpg' "
                                     r"\(refused, or no answer within 5 s\): check the URL"),
])
def test_an_unopenable_source_fails_at_open(spec, message):
    started = time.monotonic()
    with pytest.raises(SourceError, match=message):
        open_source(spec)
    assert time.monotonic() - started < 5


def test_a_file_that_is_not_a_video_fails_at_open(tmp_path):
    path = tmp_path / "x.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    with pytest.raises(SourceError, match="x.mp4: cannot be opened as a video"):
        open_source(str(path))


def test_a_silent_stream_times_out(monkeypatch):
    """A server that accepts the connection and never answers: the open times out (FFmpeg's
    own default would wait 30 s)."""
    monkeypatch.setattr(sources, "NETWORK_TIMEOUT_MS", 1000)
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/live.mjpg"
        started = time.monotonic()
        with pytest.raises(SourceError, match="no answer within 1 s"):
            open_source(url)
        assert time.monotonic() - started < 4
    finally:
        listener.close()


def test_a_bad_size_is_an_input_error(movie):
    with pytest.raises(InputError, match=r"size \(0, 24\): give \(width, height\)"):
        open_source(movie, size=(0, 24))
