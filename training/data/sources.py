"""``data.train``/``data.val`` entries -> one ``SampleSource``. An entry is a shard folder made
by ``pear-train synth`` or ``KIND:PATH`` (``KIND:PATH:IMAGES`` when the images are not next
to the annotations), KIND one of ``READERS``. ``data.mixture`` weights the entries (by the
whole entry or by its kind, e.g. ``{coco-wholebody = 0.3, shards = 0.7}``); without weights the
entries are simply concatenated (all shard folders read as one, as before)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from torch.utils.data import ConcatDataset

from backend.body.asset import Asset

from ..errors import TrainingDataError
from .loader import SampleSource
from .mixing import MixedSource

READERS = ("coco-wholebody", "mmhuman3d", "smplx-params")
SHARDS = "shards"


def parse_entry(entry: str) -> tuple[str, str, str | None]:
    """(kind, path, images folder or None); a plain path is a shard folder."""
    kind, _, rest = entry.partition(":")
    if kind not in READERS or not rest:
        return SHARDS, entry, None
    path, _, images = rest.partition(":")
    return kind, path, images or None


def open_entry(entry: str, asset: Asset, smpl_offset: np.ndarray | None = None
               ) -> SampleSource:
    """One entry's source (``smpl_offset``: Eq. 4's offset for mmhuman3d's SMPL poses)."""
    kind, path, images = parse_entry(entry)
    if kind == "coco-wholebody":
        from .readers.coco_wholebody import CocoWholeBody

        return CocoWholeBody(path, asset, images)
    if kind == "mmhuman3d":
        from .readers.mmhuman3d import Mmhuman3dSamples

        return Mmhuman3dSamples(path, asset, images, smpl_offset)
    if kind == "smplx-params":
        from .readers.smplx_params import SmplxParamSamples

        return SmplxParamSamples(path, asset, images)
    from .shards import ShardSamples

    return ShardSamples(path)


def _weight(entry: str, mixture: Mapping[str, float]) -> float:
    kind = parse_entry(entry)[0]
    for key in (entry, kind):
        if key in mixture:
            return mixture[key]
    raise TrainingDataError(f"data.mixture gives no weight for {entry!r}: name it or its kind "
                            f"({kind!r}); the mixture names {sorted(mixture)}")


def smpl_pose_offset(smpl_model: str, asset: Asset) -> np.ndarray | None:
    """Eq. 4's offset from the user's SMPL file (``data.smpl_model``), or None without one.
    Only an SMPL-X asset has a pose SMPL's can be turned into."""
    if not smpl_model:
        return None
    from .readers.crop import is_smplx

    if not is_smplx(asset):
        raise TrainingDataError(
            f"data.smpl_model is set but body model {asset.asset_id!r} is not SMPL-X: Eq. 4 "
            "turns SMPL poses into SMPL-X ones only. Install an SMPL-X model (`backend models "
            "install`) and set data.asset, or leave data.smpl_model empty (mmhuman3d data then "
            "gives keypoints only)")
    from backend.body.build.model_files import read_smpl_rest_joints

    from .readers.smpl_offset import rest_joints, tpose_offset

    return tpose_offset(read_smpl_rest_joints(smpl_model), rest_joints(asset))


def open_sources(entries: Sequence[str], mixture: Mapping[str, float], asset: Asset,
                 seed: int = 0, smpl_offset: np.ndarray | None = None) -> SampleSource:
    """All ``entries`` as one source, mixed by ``mixture`` when it has weights.
    ``smpl_offset``: Eq. 4's (``smpl_pose_offset``), so mmhuman3d's SMPL poses become labels."""
    if not entries:
        raise TrainingDataError("no data entries: give shard folders made by `pear-train "
                                f"synth` or KIND:PATH with KIND one of {READERS}")
    if mixture:
        unknown = sorted(set(mixture) - set(entries) - {parse_entry(e)[0] for e in entries})
        if unknown:
            raise TrainingDataError(f"data.mixture names {unknown}, which match no data entry "
                                    f"(entries: {list(entries)})")
        return MixedSource([open_entry(e, asset, smpl_offset) for e in entries],
                           [_weight(e, mixture) for e in entries], seed)
    folders = [e for e in entries if parse_entry(e)[0] == SHARDS]
    others = [open_entry(e, asset, smpl_offset) for e in entries if parse_entry(e)[0] != SHARDS]
    if folders:
        from .shards import ShardSamples

        others.insert(0, ShardSamples(folders))
    return others[0] if len(others) == 1 else ConcatDataset(others)
