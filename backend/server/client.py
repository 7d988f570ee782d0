"""The Python client of ``backend serve``, for the CLI and the Blender add-on.

Needs only pyzmq, msgpack and numpy (no torch): it runs inside Blender's Python. One client
may know several servers (``endpoints``): each session lives on one of them, chosen by fewest
sessions, since a session's frames must all reach the server that holds its state.

    client = Client("tcp://127.0.0.1:5555")
    client.hello()                          # checks the protocol version
    session = client.open_session(estimator="tracker", fps=30)
    for reply in session.stream(frames):    # (index, time, RGB image) in order, N in flight
        ...                                 # per-frame detections, as they come
    results = session.finish()              # ClipResults of the whole clip
    avatar = client.build_avatar(image)     # the person in one image (a trained renderer)
    rendered = avatar.render(results, frames=range(16))  # RGBA PNGs over the footage
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from ..conventions import DEFAULT_ASSET_ID
from ..errors import ClipError, InputError, SetupError
from ..results import ClipResults, results_from_message, results_to_message
from .images import encode_image
from .protocol import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    ErrorCode,
    ProtocolError,
    decode_arrays,
    pack,
    parse_reply,
    unpack,
)


class BackendError(ClipError):
    """The server answered a clip's request with an error, or could not be reached; ``code``
    is the reply's error code (docs/protocol.md)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.message = message


class BackendTimeout(BackendError):
    def __init__(self, message: str):
        super().__init__("timeout", message)


