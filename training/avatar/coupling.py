"""The coupling stage 2 relies on (PEAR §3.3): with a renderer and the true source body, a
target pose made noisy is pulled back toward the truth by gradient descent through the
photometric loss alone. If it is not, the photometric loss cannot teach the regressor pose."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.avatar.model import GaussianAvatar
from backend.body.model import BodyModel
from backend.camera import to_camera

from .batch import PairBatch
from .train import posed_vertices


@dataclass(frozen=True)
class Coupling:
    start_mm: float  # mean joint error of the noisy target poses
    end_mm: float  # after the descent
    pairs: int


def pose_descent(avatar: GaussianAvatar, body: BodyModel, batch: PairBatch, steps: int = 40,
                 noise: float = 0.15, lr: float = 0.003, through: str = "raw",
                 seed: int = 0) -> Coupling:
    """Adam on each target's body pose (its truth plus ``noise`` rad of Gaussian noise per
    axis), minimising the L1 distance between the avatar's rendering of that pose (``through``
    "raw": the splatted colours; "refined": after the refiner) and the target image; the
    other target parameters, the camera and the source body are true. The avatar is frozen
    (``requires_grad_(False)``): only the pose moves."""
    avatar = avatar.requires_grad_(False)
    with torch.no_grad():
        built = avatar.build(batch.source.image, posed_vertices(body, batch.source),
                             batch.source.K)
    truth = {name: value.float() for name, value in batch.target.params.items()}
    with torch.no_grad():
        true_joints = body(truth).joints
    generator = torch.Generator().manual_seed(seed)
    pose = (truth["body_pose"] + noise * torch.randn(truth["body_pose"].shape,
                                                     generator=generator)).requires_grad_(True)
    optimizer = torch.optim.Adam([pose], lr=lr)

    def joint_error_mm() -> float:
        with torch.no_grad():
            joints = body({**truth, "body_pose": pose}).joints
        return 1000.0 * float((joints - true_joints).norm(dim=-1).mean())

    start = joint_error_mm()
    height, width = batch.target.image.shape[-2:]
    for _ in range(steps):
        vertices = to_camera(body({**truth, "body_pose": pose}).vertices,
                             batch.target.cam_t.float())
        rendering = avatar.render(built, vertices, batch.target.K, height, width)
        image = rendering.raw if through == "raw" else rendering.image
        loss = (image - batch.target.image).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return Coupling(start, joint_error_mm(), len(batch))
