"""The learned pose prior: one Gaussian mixture over the body pose (21 joints, axis-angle, the
asset's own skeleton) and one per hand, saved as an ``.npz`` per body model.

Where a prior is found: ``$PEAR_HOME/priors/pose_prior_<asset>.npz`` (trained here by
``backend priors train``) first, then the one shipped in ``backend/priors/data/``. The poses
are local rotations of the asset's own rest skeleton, so a prior belongs to one body model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..paths import priors_dir
from .mixture import GaussianMixture, MixtureDensity

SHIPPED_DIR = Path(__file__).parent / "data"
PARTS = ("body_pose", "left_hand_pose", "right_hand_pose")
FORMAT_VERSION = 1


class PriorFileError(InputError):
    """A pose-prior file that cannot be read or belongs to another body model."""


@dataclass(frozen=True)
class PosePrior:
    asset_id: str
    mixtures: dict[str, GaussianMixture]  # PARTS -> mixture over that parameter, flattened
    info: dict = field(default_factory=dict)  # how it was trained and what it scored

    def densities(self, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
                  ) -> dict[str, MixtureDensity]:
        """Each part's density as torch tensors: ``densities[part].log_likelihood(pose
        flattened to (T, D))``."""
        return {name: mixture.density(dtype, device) for name, mixture in self.mixtures.items()}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for name, mixture in self.mixtures.items():
            arrays[f"{name}/weights"] = mixture.weights.astype(np.float32)
            arrays[f"{name}/means"] = mixture.means.astype(np.float32)
            arrays[f"{name}/covariances"] = mixture.covariances.astype(np.float32)
        meta = {"format": FORMAT_VERSION, "asset_id": self.asset_id, **self.info}
        np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)
        return path


def read_pose_prior(path: str | Path) -> PosePrior:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            mixtures = {name: GaussianMixture(data[f"{name}/weights"].astype(np.float64),
                                              data[f"{name}/means"].astype(np.float64),
                                              data[f"{name}/covariances"].astype(np.float64))
                        for name in PARTS}
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise PriorFileError(f"{path}: not a readable pose-prior file ({exc}); retrain it with "
                             "`backend priors train --mocap DIR`") from exc
    if meta.get("format") != FORMAT_VERSION:
        raise PriorFileError(f"{path}: pose-prior format {meta.get('format')}, this version "
                             f"reads {FORMAT_VERSION}; retrain it with `backend priors train`")
    asset_id = meta.pop("asset_id")
    meta.pop("format")
    return PosePrior(asset_id, mixtures, meta)


def prior_path(asset_id: str) -> Path | None:
    """The file the tracker uses for ``asset_id``'s poses, or None when there is none."""
    for folder in (priors_dir(), SHIPPED_DIR):
        path = folder / f"pose_prior_{asset_id}.npz"
        if path.is_file():
            return path
    return None


def load_pose_prior(asset_id: str) -> PosePrior | None:
    path = prior_path(asset_id)
    if path is None:
        return None
    prior = read_pose_prior(path)
    if prior.asset_id != asset_id:
        raise PriorFileError(f"{path} was trained for body model {prior.asset_id!r}, not "
                             f"{asset_id!r}: retrain it with `backend priors train --asset "
                             f"{asset_id} --mocap DIR`")
    return prior
