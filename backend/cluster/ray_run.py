"""The driver of ``--ray``: clips' tasks spread over a pool of Ray actors (``work.ClipWorker``).

Per clip: a survey, then its parts (the first part alone, the others together once the first
has fixed the body and camera), then ``finish``, which publishes its outputs whole. Actors
load the models once; one whose process dies is restarted by Ray and the task it ran is run
again (``max_restarts`` / ``max_task_retries``); a clip whose own task fails (an undecodable
file, nobody in view) is reported and the others go on. Ctrl-C stops the actors and removes
the unfinished attempts' staging folders; published clips stay.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SetupError
from . import outputs
from .work import ClipJob, ClipWorker, PartTask, Settings, Survey, parts_of

RETRIES = 3  # runs of a task whose worker died, before its clip is reported failed
INSTALL_HINT = ("`--ray` needs Ray: `pip install -e '.[cluster]'` (ray 2.60, which installs "
                "beside numpy<2 and protobuf 4.25)")


WORKER_TITLE = "ray::ClipWorker"  # Ray's process title for our actors (".task" while busy)


def worker_processes() -> dict[int, str]:
    """This machine's ClipWorker actor processes: pid -> Ray's title, which names the task
    running (for the bench and tests that kill one mid-task)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
        except (OSError, ValueError):
            continue
        if title.startswith(WORKER_TITLE):
            found[int(entry.name)] = title
    return found


class ClusterError(SetupError):
    """Ray is missing, or the cluster cannot be reached or used: says what to do."""


@dataclass
class ClipOutcome:
    """One clip's row of the summary: ``status`` done | skipped | failed."""

    clip: str
    footage: str
    status: str
    frames: int = 0
    seconds: float = 0.0
    error: str = ""
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


# (clips finished, clips in all, frames done, frames known so far): the driver's progress
Progress = Callable[[int, int, int, int], None]


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(INSTALL_HINT) from exc
    return ray


def connect(address: str | None, pear_home: Path) -> tuple[object, list[str]]:
    """Start a local Ray on this machine's cores (``address`` None), or join a cluster
    (``auto``, ``ray://host:port``, ``host:port``); returns the ``ray`` module and the
    environment variables it set, for ``disconnect``. A local Ray keeps its token in the
    project's data dir, not in ``~`` (unless the user named one); no usage statistics leave
    the machine. The environment is set before Ray is imported: it reads it then."""
    set_here = []
    if "RAY_USAGE_STATS_ENABLED" not in os.environ:
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        set_here.append("RAY_USAGE_STATS_ENABLED")
    options = {"include_dashboard": False, "log_to_driver": False}
    if address is None:
        if not {"RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(os.environ):
            token = pear_home / "cluster" / "auth_token"
            if not token.is_file():
                token.parent.mkdir(parents=True, exist_ok=True)
                token.write_text(secrets.token_hex(32))
                token.chmod(0o600)
            os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)
            set_here.append("RAY_AUTH_TOKEN_PATH")
        options["num_cpus"] = os.cpu_count()
    else:
        check_reachable(address)
        options["address"] = address
        # `ray start` (2.60) authenticates with a token, which a driver sends only in token
        # mode: a token given without the mode means it.
        if {"RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(os.environ) \
                and "RAY_AUTH_MODE" not in os.environ:
            os.environ["RAY_AUTH_MODE"] = "token"
            set_here.append("RAY_AUTH_MODE")
    try:
        ray = import_ray()
    except ClusterError:
        _restore(set_here)
        raise
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        disconnect(ray, set_here)
        raise ClusterError(f"cannot use the Ray cluster at {address or 'this machine'}: {exc} "
                           "(is `ray start --head` running there, and this Ray the same "
                           "version? docs/cluster.md)") from exc
    return ray, set_here


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A cluster address that nothing answers at, said in seconds (Ray itself retries for
    minutes). ``auto`` is Ray's to resolve."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--ray {address}: give a cluster address as host:port, "
                           "ray://host:port (Ray Client, port 10001 by default) or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ClusterError(f"--ray {address}: nothing answers there ({exc.strerror or exc}): is "
                           "`ray start --head` running on that host, and the port open? "
                           "(docs/cluster.md)") from None


def disconnect(ray, set_here: list[str]) -> None:
    ray.shutdown()
    _restore(set_here)


