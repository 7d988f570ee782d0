"""Synthetic samples on disk: WebDataset tar shards and a manifest in one folder.

Per sample the shard holds ``<index>.rgba.png`` (the 256x192 crop, straight alpha),
``<index>.labels.npz`` (``params.<name>``, ``joints3d``, ``keypoints2d.<set>`` as (K, 3) x, y,
visible, ``cam_t``, ``crop_camera``) and ``<index>.meta.json`` (the crop's camera, the full
frame's size, the pose's source). ``manifest.json`` says what made the folder (asset and spec
hash, seed, split, pose source, generator version) and whether generation finished.

Writing is resumable: shard k holds samples [k * shard_size, (k + 1) * shard_size), is written
under a temporary name and renamed when complete, so a rerun keeps complete shards and
rewrites the rest. Reading is by index (``ShardSamples``, the trainer's loader) or streamed
(``stream_records``: shards split over ranks, then over loader workers).
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import tarfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from itertools import islice
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import TrainingDataError
from .batch import Sample

FORMAT = "pear-synth-shards"
MANIFEST = "manifest.json"
MEMBERS = ("rgba.png", "labels.npz", "meta.json")


class ShardError(TrainingDataError):
    """A shard folder, manifest or shard that is missing, from another run, or damaged."""


@dataclass
class SynthRecord:
    """One synthetic sample as stored: the Sample (RGBA image, mask = alpha >= 0.5, keypoint
    confidence = visible) and what Sample has no field for."""

    index: int
    sample: Sample
    cam_t: np.ndarray  # (3,) camera-frame translation of the model origin
    crop_camera: np.ndarray  # (3,) the same as the regressor's crop camera (s, tx, ty)
    frame_size: tuple[int, int]  # the full frame's width, height
    source: str  # where the pose came from (a clip and frame, or "range")


@dataclass
class Manifest:
    asset_id: str
    spec_hash: str
    seed: int
    split: str
    count: int
    shard_size: int
    pose_source: str
    generator_version: int
    facing: float = 180.0  # degrees a body may turn away from the camera (synth --facing)
    pairs: bool = False  # records 2i and 2i + 1 show one person twice (synth --pairs)
    finished: bool = False
    format: str = FORMAT

    def shard_names(self) -> list[str]:
        return [f"shard-{self.split}-{k:06d}.tar"
                for k in range(-(-self.count // self.shard_size))]

    def shard_indices(self, shard: int) -> range:
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.count))

    def run(self) -> dict:
        """What must match for a rerun to resume this folder (the count may grow)."""
        return {k: v for k, v in asdict(self).items() if k not in ("count", "finished")}


# -- records <-> bytes --------------------------------------------------------------------------

def encode_record(record: SynthRecord) -> dict[str, bytes | str]:
    sample = record.sample
    png = io.BytesIO()
    Image.fromarray(sample.image, "RGBA").save(png, format="PNG")
    arrays = {**{f"params.{k}": v for k, v in sample.params.items()},
              **{f"keypoints2d.{k}": v for k, v in sample.keypoints2d.items()},
              "joints3d": sample.joints3d, "cam_t": record.cam_t,
              "crop_camera": record.crop_camera}
    labels = io.BytesIO()
    np.savez(labels, **arrays)
    meta = {"id": sample.id, "index": record.index, "source": record.source,
            "focal": sample.focal, "principal_point": list(sample.principal_point),
            "box_center": list(sample.box_center), "box_height": sample.box_height,
            "frame_size": list(record.frame_size)}
    return {"__key__": f"{record.index:09d}", "rgba.png": png.getvalue(),
            "labels.npz": labels.getvalue(), "meta.json": json.dumps(meta).encode()}


def decode_record(files: dict[str, bytes], where: str) -> SynthRecord:
    """A record from its members; a ShardError names ``where`` (the shard) and the sample."""
    key = files.get("__key__", "?")
    try:
        image = np.asarray(Image.open(io.BytesIO(files["rgba.png"])).convert("RGBA"))
        with np.load(io.BytesIO(files["labels.npz"]), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        meta = json.loads(files["meta.json"])
        sample = Sample(
            image=image, focal=float(meta["focal"]),
            principal_point=tuple(meta["principal_point"]), box_center=tuple(meta["box_center"]),
            box_height=float(meta["box_height"]),
            params={k[len("params."):]: v for k, v in arrays.items() if k.startswith("params.")},
            joints3d=arrays["joints3d"],
            keypoints2d={k[len("keypoints2d."):]: v for k, v in arrays.items()
                         if k.startswith("keypoints2d.")},
            mask=image[..., 3] >= 128, id=meta["id"])
        return SynthRecord(int(meta["index"]), sample, arrays["cam_t"], arrays["crop_camera"],
                           tuple(meta["frame_size"]), meta["source"])
    except Exception as exc:  # any damage: a missing member, bad PNG, npz or JSON
        raise ShardError(f"{where}: sample {key} is damaged ({type(exc).__name__}: {exc}); "
                         "delete the shard and rerun the same `pear-train synth` command (it "
                         "rewrites only missing shards)") from None


# -- writing ------------------------------------------------------------------------------------

def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    if not path.is_file():
        raise ShardError(f"{folder}: no {MANIFEST}: not a folder made by `pear-train synth`")
    try:
        manifest = Manifest(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise ShardError(f"{path}: not a synth manifest ({exc})") from None
    if manifest.format != FORMAT:
        raise ShardError(f"{path}: format {manifest.format!r}, expected {FORMAT!r}")
    return manifest


def _write_manifest(folder: Path, manifest: Manifest) -> None:
    partial_path = folder / (MANIFEST + ".partial")
    partial_path.write_text(json.dumps(asdict(manifest), indent=1))
    os.replace(partial_path, folder / MANIFEST)


def _complete(path: Path, count: int) -> bool:
    """Whether ``path`` is a readable shard of ``count`` samples."""
    try:
        with tarfile.open(path) as tar:
            names = tar.getnames()
    except (OSError, tarfile.TarError, EOFError):
        return False
    return len(names) == count * len(MEMBERS)


def _write_shard(path: Path, encoded: Iterator[dict[str, bytes | str]], count: int,
                 tick: Callable[[], None]) -> None:
    """The next ``count`` encoded records into shard ``path``, renamed into place when
    complete."""
    import webdataset

    temporary = path.with_name(path.name + ".partial")
    with open(temporary, "wb") as stream:
        writer = webdataset.TarWriter(stream, encoder=False, mtime=0)
        for _ in range(count):
            writer.write(next(encoded))
            tick()
        writer.close()
    os.replace(temporary, path)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Render on one thread, as the worker processes do: a sample is too small to share, and
    extra threads only fight over a busy machine's cores (9x slower under load here)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


_worker: dict = {}


def _start_worker(make_generator: Callable[[], Callable[[int], SynthRecord]]) -> None:
    import torch

    torch.set_num_threads(1)  # one process per core
    _worker["generate"] = make_generator()


def _render_in_worker(index: int) -> dict[str, bytes | str]:
    return encode_record(_worker["generate"](index))


def write_shards(folder: str | Path, manifest: Manifest,
                 make_generator: Callable[[], Callable[[int], SynthRecord]], workers: int = 1,
                 progress: Callable[[int, int], None] = lambda done, todo: None) -> int:
    """Generate the samples ``manifest`` describes into ``folder``: rendered by ``workers``
    processes (``make_generator`` must pickle), sample by sample, and written in order here;
    shards already complete are kept. Returns how many samples were rendered;
    ``progress(done, todo)`` is called after each."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / MANIFEST).is_file():
        old = read_manifest(folder)
        if old.run() != manifest.run():
            differ = {k: (v, manifest.run()[k]) for k, v in old.run().items()
                      if manifest.run()[k] != v}
            raise ShardError(f"{folder} holds samples of another run ({differ}, as (there, "
                             "asked)): choose a new --out folder or delete this one")
    _write_manifest(folder, manifest)
    jobs = [(folder / name, manifest.shard_indices(k))
            for k, name in enumerate(manifest.shard_names())
            if not _complete(folder / name, len(manifest.shard_indices(k)))]
    indices = [index for _, shard in jobs for index in shard]
    done = [0]

    def tick() -> None:
        done[0] += 1
        progress(done[0], len(indices))

    def write(encoded: Iterator[dict[str, bytes | str]]) -> None:
        for path, shard in jobs:
            _write_shard(path, encoded, len(shard), tick)

    if workers <= 1 or len(indices) <= 1:
        with _one_thread():
            generate = make_generator()
            write(encode_record(generate(index)) for index in indices)
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(workers, len(indices)), _start_worker, (make_generator,)) as pool:
            write(pool.imap(_render_in_worker, indices, chunksize=2))
    manifest.finished = True
    _write_manifest(folder, manifest)
    return len(indices)