class VersionMismatch(SetupError, BackendError):
    """Server and client speak different protocol versions: install matching ones."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.BAD_VERSION, message)


Frame = tuple[int, float, Any]  # (index, time in seconds, RGB uint8 image or encoded image map)


class _Connection:
    """One DEALER socket to one server; matches replies to requests by id."""

    def __init__(self, context: zmq.Context, endpoint: str, keys: Path | None, timeout: float):
        self.context, self.endpoint, self.keys, self.timeout = context, endpoint, keys, timeout
        self.sessions = 0
        self._ids = itertools.count(1)
        self._replies: dict[int, dict] = {}
        self._socket = self._connect()

    def _connect(self) -> zmq.Socket:
        socket = self.context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, 4 * MAX_MESSAGE_BYTES)
        # A send blocks while no peer takes messages (a refused CURVE handshake leaves none, a
        # full queue too): give up after the client's timeout instead of hanging.
        socket.setsockopt(zmq.SNDTIMEO, max(1, int(self.timeout * 1000)))
        if self.keys is not None:
            from .keys import load_client_keys

            public, secret, server_public = load_client_keys(self.keys)
            socket.curve_publickey, socket.curve_secretkey = public, secret
            socket.curve_serverkey = server_public
        socket.connect(self.endpoint)
        return socket

    def reconnect(self) -> None:
        """A fresh socket: replies still owed to the old one are forgotten."""
        self._socket.close(linger=0)
        self._replies.clear()
        self._socket = self._connect()

    def send(self, message: dict) -> int:
        request_id = next(self._ids)
        try:
            self._socket.send(pack({"v": PROTOCOL_VERSION, "id": request_id, **message}))
        except zmq.Again:
            self.reconnect()
            raise BackendTimeout(
                f"{self.endpoint} took no message within {self.timeout:.0f} s: is `backend "
                "serve` running there (for a remote server: right address, and keys it "
                "accepts)?") from None
        return request_id

    def receive(self, request_id: int, timeout: float | None = None) -> dict:
        """The reply to ``request_id``, raising BackendError if it is an error reply."""
        reply = (self._replies.pop(request_id) if request_id in self._replies
                 else self._wait(request_id, self.timeout if timeout is None else timeout))
        if not reply["ok"]:
            error = reply["error"]
            if error["code"] == ErrorCode.BAD_VERSION:
                raise VersionMismatch(f"{self.endpoint}: {error['message']}")
            raise BackendError(error["code"], error["message"])
        return reply

    def poll(self, request_id: int) -> dict | None:
        """The reply to ``request_id`` if it has arrived, else None; never blocks (for UIs
        that step the work from a timer). Raises BackendError for an error reply."""
        while request_id not in self._replies and self._socket.poll(0):
            self._take(self._socket.recv())
        if request_id not in self._replies:
            return None
        return self.receive(request_id, timeout=0)

    def request(self, message: dict, timeout: float | None = None) -> dict:
        return self.receive(self.send(message), timeout)

    def _wait(self, request_id: int, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while request_id not in self._replies:
            left = deadline - time.monotonic()
            if left <= 0:
                self.reconnect()
                raise BackendTimeout(
                    f"no reply from {self.endpoint} within {timeout:.0f} s: is `backend serve` "
                    "running there (for a remote server: right address, and keys it accepts)?")
            # Short polls, so Ctrl-C and Blender's Esc get through during a long wait.
            if self._socket.poll(max(1, int(min(left, 0.5) * 1000))):
                self._take(self._socket.recv())
        return self._replies.pop(request_id)

    def _take(self, data: bytes) -> None:
        try:
            reply = parse_reply(unpack(data))
        except ProtocolError as exc:
            raise BackendError(exc.code, f"{self.endpoint} sent a reply this client cannot "
                               f"read: {exc.message}") from None
        if isinstance(reply["id"], int):
            self._replies[reply["id"]] = reply

    def close(self) -> None:
        self._socket.close(linger=0)


class Client:
    def __init__(self, endpoints: str | Sequence[str] = "tcp://127.0.0.1:5555",
                 keys: str | Path | None = None, timeout: float = 30.0):
        endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not endpoints:
            raise InputError("a client needs at least one server endpoint, e.g. "
                             "tcp://127.0.0.1:5555")
        self.context = zmq.Context()
        self._connections = [_Connection(self.context, e, Path(keys) if keys else None, timeout)
                             for e in endpoints]

    @property
    def endpoints(self) -> list[str]:
        return [c.endpoint for c in self._connections]

    def hello(self) -> list[dict]:
        """Each server's ``hello``; raises VersionMismatch if one cannot speak this protocol."""
        out = []
        for connection in self._connections:
            reply = connection.request({"op": "hello", "client": "pear-python-client"})
            if PROTOCOL_VERSION not in reply.get("protocols", []):
                raise VersionMismatch(
                    f"{connection.endpoint} speaks protocol {reply.get('protocols')} and this "
                    f"client {PROTOCOL_VERSION}: install matching versions of the backend and "
                    "the add-on")
            out.append(decode_arrays(reply))
        return out

    def ping(self) -> list[float]:
        """Round-trip seconds to each server."""
        times = []
        for connection in self._connections:
            start = time.perf_counter()
            connection.request({"op": "ping"})
            times.append(time.perf_counter() - start)
        return times

    def status(self) -> list[dict]:
        return [c.request({"op": "status"}) for c in self._connections]

    def open_session(self, estimator: str = "tracker", asset: str = DEFAULT_ASSET_ID,
                     smooth: float = 1.0, fps: float = 30.0, intrinsics: dict | None = None,
                     rig: bool = False, subject: dict | None = None, person: int | None = None,
                     person_box: Sequence[float] | None = None,
                     timeout: float | None = None, adapter: str | None = None,
                     live: bool = False) -> RemoteSession:
        """``rig``: also return the subject's rig (backend.pipeline.rig) when the session finishes.
        ``subject``: an earlier session's ``RemoteSession.subject``, to fit the same body.
        ``person``: follow this person, 1 = the leftmost in the first frame showing anybody;
        ``person_box``: follow whoever is at this box (x0, y0, x1, y1) in the first frame,
        e.g. a frame reply's ``detections.box`` from an earlier session; neither: the most
        prominent person. ``adapter``: an adapter ``hello`` lists, on the regressor.
        ``live``: every frame reply also carries that frame's body (``live``), as it comes."""
        connection = min(self._connections, key=lambda c: c.sessions)
        reply = connection.request({"op": "session.open", "estimator": estimator,
                                    "asset": asset, "smooth": smooth, "fps": fps,
                                    "intrinsics": intrinsics, "rig": rig, "subject": subject,
                                    "person": person,
                                    "person_box": None if person_box is None
                                    else [float(v) for v in person_box],
                                    "adapter": adapter, "live": live},
                                   timeout)
        connection.sessions += 1
        return RemoteSession(connection, reply["session"], reply["window"])

    def send_avatar_build(self, image: Any, asset: str = DEFAULT_ASSET_ID,
                          intrinsics: dict | None = None, image_format: str = "jpeg"
                          ) -> AvatarBuild:
        """Ask for the avatar of the person in ``image`` (RGB array or an encoded image map)
        without waiting: ``poll`` or ``wait`` the returned handle."""
        connection = min(self._connections, key=lambda c: c.sessions)
        encoded = image if isinstance(image, dict) else encode_image(image, image_format)
        request_id = connection.send({"op": "avatar.build", "asset": asset, "image": encoded,
                                      "intrinsics": intrinsics})
        return AvatarBuild(connection, request_id)

    def build_avatar(self, image: Any, asset: str = DEFAULT_ASSET_ID,
                     intrinsics: dict | None = None, timeout: float = 600.0) -> RemoteAvatar:
        """The avatar of the person in ``image``; the server fits the image first (seconds)."""
        return self.send_avatar_build(image, asset, intrinsics).wait(timeout)

    def start_capture(self, source: str, estimator: str = "tracker",
                      asset: str = DEFAULT_ASSET_ID, smooth: float = 1.0,
                      intrinsics: dict | None = None, adapter: str | None = None,
                      timeout: float | None = None) -> RemoteCapture:
        """Have the server open ``source`` (a camera index or device, a stream URL, or a
        movie on the server's disk) and answer its frames live; ``poll`` the handle."""
        connection = self._connections[0]
        reply = connection.request({"op": "capture.start", "source": source,
                                    "estimator": estimator, "asset": asset, "smooth": smooth,
                                    "intrinsics": intrinsics, "adapter": adapter}, timeout)
        return RemoteCapture(connection, reply["capture"])

    def close(self) -> None:
        for connection in self._connections:
            connection.close()
        self.context.term()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_) -> None:
        self.close()


