"""What a cluster worker does, as plain Python (no Ray here: ``ray_run`` hosts it in actors).

A clip is worked in three kinds of task, each small enough to retry: ``survey`` (frames, and
who is in view when everyone is baked), ``fit_part`` (one part of one person's motion: the
perception and the estimator over its frames) and ``finish`` (the scene and exports, or the
result file, staged and published whole; ``outputs``). A worker loads the body model and the
regressor once and keeps them for every task it runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..pipeline.parts import Part, plan_parts
from ..results import ClipResults
from . import outputs

# (clip, frames done in this task, frames in it): how a task reports its progress
Report = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Settings:
    """What decides a clip's outputs: ``backend bake``'s / ``backend fit``'s options."""

    asset: str
    estimator: str = "tracker"
    checkpoint: str | None = None
    adapter: str | None = None
    smooth: float = 1.0
    focal: float | None = None
    max_frames: int | None = None
    contact: bool = True
    face_scores: bool = True
    person: int | str | None = None  # a number, "all" (bake only) or None: the most prominent
    formats: tuple[str, ...] = ()
    background: bool = True
    overlay: bool = False
    body_shape_keys: bool = False
    retarget: tuple[str, str, str | None] | None = None  # preset, character file, armature
    part_frames: int = 300  # a clip longer than this is split over workers; 0: never
    overlap: int = 8

    def key(self, mode: str) -> str:
        """The outputs' fingerprint (``outputs.settings_key``); how a clip is split is not
        part of it: the outputs are the same clip either way."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("part_frames", "overlap")}
        return outputs.settings_key({"mode": mode, **fields})


@dataclass(frozen=True)
class ClipJob:
    """One clip: ``mode`` "bake" (a .blend and exports in ``out_dir``) or "fit" (the result
    file ``output``)."""

    footage: Path
    out_dir: Path
    mode: str = "bake"
    output: Path | None = None

    @property
    def name(self) -> str:
        if self.mode == "fit":
            return self.output.stem
        from ..pipeline.bake import clip_name

        return clip_name(self.footage)


@dataclass
class Survey:
    frames: int
    people: list[int | None]  # whom to fit: the one asked for, or everyone of the first frame
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PartTask:
    job: ClipJob
    person: int | None
    part: Part
    first: ClipResults | None = None  # the clip's first part: its body and camera hold


def parts_of(survey: Survey, settings: Settings, spare_workers: bool = True) -> list[Part]:
    """How each person's motion is split: only when there are more workers than clips (else
    every worker has a clip, and parts would only add each fit's fixed cost), and only the
    most prominent person's, whom every part finds again by itself; a person chosen by number
    is followed from the first frame on, so their clip stays whole."""
    split = settings.part_frames if settings.person is None and spare_workers else 0
    return plan_parts(survey.frames, split, settings.overlap)


class ClipWorker:
    """Runs a cluster's tasks in one process, models loaded once (``ray_run`` makes an actor
    of it; called directly it works the same, in this process)."""

    def __init__(self, settings: Settings, pear_home: str | None = None):
        from ..paths import route_caches

        if pear_home:  # before the body model is looked up
            os.environ["PEAR_HOME"] = pear_home
        route_caches()  # bpy's and torch's caches into it too, as the command line does
        from ..body import registry
        from ..pipeline.recovery import load_regressor, uses_regressor

        self.settings = settings
        self.asset = registry.load(settings.asset)
        self.regressor = (load_regressor(self.asset, settings.checkpoint,
                                         adapter=settings.adapter)
                          if uses_regressor(settings.estimator) else None)

    def pid(self) -> int:
        return os.getpid()

    def survey(self, job: ClipJob) -> Survey:
        from ..perception.frames import open_footage
        from ..pipeline.bake import people_to_follow

        source = open_footage(job.footage)
        frames = min(source.frame_count, self.settings.max_frames or source.frame_count)
        people, notes = people_to_follow(job.footage, self.settings.person,
                                         self.settings.max_frames)
        return Survey(frames, people, notes)

    def fit_part(self, task: PartTask, report: Report | None = None) -> ClipResults:
        from ..pipeline.fit import fit_footage
        from ..pipeline.rig import subject_params

        settings, part, first = self.settings, task.part, task.first
        done = [0.0]

        def progress(label: str, step: int, steps: int) -> None:
            if report is not None and label.startswith("detecting"):
                now = time.monotonic()
                if now - done[0] > 0.5 or step == steps:  # not a message a frame
                    done[0] = now  # frames of its own, not those the part before keys
                    report(task.job.name, max(0, step - (part.start - part.fit_from)),
                           part.stop - part.start)

        return fit_footage(task.job.footage, self.asset, smooth=settings.smooth,
                           focal=first.focal if first else settings.focal,
                           max_frames=part.stop,
                           person=task.person, estimator=settings.estimator,
                           regressor=self.regressor, progress=progress,
                           contact=settings.contact, face_scores=settings.face_scores,
                           first=part.fit_from,
                           subject=subject_params(self.asset, first.params) if first else None
                           ).results

    def finish(self, job: ClipJob, people: list[tuple[int | None, list[tuple[int, ClipResults]]]],
               notes: list[str], seconds: float) -> dict:
        """Write the clip's outputs (staged, then published whole) and return its record."""
        from ..pipeline.parts import join_parts
        from ..results import save_results

        settings = self.settings
        folder = outputs.staging_folder(job.out_dir, job.name)
        motion = join_parts([results for _, results in people[0][1]])
        if job.mode == "fit":
            staged = {"results": save_results(motion, folder / job.output.name)}
        else:
            staged = self._bake(job, people, folder)
        summary = {"footage": str(job.footage), "frames": len(motion.frames),
                   "parts": len(people[0][1]),
                   "people": len(people), "seconds": round(seconds, 2), "notes": notes}
        published = outputs.publish(staged, job.out_dir, job.name, settings.key(job.mode),
                                    summary)
        return {**summary, "files": {kind: str(path) for kind, path in published.items()}}

    def _bake(self, job: ClipJob, people, folder: Path) -> dict[str, Path]:
        from ..pipeline.bake import PersonMotion, RetargetTo, write_bake

        settings = self.settings
        retarget = (RetargetTo(settings.retarget[0], Path(settings.retarget[1]),
                               settings.retarget[2]) if settings.retarget else None)
        return write_bake(job.footage, folder, self.asset,
                          [PersonMotion(number, parts) for number, parts in people],
                          settings.formats, background=settings.background,
                          overlay=settings.overlay, body_shape_keys=settings.body_shape_keys,
                          retarget=retarget, everyone=settings.person == "all")