# -- reading ------------------------------------------------------------------------------------

def _shard_paths(folder: Path) -> list[Path]:
    manifest = read_manifest(folder)
    if not manifest.finished:
        raise ShardError(f"{folder}: generation did not finish: rerun the `pear-train synth` "
                         "command that made it (it resumes)")
    paths = [folder / name for name in manifest.shard_names()]
    for path in paths:
        if not path.is_file():
            raise ShardError(f"{path}: shard missing (the manifest lists it): rerun the "
                             "`pear-train synth` command that made the folder to rewrite it")
    return paths


def as_folders(folders: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(folders, str | Path):
        return [Path(folders)]
    return [Path(f) for f in folders]


class ShardSamples:
    """Random access to the samples of one or more shard folders: a ``SampleSource`` for
    ``training.data.loader`` (images are RGBA; compositing comes later)."""

    def __init__(self, folders: str | Path | Sequence[str | Path]):
        # Per sample: its shard and each member's (offset, size) there.
        self._entries: list[tuple[Path, str, dict[str, tuple[int, int]]]] = []
        for folder in as_folders(folders):
            for path in _shard_paths(folder):
                self._entries.extend(_index_shard(path))

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> Sample:
        return self.record(index).sample

    def record(self, index: int) -> SynthRecord:
        path, key, members = self._entries[index]
        files: dict[str, bytes] = {"__key__": key}
        try:
            with open(path, "rb") as stream:
                for name, (offset, size) in members.items():
                    stream.seek(offset)
                    files[name] = stream.read(size)
        except OSError as exc:
            raise ShardError(f"{path}: cannot read ({exc})") from None
        return decode_record(files, str(path))


def _index_shard(path: Path) -> list[tuple[Path, str, dict[str, tuple[int, int]]]]:
    members: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        with tarfile.open(path) as tar:
            for info in tar:
                key, _, name = info.name.partition(".")
                members.setdefault(key, {})[name] = (info.offset_data, info.size)
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise ShardError(f"{path}: not a readable shard ({exc}): delete it and rerun the "
                         "`pear-train synth` command that made the folder") from None
    for key, found in members.items():
        if set(found) != set(MEMBERS):
            raise ShardError(f"{path}: sample {key} has {sorted(found)}, expected "
                             f"{list(MEMBERS)}: delete the shard and rerun `pear-train synth`")
    return [(path, key, found) for key, found in members.items()]


def _rank_shards(rank: int, world_size: int, urls):
    return islice(urls, rank, None, world_size)


def _shard_error(urls: list[str], error: Exception) -> bool:
    text = " ".join(map(str, error.args))
    where = next((url for url in urls if url in text), "a shard")
    raise ShardError(f"{where}: not a readable shard ({text}): delete it and rerun the "
                     "`pear-train synth` command that made the folder") from None


def stream_records(folders: str | Path | Sequence[str | Path], rank: int = 0,
                   world_size: int = 1) -> Iterator[SynthRecord]:
    """The records of the folders' shards in order, streamed: rank ``rank`` of
    ``world_size`` reads every world_size-th shard, and inside a DataLoader each worker a
    share of those."""
    import webdataset

    urls = [str(path) for folder in as_folders(folders) for path in _shard_paths(folder)]
    dataset = webdataset.WebDataset(
        urls, nodesplitter=partial(_rank_shards, rank, world_size),
        workersplitter=webdataset.split_by_worker, shardshuffle=False, empty_check=False,
        handler=partial(_shard_error, urls))
    for files in dataset:
        yield decode_record(files, files["__url__"])