def _restore(set_here: list[str]) -> None:
    for name in set_here:
        os.environ.pop(name, None)


def worker_resources(settings: Settings, cluster: dict[str, float]) -> tuple[dict, int]:
    """Each actor's resources and how many fit: a GPU each when the regressor runs and the
    cluster has GPUs, else one CPU each (MediaPipe and the tracker use one core well)."""
    from ..pipeline.recovery import uses_regressor

    gpus = int(cluster.get("GPU", 0))
    if uses_regressor(settings.estimator) and gpus:
        return {"num_cpus": 1, "num_gpus": 1}, gpus
    return {"num_cpus": 1}, max(1, int(cluster.get("CPU", 1)))


@dataclass
class _Clip:
    job: ClipJob
    started: float
    survey: Survey | None = None
    # person -> the parts' results in order, filled as they finish (None: still running)
    parts: dict[int | None, list] = field(default_factory=dict)
    outcome: ClipOutcome | None = None


class _Board:
    """Frames done by the running tasks, told by the workers (a Ray actor of its own). A
    worker's last word can arrive after the driver counted the task as finished: it is
    ignored then."""

    def __init__(self):
        self.done: dict[str, int] = {}
        self.finished: set[str] = set()

    def update(self, task: str, frames: int) -> None:
        if task not in self.finished:
            self.done[task] = frames

    def drop(self, task: str) -> None:
        self.finished.add(task)
        self.done.pop(task, None)

    def total(self) -> int:
        return sum(self.done.values())


class _Tell:
    """A task's progress callback: ``ClipWorker.fit_part`` calls it, the board hears it."""

    def __init__(self, board, task: str):
        self.board, self.task = board, task

    def __call__(self, clip: str, done: int, total: int) -> None:
        self.board.update.remote(self.task, done)


def run_jobs(jobs: list[ClipJob], settings: Settings, address: str | None = None,
             force: bool = False, workers: int | None = None,
             progress: Progress | None = None, pear_home: Path | None = None
             ) -> list[ClipOutcome]:
    """Run ``jobs`` on Ray and return one outcome per clip, in the order given."""
    from ..paths import pear_home as default_home

    home = pear_home or default_home()
    mode = jobs[0].mode if jobs else "bake"
    key = settings.key(mode)
    outcomes: dict[int, ClipOutcome] = {}
    todo = []
    for number, job in enumerate(jobs):
        job.out_dir.mkdir(parents=True, exist_ok=True)
        outputs.clear_staging(job.out_dir)
        if force:
            outputs.forget(job.out_dir, job.name)
        elif (record := outputs.finished(job.out_dir, job.name, key)) is not None:
            outcomes[number] = ClipOutcome(job.name, str(job.footage), "skipped",
                                           record.get("frames", 0), record.get("seconds", 0.0),
                                           files={k: str(job.out_dir / v["name"])
                                                  for k, v in record["files"].items()})
            continue
        todo.append((number, job))
    if todo:
        ray, set_here = connect(address, home)
        try:
            # Another node finds its body model in its own data dir, unless one was named.
            worker_home = str(home) if address is None or "PEAR_HOME" in os.environ else None
            done = _Scheduler(ray, settings, workers, worker_home, progress,
                              skipped=len(outcomes), clips=len(jobs)).run(todo)
        finally:
            disconnect(ray, set_here)
        outcomes.update(done)
    return [outcomes[number] for number in range(len(jobs))]