class RemoteSession:
    """The client's handle on one clip held by one server (the server keeps the session
    itself). Not thread-safe: drive it from one thread."""

    def __init__(self, connection: _Connection, session_id: str, window: int):
        self.connection, self.id, self.window = connection, session_id, window
        self.done = False
        self.closing = False  # session.close sent, reply not yet taken
        self.rig: dict | None = None  # the subject's rig, after ``finish`` (if asked for)
        # The fitted per-subject parameters, after ``finish`` (tracker sessions).
        self.subject: dict | None = None

    def send_frame(self, index: int, time_s: float, image: Any, image_format: str = "jpeg"
                   ) -> int:
        """Queue one frame without waiting; returns its request id for ``receive``."""
        encoded = image if isinstance(image, dict) else encode_image(image, image_format)
        return self.connection.send({"op": "frame", "session": self.id, "index": int(index),
                                     "time": float(time_s), "image": encoded})

    def receive(self, request_id: int, timeout: float | None = None) -> dict:
        return decode_arrays(self.connection.receive(request_id, timeout))

    def stream(self, frames: Iterable[Frame], window: int | None = None,
               image_format: str = "jpeg") -> Iterator[dict]:
        """Send frames keeping up to ``window`` in flight; yield their replies in order.

        Stopping the iteration early leaves the rest unsent; replies already owed are
        collected before the next request, so nothing is mismatched.
        """
        window = max(1, min(window or self.window, self.window))
        pending: list[int] = []
        try:
            for index, time_s, image in frames:
                pending.append(self.send_frame(index, time_s, image, image_format))
                if len(pending) >= window:
                    yield self.receive(pending.pop(0))
            while pending:
                yield self.receive(pending.pop(0))
        finally:
            for request_id in pending:  # left behind by an early stop: drain quietly
                with contextlib.suppress(BackendError):
                    self.connection.receive(request_id)

    def poll(self, request_id: int) -> dict | None:
        """The reply to ``request_id`` if it has arrived (decoded), else None; never blocks."""
        reply = self.connection.poll(request_id)
        return None if reply is None else decode_arrays(reply)

    def finish(self, timeout: float = 3600.0) -> ClipResults | dict:
        """Close the session: the clip's final result (the tracker's fit may take minutes)."""
        request_id = self.send_close()
        try:
            reply = self.receive(request_id, timeout)
        except BackendError:
            self._ended()
            raise
        return self.closed(reply)

    def send_close(self) -> int:
        """Queue ``session.close`` without waiting; hand its reply (``poll``/``receive``) to
        ``closed``. Until then the session can still be cancelled."""
        if self.done or self.closing:
            raise BackendError(ErrorCode.UNKNOWN_SESSION, f"session {self.id} already ended")
        self.closing = True
        return self.connection.send({"op": "session.close", "session": self.id})

    def closed(self, reply: dict) -> ClipResults | dict:
        """What ``finish`` returns, from the ``session.close`` reply; keeps the rig."""
        self._ended()
        self.rig = reply.get("rig")
        self.subject = reply.get("subject")
        if "results" in reply:
            return results_from_message(reply["results"])
        return reply

    def cancel(self, timeout: float | None = None) -> int:
        """Drop the session, its queued frames and a running close; returns how many frames
        were dropped."""
        if self.done:
            raise BackendError(ErrorCode.UNKNOWN_SESSION, f"session {self.id} already ended")
        try:
            reply = self.connection.request({"op": "cancel", "session": self.id}, timeout)
        finally:
            self._ended()
        return int(reply["dropped"])

    def _ended(self) -> None:
        if not self.done:
            self.done = True
            self.connection.sessions -= 1


