"""``backend serve``: a ZeroMQ ROUTER that runs estimator sessions for many clients.

Threads and why:
- the I/O thread owns the ROUTER socket: it validates requests, answers the cheap
  ones at once and queues frames; it never runs a model, so a slow model or a slow client
  cannot stall anyone's ``ping``;
- one frame worker runs the per-frame models, taking up to ``max_batch`` queued frames at a
  time round-robin over sessions (fair to every client; a session's frames stay in order):
  the detector per frame, then the regressor once per body model for all of those frames
  that need it, whichever session they came from (one batched forward on the device);
- the live fitter answers ``live`` sessions' frames once the frame worker has detected
  them, on one torch thread, in each session's order: the next frame is detected while one
  is fitted, each stage on a core (a client keeps two frames in flight to use both);
- the finisher, on the thread that calls ``run``, runs the long jobs: ``session.close`` (the
  tracker's fit over a clip: seconds to minutes) and the ``avatar.*`` ops, so other sessions'
  frames keep flowing meanwhile.
Workers hand replies back to the I/O thread over an inproc PUSH/PULL pair: ZeroMQ sockets are
not thread-safe, and only the I/O thread touches the ROUTER.

Flow control: each session may have ``window`` frames queued or running; one more is answered
``busy``; an avatar runs one request at a time. Sessions and avatars idle for
``session_timeout`` seconds are reclaimed (their client vanished).
"""

from __future__ import annotations

import collections
import ipaddress
import itertools
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from .. import __version__
from .captures import Captures
from .config import ServerConfig
from .errors import ServeError
from .images import decode_image
from .keys import load_server_keys, start_authenticator
from .logs import log_event
from .protocol import (
    MAX_MESSAGE_BYTES,
    SUPPORTED_VERSIONS,
    ErrorCode,
    ProtocolError,
    Request,
    error_reply,
    ok_reply,
    pack,
    parse_request,
    request_id,
    unpack,
)

logger = logging.getLogger("backend.server")


@dataclass
class _Job:
    kind: str  # frame | close | release
    peer: bytes = b""
    request_id: int | str | None = None
    request: Request | None = None


@dataclass
class _LiveFrame:
    """A live session's frame detected by the frame worker, for the live fitter to answer."""

    job: _Job
    detections: dict  # the reply's detections (``EstimatorClip.detect_frame``)
    detected: object  # a pipeline.live.Detected


@dataclass
class _SessionSlot:
    """The server's bookkeeping of one open session: owner, queued jobs, window, state."""

    id: str
    owner: bytes
    estimator: object  # an estimators.DetectorClip
    jobs: collections.deque = field(default_factory=collections.deque)
    in_flight: int = 0
    last_index: int = -1
    last_seen: float = field(default_factory=time.monotonic)
    frames_done: int = 0
    state: str = "open"  # open | closing | cancelled
    finishing: bool = False  # its close job was taken for the finisher
    cancel_event: threading.Event = field(default_factory=threading.Event)


@dataclass
class _AvatarSlot:
    """One client's avatar: owner, the built avatar (None while building), whether a request
    of it is queued or running."""

    id: str
    owner: bytes
    asset: str
    built: object = None  # an avatars.BuiltAvatar
    busy: bool = True
    last_seen: float = field(default_factory=time.monotonic)


