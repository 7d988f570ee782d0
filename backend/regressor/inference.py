"""Images and person boxes in, bodies out: crop and normalize, run the network (CUDA when
present, optionally in half precision there), decode, place the camera in the full frame, pose
the body model and project its keypoints onto the full image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..body.asset import Asset
from ..body.model import BodyModel
from ..camera import project, to_camera
from ..device import choose_device
from .checkpoint import load_checkpoint
from .crop_camera import CROP_ASPECT, crop_box, crop_to_full
from .vit import INPUT_SIZE

# ImageNet statistics, as ViT backbones are pretrained with.
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def crop_person(image: np.ndarray, center: np.ndarray, height: float) -> np.ndarray:
    """The 256x192 crop of an RGB uint8 ``image`` around ``center`` (x, y) of ``height`` pixels
    (width 3/4 of it); outside the image is black."""
    zoom = INPUT_SIZE[0] / height
    origin = np.asarray(center, np.float64) - np.array([height * CROP_ASPECT, height]) / 2
    affine = np.array([[zoom, 0, -origin[0] * zoom], [0, zoom, -origin[1] * zoom]])
    return cv2.warpAffine(image, affine, (INPUT_SIZE[1], INPUT_SIZE[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def normalize(crops: np.ndarray) -> torch.Tensor:
    """(B, 256, 192, 3) uint8 RGB -> (B, 3, 256, 192) float32, ImageNet-normalized."""
    values = (crops.astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(values).permute(0, 3, 1, 2).contiguous()


@dataclass
class Prediction:
    params: dict[str, np.ndarray]  # (B, ...) body-model parameters, axis-angle
    cam_t: np.ndarray  # (B, 3) camera-frame translation in the full image
    focal: np.ndarray  # (B,) pixels
    joints: np.ndarray  # (B, J, 3) model frame
    vertices: np.ndarray  # (B, V, 3) model frame
    landmarks_px: dict[str, np.ndarray]  # set -> (B, K, 2) full-image pixels


class Regressor:
    """A trained regressor for one asset (``load_checkpoint`` checks they belong together)."""

    def __init__(self, checkpoint: str | Path, asset: Asset, device: str | None = None,
                 half: bool = False, compile: bool = False, adapter: str | Path | None = None):
        """``half``: fp16 on CUDA (ignored on CPU, which gains nothing from it here);
        ``compile``: ``torch.compile`` the network (tens of seconds once, then faster);
        ``adapter``: an adapter folder (``pear-train adapt``) trained on ``checkpoint``."""
        self.device = torch.device(device or choose_device())
        self.half = half and self.device.type == "cuda"
        if adapter is not None:
            from .adapter_checkpoint import load_adapted

            self.network = load_adapted(checkpoint, adapter, asset, self.device)
        else:
            self.network = load_checkpoint(checkpoint, asset, self.device)
        if self.half:
            self.network.half()
        self._forward = torch.compile(self.network) if compile else self.network
        self.body = BodyModel(asset).to(self.device)

    @torch.no_grad()
    def predict(self, images: list[np.ndarray], boxes: np.ndarray,
                focal: np.ndarray | None = None, center: np.ndarray | None = None
                ) -> Prediction:
        """``images``: RGB uint8 frames; ``boxes``: (B, 4) person boxes x0, y0, x1, y1 in them;
        ``focal``: (B,) pixels, default the larger image side; ``center``: (B, 2) principal
        points in pixels, default the image centres."""
        boxes_t = torch.as_tensor(np.asarray(boxes, np.float32))
        crop_center, height = crop_box(boxes_t)
        crops = np.stack([crop_person(image, c, float(h))
                          for image, c, h in zip(images, crop_center.numpy(), height.numpy(),
                                                 strict=True)])
        inputs = normalize(crops).to(self.device)
        output = self._forward(inputs.half() if self.half else inputs).float()
        params, crop_camera = self.network.layout.decode(output)
        sizes = torch.tensor([image.shape[:2] for image in images], dtype=torch.float32)
        focal_t = (torch.as_tensor(np.asarray(focal, np.float32)) if focal is not None
                   else sizes.max(1).values)
        center_t = (torch.as_tensor(np.asarray(center, np.float32)) if center is not None
                    else sizes.flip(1) / 2)
        cam_t = crop_to_full(crop_camera.cpu(), crop_center, height, focal_t, center_t)
        posed = self.body(params)
        cam_d = cam_t.to(self.device)
        landmarks = {name: project(to_camera(points, cam_d),
                                   focal_t.to(self.device)[:, None, None],
                                   center_t.to(self.device)[:, None]).cpu().numpy()
                     for name, points in posed.landmarks.items()}
        return Prediction({k: v.cpu().numpy() for k, v in params.items()}, cam_t.numpy(),
                          focal_t.numpy(), posed.joints.cpu().numpy(),
                          posed.vertices.cpu().numpy(), landmarks)