class _Scheduler:
    def __init__(self, ray, settings: Settings, workers: int | None, pear_home: str | None,
                 progress: Progress | None, skipped: int, clips: int):
        self.ray, self.settings, self.progress = ray, settings, progress
        resources, fits = worker_resources(settings, ray.cluster_resources())
        actor = ray.remote(max_restarts=-1, max_task_retries=RETRIES, **resources)(ClipWorker)
        self.actors = [actor.remote(settings, pear_home) for _ in range(workers or fits)]
        try:  # a worker that cannot start (no body model on its node) is the set-up's problem
            ray.get([a.pid.remote() for a in self.actors])
        except ray.exceptions.RayError as exc:
            raise ClusterError(f"the cluster's workers cannot start: {_reason(exc)}") from None
        self.board = ray.remote(num_cpus=0)(_Board).remote()
        self.idle = list(self.actors)
        self.ready: list[tuple] = []  # (clip number, method, args) waiting for an actor
        self.running: dict = {}  # ObjectRef -> (clip number, method, args, actor)
        self.clips: dict[int, _Clip] = {}
        self.frames_done = 0
        self.skipped, self.total_clips = skipped, clips

    def run(self, todo: list[tuple[int, ClipJob]]) -> dict[int, ClipOutcome]:
        for number, job in todo:
            self.clips[number] = _Clip(job, time.perf_counter())
            self.ready.append((number, "survey", (job,)))
        try:
            while any(clip.outcome is None for clip in self.clips.values()):
                self._dispatch()
                finished, _ = self.ray.wait(list(self.running), num_returns=1, timeout=0.5)
                for ref in finished:
                    self._collect(ref)
                self._show()
        except KeyboardInterrupt:
            for actor in self.actors:  # mid-write attempts die with them; staging is cleared
                self.ray.kill(actor, no_restart=True)
            for clip in self.clips.values():
                outputs.clear_staging(clip.job.out_dir)
            raise
        return {number: clip.outcome for number, clip in self.clips.items()}

    def _dispatch(self) -> None:
        while self.ready and self.idle:
            number, method, args = self.ready.pop(0)
            actor = self.idle.pop(0)
            if method == "fit_part":
                args = (*args, _Tell(self.board, self._task_name(number, args[0])))
            ref = getattr(actor, method).remote(*args)
            self.running[ref] = (number, method, args, actor)

    def _collect(self, ref) -> None:
        number, method, args, actor = self.running.pop(ref)
        self.idle.append(actor)
        clip = self.clips[number]
        if clip.outcome is not None:
            return  # the clip failed in another of its tasks
        try:
            value = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            self._fail(number, _reason(exc))
            return
        if method == "survey":
            self._surveyed(number, value)
        elif method == "fit_part":
            self._fitted(number, args[0], value)
        else:
            clip.outcome = ClipOutcome(clip.job.name, str(clip.job.footage), "done",
                                       value["frames"], time.perf_counter() - clip.started,
                                       files=value["files"], notes=value["notes"])

    def _surveyed(self, number: int, survey: Survey) -> None:
        clip = self.clips[number]
        clip.survey = survey
        parts = parts_of(survey, self.settings, self._spare_workers())
        for person in survey.people:
            clip.parts[person] = [None] * len(parts)
            self.ready.append((number, "fit_part", (PartTask(clip.job, person, parts[0]),)))

    def _fitted(self, number: int, task: PartTask, results) -> None:
        clip = self.clips[number]
        self.board.drop.remote(self._task_name(number, task))
        self.frames_done += task.part.stop - task.part.start
        slots = clip.parts[task.person]
        slots[task.part.index] = (task.part.start, results)
        if task.part.index == 0:  # the others fit this part's body and camera
            for part in parts_of(clip.survey, self.settings, self._spare_workers())[1:]:
                self.ready.append((number, "fit_part",
                                   (PartTask(clip.job, task.person, part, results),)))
        if all(slot is not None for person in clip.parts.values() for slot in person):
            people = [(person, slots) for person, slots in clip.parts.items()]
            self.ready.insert(0, (number, "finish", (clip.job, people, clip.survey.notes,
                                                      time.perf_counter() - clip.started)))

    def _spare_workers(self) -> bool:
        return len(self.clips) < len(self.actors)

    def _fail(self, number: int, reason: str) -> None:
        clip = self.clips[number]
        clip.outcome = ClipOutcome(clip.job.name, str(clip.job.footage), "failed",
                                   seconds=time.perf_counter() - clip.started, error=reason)
        self.ready = [entry for entry in self.ready if entry[0] != number]

    def _task_name(self, number: int, task: PartTask) -> str:
        return f"{number}/{task.person}/{task.part.index}"

    def _show(self) -> None:
        if self.progress is None:
            return
        finished = self.skipped + sum(c.outcome is not None for c in self.clips.values())
        known = sum(c.survey.frames * len(c.survey.people) for c in self.clips.values()
                    if c.survey is not None)
        running = self.ray.get(self.board.total.remote())
        self.progress(finished, self.total_clips, self.frames_done + running, known)


def _reason(error: Exception) -> str:
    """The clip's own error (what the task raised), or what happened to its worker."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, Exception) and not isinstance(cause, type(error)):
        return str(cause)
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__
