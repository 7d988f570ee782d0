"""Samples with exact labels for training tests: random parameters of a body model, a random
crop camera, labels computed through the trainer's own forward, and a noise image per sample
(distinct, so a network can memorise them)."""

from __future__ import annotations

import numpy as np
import torch

from backend.body.landmark_model import LandmarkModel
from backend.body.model import BodyModel
from backend.regressor.layout import ParamLayout
from training.data.batch import Sample, collate
from training.forward import JOINTS, predict

from .conftest import random_params

LABELLED = ("transl", "joints_offset", "head_scale")  # not labelled (the camera places the body)


def labelled_samples(model: BodyModel, count: int, seed: int = 0) -> list[Sample]:
    return labelled_samples_and_truth(model, count, seed)[0]


def labelled_samples_and_truth(model: BodyModel, count: int, seed: int = 0
                               ) -> tuple[list[Sample], torch.Tensor]:
    """The samples and the network output vector (count, layout.size) that predicts them."""
    layout = ParamLayout([spec for spec in model.spec.values()])
    generator = np.random.default_rng(seed)
    params = {k: v.float() for k, v in random_params(model, count, seed=seed,
                                                      skip=LABELLED).items()}
    camera = torch.tensor(np.stack([generator.uniform(0.8, 1.0, count),
                                    generator.uniform(-0.1, 0.1, count),
                                    generator.uniform(-0.1, 0.1, count)], 1), dtype=torch.float32)
    samples = [Sample(image=generator.integers(0, 256, (256, 192, 3), dtype=np.uint8),
                      focal=float(generator.uniform(800, 1500)),
                      principal_point=(640.0, 360.0),
                      box_center=(float(generator.uniform(400, 900)), 380.0),
                      box_height=float(generator.uniform(300, 600)), id=f"test/{seed}/{i}")
               for i in range(count)]
    batch = collate(samples, list(model.spec.values()), len(model.joint_names),
                    {JOINTS: len(model.joint_names)})
    vector = layout.encode(params, camera)
    with torch.no_grad():
        truth = predict(vector, batch, layout, LandmarkModel(model, []), [JOINTS])
    for i, sample in enumerate(samples):
        sample.params = {name: value[i].numpy() for name, value in params.items()}
        sample.joints3d = truth.joints3d[i].numpy()
        sample.keypoints2d = {JOINTS: np.concatenate(
            [truth.keypoints2d[JOINTS][i].numpy(), np.ones((len(model.joint_names), 1))], 1)}
    return samples, vector


def forward_of_records(records: list, asset, model: BodyModel) -> tuple:
    """(the trainer's forward of each stored record's parameters and crop camera, their
    batch) in float64: what exact labels must reproduce."""
    import dataclasses

    from training.data.loader import keypoint_sizes

    layout = ParamLayout(asset.param_spec)
    batch = collate([dataclasses.replace(r.sample, image=r.sample.image[..., :3])
                     for r in records], asset.param_spec, len(asset.joint_names),
                    keypoint_sizes(asset))
    batch.focal, batch.principal_point, batch.box_center, batch.box_height = (
        value.double() for value in (batch.focal, batch.principal_point, batch.box_center,
                                     batch.box_height))
    camera = torch.as_tensor(np.stack([r.crop_camera for r in records])).double()
    vector = layout.encode({k: v.double() for k, v in batch.params.items()}, camera)
    with torch.no_grad():
        return predict(vector, batch, layout, LandmarkModel(model),
                       list(keypoint_sizes(asset))), batch
