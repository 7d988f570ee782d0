"""``backend serve`` processes starting, scaling out, reclaiming, shutting down and keeping
strangers out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from backend.server.client import BackendError, BackendTimeout, Client, frames_of
from backend.server.keys import generate
from backend.server.process import serve_process
from backend.server.protocol import ErrorCode

from .server_process import local_endpoint, noise_frames


def _wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_two_servers_behind_one_client_share_the_sessions(server_home):
    with serve_process(server_home) as first, serve_process(server_home) as second, \
            Client([first.endpoint, second.endpoint]) as client:
        assert len(client.hello()) == 2
        sessions = [client.open_session(estimator="detector") for _ in range(4)]
        assert sorted(s.connection.endpoint for s in sessions) == sorted(
            [first.endpoint, second.endpoint] * 2)
        for number, session in enumerate(sessions):
            replies = list(session.stream(frames_of(noise_frames(20, number)), window=4,
                                          image_format="raw"))
            assert [r["index"] for r in replies] == list(range(20))
        for session in sessions:
            assert session.finish()["count"] == 20
        assert [s["sessions"] for s in client.status()] == [0, 0]
        # Each server logged its two closes (the log line may trail the reply a little).
        assert _wait_for(lambda: len(first.events("session.close"))
                         == len(second.events("session.close")) == 2, timeout=30), (
            first.events("session.close"), second.events("session.close"),
            first.events("stderr")[-5:], second.events("stderr")[-5:])


def test_a_vanished_client_has_its_session_reclaimed(server_home):
    with serve_process(server_home, "--session-timeout", "1") as server:
        gone = Client(server.endpoint)
        session = gone.open_session(estimator="detector")
        list(session.stream(frames_of(noise_frames(5, 0)), image_format="raw"))
        gone.close()  # no session.close, no cancel: the client just disappears
        with Client(server.endpoint) as observer:
            assert _wait_for(lambda: observer.status()[0]["sessions"] == 0, timeout=10)
    # Read once the server has exited: all its log lines are in then (two CI runs read
    # the line later than 10 and 30 s while it ran).
    (reclaimed,) = server.events("session.reclaimed")
    assert reclaimed["session"] == session.id


def _queue_then_signal(server, client, count: int) -> list[int]:
    """Send ``count`` frames of one session; once the server holds them all, SIGTERM it."""
    session = client.open_session(estimator="detector")
    sent = [session.send_frame(i, i / 30, frame, "raw")
            for i, frame in enumerate(noise_frames(count, 1, size=(480, 640)))]
    with Client(server.endpoint) as observer:
        assert _wait_for(lambda: observer.status()[0]["frames_received"] == count, timeout=30)
    server.process.send_signal(signal.SIGTERM)
    return session, sent


def _outcomes(session, sent: list[int]) -> list:
    outcomes = []
    for request_id in sent:
        try:
            outcomes.append(session.receive(request_id)["index"])
        except BackendError as exc:
            outcomes.append(exc.code)
    return outcomes


def test_sigterm_finishes_queued_work_refuses_new_work_then_exits(server_home):
    with serve_process(server_home, "--window", "200") as server, \
            Client(server.endpoint, timeout=20) as client:
        session, sent = _queue_then_signal(server, client, 120)
        # The signal is handled when the main thread next runs Python code.
        assert _wait_for(lambda: server.events("stopping"), timeout=30)
        with Client(server.endpoint, timeout=5) as latecomer, \
                pytest.raises(BackendError) as refused:
            latecomer.open_session(estimator="detector")
        assert refused.value.code == ErrorCode.SHUTTING_DOWN
        assert _outcomes(session, sent) == list(range(120))  # received before: all done
        assert server.process.wait(timeout=60) == 0
    # The server's last lines say why, should "stopped" ever be missing (a CI run lost it once
    # with the process exited cleanly; not reproduced).
    assert server.events("stopping") and server.events("stopped"), server.logs[-8:]


def test_sigterm_past_the_grace_period_answers_the_rest_cancelled(server_home):
    with serve_process(server_home, "--window", "200", "--shutdown-grace", "0.5") as server, \
            Client(server.endpoint, timeout=20) as client:
        session, sent = _queue_then_signal(server, client, 120)
        outcomes = _outcomes(session, sent)
        assert server.process.wait(timeout=60) == 0
    done = [o for o in outcomes if isinstance(o, int)]
    assert done == list(range(len(done))) and len(done) < 120
    assert outcomes[len(done):] == [ErrorCode.CANCELLED] * (120 - len(done))


def test_a_public_bind_without_keys_refuses_to_start(server_home):
    result = subprocess.run([sys.executable, "-m", "backend.cli", "serve", "--bind",
                             "tcp://0.0.0.0:0"], env=dict(os.environ, PEAR_HOME=str(server_home)),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 3  # a set-up error
    assert "without CURVE keys" in result.stderr and "backend keys generate" in result.stderr


def test_curve_lets_in_authorized_clients_only(server_home, tmp_path):
    keys = generate(tmp_path / "keys")
    stranger = generate(tmp_path / "stranger")
    with serve_process(server_home, "--keys", str(tmp_path / "keys"),
                       bind="tcp://0.0.0.0:*") as server:
        endpoint = local_endpoint(server.endpoint)
        with Client(endpoint, keys=keys["client"], timeout=10) as allowed:
            assert allowed.hello()[0]["server"] == "pear-backend"
        with Client(endpoint, keys=stranger["client"], timeout=1.5) as unknown, \
                pytest.raises(BackendTimeout):
            unknown.ping()
        with Client(endpoint, timeout=1.5) as plain, pytest.raises(BackendTimeout):
            plain.ping()
        with Client(endpoint, keys=keys["client"], timeout=10) as allowed:
            assert allowed.ping()[0] < 1.0  # the server is still fine


def test_key_folders_are_checked(tmp_path):
    from backend.server.errors import KeyFileError
    from backend.server.keys import load_client_keys

    made = generate(tmp_path / "keys")
    with pytest.raises(KeyFileError, match="already holds server keys"):
        generate(tmp_path / "keys")
    (made["client"] / "server.key").unlink()
    with pytest.raises(KeyFileError, match="server.key"):
        load_client_keys(made["client"])
    assert oct((made["server"] / "server.key_secret").stat().st_mode & 0o777) == "0o600"


def test_a_send_nobody_takes_times_out_instead_of_hanging():
    """Messages queue until the send queue is full (no server at the address here; a refused
    CURVE handshake leaves no peer either): the next send gives up after the client's timeout
    with BackendTimeout, and the connection starts afresh."""
    import socket as sockets

    import zmq

    from backend.server.client import _Connection

    with sockets.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connection = _Connection(zmq.Context.instance(), f"tcp://127.0.0.1:{port}", None, 0.3)
    started = time.monotonic()
    with pytest.raises(BackendTimeout, match="took no message within"):
        for _ in range(5000):  # more than the default send queue (1000)
            connection.send({"op": "ping"})
    assert time.monotonic() - started < 10
    connection.send({"op": "ping"})  # a fresh socket takes messages again


_CRASHING_THREAD = """
import logging, threading
from backend.perception.face_mesh import _native_stderr_silenced
from backend.server import logs
logs.configure()
with logs.thread_failures_logged(logging.getLogger("backend.server")):
    with _native_stderr_silenced():  # as while MediaPipe runs on another thread
        worker = threading.Thread(target=lambda: 1 / 0, name="worker")
        worker.start()
        worker.join()
"""


def test_a_crashed_server_thread_is_logged_even_while_stderr_is_silenced():
    done = subprocess.run([sys.executable, "-c", _CRASHING_THREAD], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    failed = [e for e in events if e["event"] == "thread.failed"]
    assert failed and failed[0]["thread"] == "worker", done.stderr
    assert failed[0]["error"].startswith("ZeroDivisionError")
    assert "in <lambda>" in failed[0]["traceback"]


def test_a_log_event_after_third_party_text_on_the_same_line_is_still_read():
    from backend.server.process import _log_entry

    event = '{"event": "session.reclaimed", "session": "ab"}\n'
    assert _log_entry(event)["session"] == "ab"
    assert _log_entry("I0000 graph closing " + event)["event"] == "session.reclaimed"
    assert _log_entry("W0000 feedback manager\n") == {"event": "stderr",
                                                      "line": "W0000 feedback manager"}