def is_loopback(address: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if address.startswith(("ipc://", "inproc://")):
        return True
    if not address.startswith("tcp://"):
        return False
    host = address[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # an interface name or a wildcard: reachable from outside
        return False


def check_bind(config: ServerConfig) -> None:
    """Refuse a reachable bind without CURVE keys (before any model is loaded)."""
    if not is_loopback(config.bind) and config.keys is None:
        raise ServeError(f"refusing to listen on {config.bind} without CURVE keys: anyone who "
                         "can reach it could use this machine. Run `backend keys generate DIR` "
                         "and start with `--keys DIR`, or bind to tcp://127.0.0.1:PORT")


class Server:
    def __init__(self, estimators, config: ServerConfig | None = None,
                 context: zmq.Context | None = None):
        self.config = config or ServerConfig()
        self.estimators = estimators
        check_bind(self.config)
        # Its own context: CURVE authentication (ZAP) is per context.
        self.context = context or zmq.Context()
        self._router = self.context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a vanished peer raises, not hangs
        self._router.setsockopt(zmq.SNDHWM, 100_000)
        self._router.setsockopt(zmq.LINGER, 1000)
        self._authenticator = None
        if self.config.keys is not None:
            public, secret = load_server_keys(self.config.keys)
            self._authenticator = start_authenticator(self.context, self.config.keys)
            self._router.curve_server = True
            self._router.curve_publickey, self._router.curve_secretkey = public, secret
        try:
            self._router.bind(self.config.bind)
        except zmq.ZMQError as exc:
            self._router.close()
            raise ServeError(f"cannot listen on {self.config.bind}: {exc}") from None
        self.endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._replies_address = f"inproc://pear-replies-{secrets.token_hex(6)}"
        self._replies = self.context.socket(zmq.PULL)
        self._replies.bind(self._replies_address)
        self._lock = threading.Condition()
        self._sessions: dict[str, _SessionSlot] = {}
        self._avatars: dict[str, _AvatarSlot] = {}
        self._ready: collections.deque[_SessionSlot] = collections.deque()  # sessions with jobs
        # The finisher's jobs: (peer, request id, work returning the reply's fields, the avatar
        # slot it is for or None); None ends it.
        self._finishing: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._stop_requested = threading.Event()
        self._started = time.monotonic()
        self._served = itertools.count()
        self._frames_received = 0  # accepted into a queue, since start
        self._regressor_batches: collections.Counter[int] = collections.Counter()  # size: count
        # Live captures of sources the server opens itself (``captures.py``).
        self._captures = Captures(self.estimators.open, self.config.max_captures)
        # The live fitter's work, in order: (session, _LiveFrame), or (session, _Job) for a
        # live session's close or release (after its frames); None ends it.
        self._live_fits: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._frame_worker, name="frames", daemon=True)
        self._fitter = threading.Thread(target=self._live_fitter, name="live fits",
                                        daemon=True)
        self._io = threading.Thread(target=self._serve_io, name="io", daemon=True)
        self._finisher_done = threading.Event()

    # -- the I/O thread ---------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin a clean shutdown (safe from a signal handler or another thread)."""
        self._stop_requested.set()

    def run(self) -> None:
        """Serve until stopped. The calling thread runs the finisher: the tracker's fit ran
        ~25% slower in a spawned thread than in the main one here (PyTorch CPU), and
        ``backend serve`` calls this from the main thread."""
        self._worker.start()
        self._fitter.start()
        self._io.start()
        try:
            self._finisher()
        finally:
            self._finisher_done.set()
            self._io.join()

    def _serve_io(self) -> None:
        log_event(logger, "serving", endpoint=self.endpoint, version=__version__,
                  device=self.estimators.device, curve=self.config.keys is not None)
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._replies, zmq.POLLIN)
        next_reap = time.monotonic() + 1.0
        deadline = None
        try:
            while True:
                events = dict(poller.poll(100))
                if self._replies in events:
                    self._forward_replies()
                if self._router in events:
                    self._receive()
                now = time.monotonic()
                if now >= next_reap:
                    self._reap_idle(now)
                    next_reap = now + 1.0
                if self._stop_requested.is_set() and deadline is None:
                    deadline = now + self.config.shutdown_grace
                    log_event(logger, "stopping", queued=self._queued(),
                              grace_s=self.config.shutdown_grace)
                if deadline is not None and (self._idle() or now >= deadline):
                    break
        finally:
            self._shutdown()

    def _receive(self) -> None:
        for _ in range(1000):  # drain, but let replies through now and then
            try:
                parts = self._router.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            peer, payload = parts[0], parts[1:]
            reply = self._handle(peer, payload)
            if reply is not None:
                self._send(peer, reply)

    def _handle(self, peer: bytes, payload: list[bytes]) -> dict | None:
        message_id = None
        try:
            if len(payload) != 1:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, f"a request is one message frame, "
                                    f"got {len(payload)}")
            message = unpack(payload[0])
            message_id = request_id(message)
            request = parse_request(message)
            return self._dispatch(peer, request)
        except ProtocolError as exc:
            return error_reply(message_id, exc.code, exc.message)
        except Exception as exc:  # a bug must not take the server down
            logger.exception("request failed")
            return error_reply(message_id, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    def _dispatch(self, peer: bytes, request: Request) -> dict | None:
        op = request.op
        if op == "ping":
            return ok_reply(request.id, time=time.time())
        if op == "hello":
            return ok_reply(request.id, **self.hello())
        if op == "status":
            return ok_reply(request.id, **self.status())
        if self._stop_requested.is_set() and op in ("session.open", "frame", "avatar.build",
                                                    "avatar.render", "capture.start"):
            raise ProtocolError(ErrorCode.SHUTTING_DOWN, "the server is shutting down; "
                                "reconnect to another server or retry when it is back")
        if op.startswith("avatar."):
            return self._avatar_op(peer, request)
        if op.startswith("capture."):
            return self._capture_op(peer, request)
        if op == "session.open":
            return self._open(peer, request)
        session = self._owned_session(peer, request.session)
        session.last_seen = time.monotonic()
        if op == "frame":
            return self._queue_frame(peer, request, session)
        if op == "session.close":
            return self._queue_close(peer, request, session)
        return self._cancel(request, session)  # op == "cancel"

    def hello(self) -> dict:
        assets, unreadable = self.estimators.assets()
        return {"server": "pear-backend", "version": __version__,
                "protocols": list(SUPPORTED_VERSIONS), "device": self.estimators.device,
                "estimators": self.estimators.describe(),
                "avatar": self.estimators.avatars.describe(), "assets": assets,
                "adapters": self.estimators.adapters(),
                "assets_unreadable": unreadable,
                "limits": {"window": self.config.window,
                           "max_sessions": self.config.max_sessions,
                           "max_message_bytes": MAX_MESSAGE_BYTES,
                           "session_timeout_s": self.config.session_timeout}}

    def status(self) -> dict:
        with self._lock:
            return {"sessions": len(self._sessions), "avatars": len(self._avatars),
                    "captures": len(self._captures),
                    "queued": self._queued(),
                    "frames_received": self._frames_received,
                    "regressor_batches": {str(size): count for size, count
                                          in sorted(self._regressor_batches.items())},
                    "uptime_s": round(time.monotonic() - self._started, 3),
                    "stopping": self._stop_requested.is_set()}

    def _open(self, peer: bytes, request: Request) -> dict:
        with self._lock:
            if len(self._sessions) >= self.config.max_sessions:
                raise ProtocolError(ErrorCode.TOO_MANY_SESSIONS, f"the server already runs "
                                    f"{self.config.max_sessions} sessions; retry later")
        estimator = self.estimators.open(request.fields)
        session = _SessionSlot(secrets.token_hex(8), peer, estimator)
        with self._lock:
            self._sessions[session.id] = session
        log_event(logger, "session.open", session=session.id, **{
            k: v for k, v in request.fields.items() if k not in ("intrinsics", "subject")},
            subject=request.fields["subject"] is not None)
        return ok_reply(request.id, session=session.id, window=self.config.window)

    def _owned_session(self, peer: bytes, session_id: str) -> _SessionSlot:
        with self._lock:
            session = self._sessions.get(session_id)
        # Another client's session is reported exactly like a missing one.
        if session is None or session.owner != peer or session.state == "cancelled":
            raise ProtocolError(ErrorCode.UNKNOWN_SESSION, f"no open session {session_id[:64]!r} "
                                "(closed, cancelled, timed out, or opened by another client)")
        return session

    def _queue_frame(self, peer: bytes, request: Request, session: _SessionSlot) -> None:
        index = request.fields["index"]
        if session.state != "open":
            raise ProtocolError(ErrorCode.UNKNOWN_SESSION, f"session {session.id} is closing; "
                                "frames must come before session.close")
        if index <= session.last_index:
            raise ProtocolError(ErrorCode.BAD_FRAME_ORDER, f"frame {index} after frame "
                                f"{session.last_index}: indices must increase within a session")
        with self._lock:
            if session.in_flight >= self.config.window:
                raise ProtocolError(ErrorCode.BUSY, f"{session.in_flight} frames of this session "
                                    f"are in flight (window {self.config.window}); wait for a "
                                    "reply before sending more")
            session.last_index = index
            session.in_flight += 1
            self._frames_received += 1
            self._push_job(session, _Job("frame", peer, request.id, request))
        return None  # answered by the worker

    def _queue_close(self, peer: bytes, request: Request, session: _SessionSlot) -> None:
        with self._lock:
            if session.state != "open":
                raise ProtocolError(ErrorCode.UNKNOWN_SESSION,
                                    f"session {session.id} is already closing")
            session.state = "closing"
            self._push_job(session, _Job("close", peer, request.id))
        return None

    def _cancel(self, request: Request, session: _SessionSlot) -> dict:
        dropped = self._drop_session(session, "cancelled by the client")
        log_event(logger, "session.cancel", session=session.id, dropped=dropped)
        return ok_reply(request.id, session=session.id, dropped=dropped)

    def _avatar_op(self, peer: bytes, request: Request) -> dict | None:
        """``avatar.build`` and ``avatar.render`` go to the finisher; ``avatar.drop`` is
        answered at once."""
        from .images import decode_image

        fields, avatars = request.fields, self.estimators.avatars
        if request.op == "avatar.build":
            avatars.check_available(fields["asset"])
            with self._lock:
                if len(self._avatars) >= self.config.max_sessions:
                    raise ProtocolError(ErrorCode.TOO_MANY_SESSIONS, f"the server already holds "
                                        f"{self.config.max_sessions} avatars; drop one "
                                        "(avatar.drop) or retry later")
                slot = _AvatarSlot(secrets.token_hex(8), peer, fields["asset"])
                self._avatars[slot.id] = slot

            def build() -> dict:
                try:
                    slot.built, reply = avatars.build(fields, decode_image(request.image))
                except BaseException:
                    with self._lock:
                        self._avatars.pop(slot.id, None)
                    raise
                log_event(logger, "avatar.build", avatar=slot.id, asset=slot.asset)
                return {"avatar": slot.id, **reply}

            self._finishing.put((peer, request.id, build, slot))
            return None
        slot = self._owned_avatar(peer, fields["avatar"])
        if request.op == "avatar.drop":
            with self._lock:
                self._avatars.pop(slot.id, None)
            log_event(logger, "avatar.drop", avatar=slot.id)
            return ok_reply(request.id, avatar=slot.id)
        with self._lock:  # avatar.render
            if slot.busy:
                raise ProtocolError(ErrorCode.BUSY, f"avatar {slot.id} is still being built or "
                                    "rendering; wait for that reply first")
            slot.busy = True
        self._finishing.put((peer, request.id,
                             lambda: {"avatar": slot.id, **avatars.render(slot.built, fields)},
                             slot))
        return None

    def _capture_op(self, peer: bytes, request: Request) -> dict | None:
        """``capture.start`` opens the source on the capture's own thread (a stream may take
        seconds to connect): its failure shows in the next poll. ``capture.stop`` is answered
        by the finisher, once the frame in hand is done."""
        if request.op == "capture.start":
            reply = self._captures.start(peer, request.fields)
            log_event(logger, "capture.start", source=request.fields["source"][:200], **reply)
        elif request.op == "capture.poll":
            reply = self._captures.poll(peer, request.fields)
        else:
            capture = self._captures.stop(peer, request.fields)

            def stopped() -> dict:
                reply = capture.stop()
                log_event(logger, "capture.stop", capture=capture.id, state=reply["state"],
                          answered=reply["answered"])
                return reply

            self._finishing.put((peer, request.id, stopped, None))
            return None
        return ok_reply(request.id, **reply)

    def _owned_avatar(self, peer: bytes, avatar_id: str) -> _AvatarSlot:
        with self._lock:
            slot = self._avatars.get(avatar_id)
            if slot is not None:
                slot.last_seen = time.monotonic()
        if slot is None or slot.owner != peer:  # another client's, as if missing
            raise ProtocolError(ErrorCode.UNKNOWN_SESSION, f"no avatar {avatar_id[:64]!r} "
                                "(dropped, timed out, failed to build, or another client's)")
        return slot

    def _drop_session(self, session: _SessionSlot, why: str) -> int:
        """Forget a session: answer its queued requests ``cancelled``, stop its fit, and let
        the worker release its models after anything it is running now."""
        with self._lock:
            session.state = "cancelled"
            session.cancel_event.set()
            self._sessions.pop(session.id, None)
            dropped = [job for job in session.jobs if job.kind in ("frame", "close")]
            session.jobs.clear()
            session.in_flight = 0
            if not session.finishing:
                self._push_job(session, _Job("release"))
        for job in dropped:
            self._send(job.peer, error_reply(job.request_id, ErrorCode.CANCELLED,
                                             f"session {session.id}: {why}"))
        return sum(job.kind == "frame" for job in dropped)

    def _reap_idle(self, now: float) -> None:
        with self._lock:
            idle = [s for s in self._sessions.values() if s.state == "open"
                    and s.in_flight == 0 and now - s.last_seen > self.config.session_timeout]
        for session in idle:
            self._drop_session(session, f"no message for {self.config.session_timeout:.0f} s")
            log_event(logger, "session.reclaimed", session=session.id,
                      idle_s=round(now - session.last_seen, 1))
        with self._lock:
            idle_avatars = [a for a in self._avatars.values()
                            if not a.busy and now - a.last_seen > self.config.session_timeout]
            for avatar in idle_avatars:
                self._avatars.pop(avatar.id, None)
        for avatar in idle_avatars:
            log_event(logger, "avatar.reclaimed", avatar=avatar.id,
                      idle_s=round(now - avatar.last_seen, 1))
        for capture in self._captures.reap(now, self.config.session_timeout):
            log_event(logger, "capture.reclaimed", capture=capture)

    def _push_job(self, session: _SessionSlot, job: _Job) -> None:
        """Queue a job (caller holds the lock)."""
        if not session.jobs and session not in self._ready:
            self._ready.append(session)
        session.jobs.append(job)
        self._lock.notify()

    def _queued(self) -> int:
        return (sum(len(s.jobs) for s in self._sessions.values()) + self._live_fits.qsize()
                + self._finishing.qsize())

    def _idle(self) -> bool:
        with self._lock:
            busy = any(s.jobs or s.in_flight or s.state == "closing"
                       for s in self._sessions.values())
            busy = busy or any(a.busy for a in self._avatars.values())
        return not busy and not self._ready

    def _forward_replies(self) -> None:
        while True:
            try:
                peer, payload = self._replies.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._send_bytes(peer, payload)

    def _send(self, peer: bytes, reply: dict) -> None:
        self._send_bytes(peer, pack(reply))

    def _send_bytes(self, peer: bytes, payload: bytes) -> None:
        try:
            self._router.send_multipart([peer, payload], zmq.NOBLOCK)
            next(self._served)
        except zmq.ZMQError as exc:  # the peer is gone or not reading: drop, keep serving
            log_event(logger, "reply.dropped", peer=peer.hex(), error=str(exc))

    def _shutdown(self) -> None:
        # "stopped" is said even if a step fails (``thread_failures_logged`` says how).
        try:
            self._captures.stop_all()
            with self._lock:
                sessions = list(self._sessions.values())
            for session in sessions:
                self._drop_session(session, "the server shut down before this was done")
            with self._lock:
                self._stopping.set()
                self._lock.notify_all()
            # In this order: the live fitter may still pass a live session's close on.
            self._worker.join(timeout=5.0)
            self._live_fits.put(None)
            self._fitter.join(timeout=5.0)
            self._finishing.put(None)
            self._finisher_done.wait(timeout=5.0)
            self._forward_replies()
            self._router.close()
            self._replies.close()
            if self._authenticator is not None:
                self._authenticator.stop()
        finally:
            log_event(logger, "stopped", replies=next(self._served))

    # -- workers ----------------------------------------------------------------------------

    def _next_batch(self) -> list[tuple[_SessionSlot, _Job]]:
        with self._lock:
            while not self._ready and not self._stopping.is_set():
                self._lock.wait(0.5)
            batch = []
            while self._ready and len(batch) < self.config.max_batch:
                session = self._ready.popleft()
                job = session.jobs.popleft()
                # From now on the finisher releases its models (a cancel must not as well).
                session.finishing = session.finishing or job.kind == "close"
                batch.append((session, job))
                if session.jobs:
                    self._ready.append(session)  # round-robin: back of the line
            return batch

    def _frame_worker(self) -> None:
        out = self.context.socket(zmq.PUSH)
        out.connect(self._replies_address)
        try:
            while True:
                batch = self._next_batch()
                if not batch and self._stopping.is_set():
                    return
                detected = []  # frames whose replies wait for the regressor
                for session, job in batch:
                    if job.kind != "frame":  # a session's frames are regressed before it ends
                        self._regress_and_reply(detected, out)
                        if session.estimator.live:  # ...and a live one's fitted
                            self._live_fits.put((session, job))
                            continue
                    reply = self._run_job(session, job)
                    if job.kind == "frame":
                        if reply is not None:  # else the live fitter replies
                            detected.append((session, job, reply))
                    elif reply is not None:
                        out.send_multipart([job.peer, pack(reply)])
                self._regress_and_reply(detected, out)
        finally:
            out.close(linger=1000)

    def _regress_and_reply(self, detected: list[tuple[_SessionSlot, _Job, dict]],
                           out: zmq.Socket) -> None:
        """Run the regressor over the frames just detected (one batched forward per body
        model, across sessions), then send their replies; empties ``detected``."""
        from .estimators import run_regressor_batches

        if not detected:
            return
        sizes, failed = run_regressor_batches(session.estimator for session, _, _ in detected)
        with self._lock:
            self._regressor_batches.update(sizes)
        for session, job, reply in detected:
            if reply["ok"] and session.estimator in failed:
                reply = error_reply(job.request_id, ErrorCode.INTERNAL, f"frame "
                                    f"{job.request.fields['index']}: {failed[session.estimator]}")
            out.send_multipart([job.peer, pack(reply)])
        detected.clear()

    def _run_job(self, session: _SessionSlot, job: _Job) -> dict | None:
        if job.kind == "release":
            session.estimator.close()
            return None
        if job.kind == "close":
            self._finishing.put((job.peer, job.request_id,
                                 lambda: self._finish_session(session), None))
            return None
        if session.estimator.live:
            return self._frame_reply(session, job, lambda: self._detect_live(session, job))
        return self._frame_reply(session, job, lambda: session.estimator.add_frame(
            job.request.fields["index"], job.request.fields["time"],
            decode_image(job.request.image)))

    def _detect_live(self, session: _SessionSlot, job: _Job) -> None:
        """A live frame's detection, handed to the live fitter (which replies)."""
        fields = job.request.fields
        detections, detected = session.estimator.detect_frame(
            fields["index"], fields["time"], decode_image(job.request.image))
        self._live_fits.put((session, _LiveFrame(job, detections, detected)))

    def _answer_live(self, session: _SessionSlot, frame: _LiveFrame) -> dict:
        return self._frame_reply(session, frame.job, lambda: {
            **frame.detections, **session.estimator.answer_frame(frame.detected)})

    def _frame_reply(self, session: _SessionSlot, job: _Job,
                     work: Callable[[], dict | None]) -> dict | None:
        """A frame's reply: ``work``'s result (None: another thread replies, and the frame
        stays in flight until then), or the error it raised, typed."""
        index = job.request.fields["index"]
        handed_on = False
        try:
            if session.state == "cancelled":
                raise ProtocolError(ErrorCode.CANCELLED, f"session {session.id} was cancelled")
            result = work()
            if result is None:
                handed_on = True
                return None
            session.frames_done += 1
            return ok_reply(job.request_id, session=session.id, index=index, result=result)
        except ProtocolError as exc:
            return error_reply(job.request_id, exc.code, f"frame {index}: {exc.message}")
        except Exception as exc:
            logger.exception("frame failed")
            return error_reply(job.request_id, ErrorCode.INTERNAL,
                               f"frame {index}: {type(exc).__name__}: {exc}")
        finally:
            if not handed_on:
                with self._lock:
                    session.in_flight = max(session.in_flight - 1, 0)
                    session.last_seen = time.monotonic()  # idle time counts from the reply

    def _live_fitter(self) -> None:
        """Answer live sessions' detected frames, in order, on one torch thread (the frame
        worker's detection has the other core); pass a live session's close and release on
        once its frames are answered."""
        from ..device import use_torch_threads

        use_torch_threads(1)
        out = self.context.socket(zmq.PUSH)
        out.connect(self._replies_address)
        try:
            while (item := self._live_fits.get()) is not None:
                session, work = item
                if isinstance(work, _Job):
                    self._run_job(session, work)  # a close goes to the finisher; no reply
                    continue
                out.send_multipart([work.job.peer, pack(self._answer_live(session, work))])
        finally:
            out.close(linger=1000)

    def _finisher(self) -> None:
        out = self.context.socket(zmq.PUSH)
        out.connect(self._replies_address)
        try:
            while True:
                try:  # a timeout, so signal handlers run promptly on the main thread
                    item = self._finishing.get(timeout=0.5)
                except queue.Empty:
                    continue
                if item is None:
                    return
                peer, request_id, work, avatar = item
                reply = pack(self._reply_of(request_id, work))
                if avatar is not None:  # free before replying: the client may ask again at once
                    with self._lock:
                        avatar.busy = False
                        avatar.last_seen = time.monotonic()  # idle from the reply on
                out.send_multipart([peer, reply])
        finally:
            out.close(linger=1000)

    @staticmethod
    def _reply_of(request_id: int | str | None, work: Callable[[], dict]) -> dict:
        """The reply to a finisher job: its fields, or the error it raised, typed."""
        from .estimators import Cancelled

        try:
            return ok_reply(request_id, **work())
        except Cancelled as exc:
            return error_reply(request_id, ErrorCode.CANCELLED, str(exc))
        except ProtocolError as exc:
            return error_reply(request_id, exc.code, exc.message)
        except Exception as exc:
            logger.exception("a finisher job failed")
            return error_reply(request_id, ErrorCode.INTERNAL,
                               f"{type(exc).__name__}: {exc}")

    def _finish_session(self, session: _SessionSlot) -> dict:
        """``session.close``'s reply fields: the estimator over the whole clip."""
        started = time.monotonic()
        ok = False
        try:
            result = session.estimator.finish(session.cancel_event.is_set)
            ok = True
            return {"session": session.id, "count": session.frames_done, **result}
        finally:
            session.estimator.close()
            with self._lock:
                self._sessions.pop(session.id, None)
            log_event(logger, "session.close", session=session.id, ok=ok,
                      frames=session.frames_done, seconds=round(time.monotonic() - started, 2))