class AvatarBuild:
    """A pending ``avatar.build``."""

    def __init__(self, connection: _Connection, request_id: int):
        self.connection, self.id = connection, request_id

    def poll(self) -> RemoteAvatar | None:
        """The avatar once built, else None; never blocks. BackendError if it failed."""
        reply = self.connection.poll(self.id)
        return None if reply is None else RemoteAvatar(self.connection, decode_arrays(reply))

    def wait(self, timeout: float = 600.0) -> RemoteAvatar:
        return RemoteAvatar(self.connection, decode_arrays(self.connection.receive(self.id,
                                                                                    timeout)))


@dataclass
class AvatarImages:
    """One ``avatar.render`` reply: per motion frame, an RGBA PNG of the whole frame (``size``
    = width, height) transparent but for the avatar, and the avatar's box in footage pixels."""

    frames: list[int]
    images: list[bytes]
    boxes: np.ndarray  # (N, 4) x0, y0, x1, y1
    size: tuple[int, int]


class RemoteAvatar:
    """The client's handle on an avatar the server holds: one request at a time."""

    def __init__(self, connection: _Connection, reply: dict):
        self.connection, self.id = connection, reply["avatar"]
        self.gaussians = int(reply["gaussians"])
        self.source = results_from_message(reply["source"])  # the source image's fit

    def send_render(self, motion: ClipResults | dict, frames: Iterable[int] | None = None,
                    max_side: int = 512) -> int:
        """Ask for frames (positions in ``motion``, at most 64; None: all) without waiting;
        hand the reply (``connection.poll``/``receive``) to ``rendered``."""
        message = results_to_message(motion) if isinstance(motion, ClipResults) else motion
        message = {key: value for key, value in message.items() if key != "detections"}
        return self.connection.send({
            "op": "avatar.render", "avatar": self.id, "motion": message,
            "frames": None if frames is None else [int(t) for t in frames],
            "max_side": int(max_side)})

    @staticmethod
    def rendered(reply: dict) -> AvatarImages:
        reply = decode_arrays(reply)
        return AvatarImages(list(reply["frames"]), list(reply["images"]),
                            np.asarray(reply["boxes"]), tuple(reply["size"]))

    def render(self, motion: ClipResults | dict, frames: Iterable[int] | None = None,
               max_side: int = 512, timeout: float = 600.0) -> AvatarImages:
        return self.rendered(self.connection.receive(self.send_render(motion, frames, max_side),
                                                     timeout))

    def drop(self, timeout: float | None = None) -> None:
        """Free the avatar on the server (it also goes after the session timeout)."""
        self.connection.request({"op": "avatar.drop", "avatar": self.id}, timeout)


class RemoteCapture:
    """The client's handle on a live capture the server runs (``capture.*`` ops)."""

    def __init__(self, connection: _Connection, capture_id: str):
        self.connection, self.id = connection, capture_id
        self.last_index = -1  # the newest answer taken by ``poll``

    def poll(self, rig: bool = False, timeout: float | None = None) -> dict:
        """The capture's state and the answers since the last poll (oldest first); with
        ``rig``, also the performer's rig (None until the body's shape is held)."""
        reply = decode_arrays(self.connection.request(
            {"op": "capture.poll", "capture": self.id, "after": self.last_index, "rig": rig},
            timeout))
        if reply["answers"]:
            self.last_index = reply["answers"][-1]["index"]
        return reply

    def stop(self, timeout: float | None = None) -> dict:
        """End it; the reply's ``results`` is every answer as a clip (None if none)."""
        reply = decode_arrays(self.connection.request(
            {"op": "capture.stop", "capture": self.id}, timeout))
        if reply.get("results") is not None:
            reply["results"] = results_from_message(reply["results"])
        return reply


def frames_of(images: Iterable[np.ndarray], fps: float = 30.0) -> Iterator[Frame]:
    """(index, time, image) for a plain sequence of images."""
    for index, image in enumerate(images):
        yield index, index / fps, image
