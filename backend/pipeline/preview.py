"""``backend models preview``: a contact sheet of an asset, the template and posed/expressive
samples, rendered with the project's small rasterizer so a person can look at the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..body.asset import Asset
from ..body.model import BodyModel
from ..camera import view_rotation
from ..renderer.mesh_raster import project, rasterize, shade

PANEL = (480, 320)  # height, width


def render_panel(vertices: torch.Tensor, faces: torch.Tensor, yaw: float = 0.0,
                 focus: torch.Tensor | None = None, color=(0.82, 0.62, 0.52),
                 focal: float = 1000.0) -> np.ndarray:
    """(H, W, 3) uint8 image of a mesh in the model frame, seen from the front (turned by
    ``yaw``), framed to fit the ``focus`` vertices (default: all)."""
    height, width = PANEL
    points = vertices.double() @ view_rotation(yaw).T
    framed = points if focus is None else points[focus]
    low, high = framed.min(0).values, framed.max(0).values
    middle = (low + high) / 2
    span = high - low
    distance = max(focal * span[1] / (0.88 * height), focal * span[0] / (0.88 * width))
    camera = points - middle + torch.tensor([0.0, 0.0, float(distance + span[2] / 2)],
                                            dtype=torch.float64)
    fragments = rasterize(project(camera, focal, (width / 2, height / 2)), faces, height, width)
    image = shade(fragments, camera, faces, color)
    return (image.numpy() * 255).round().astype(np.uint8)


def _samples(model: BodyModel, expression_names: list[str]) -> list[tuple[str, dict, str]]:
    """(label, parameters, region) of each panel after the template views."""
    def named(**values: float) -> torch.Tensor:
        expression = torch.zeros(1, model.spec["expression"].size)
        for name, value in values.items():
            if name in expression_names:
                expression[0, expression_names.index(name)] = value
        if not expression.any():  # unnamed basis: a couple of components
            expression[0, :2] = torch.tensor([2.0, -1.5])[: expression.shape[1]]
        return expression

    def body(**rotations: tuple[float, float, float]) -> torch.Tensor:
        pose = torch.zeros(1, *model.spec["body_pose"].shape)
        for joint, value in rotations.items():
            pose[0, model.joint_names.index(joint) - 1] = torch.tensor(value)
        return pose

    betas = torch.zeros(1, model.spec["betas"].size)
    wave = body(left_shoulder=(0, 0, 1.2), left_elbow=(0, 1.2, 0), right_shoulder=(0, 0, -0.4),
                right_hip=(-0.6, 0, 0), right_knee=(1.0, 0, 0), neck=(0.2, 0.3, 0))
    return [
        ("posed + smile", {"body_pose": wave, "expression": named(mouthSmileLeft=1.0,
                                                                   mouthSmileRight=1.0)}, "body"),
        ("shape +2 sd", {"betas": betas + torch.eye(1, betas.shape[1]) * 2.0,
                         "body_pose": body(left_shoulder=(0, 0, -0.9),
                                           right_shoulder=(0, 0, 0.9))}, "body"),
        ("shape -2 sd", {"betas": betas - torch.eye(1, betas.shape[1]) * 2.0,
                         "body_pose": body(spine1=(0.4, 0, 0), left_hip=(-1.2, 0, 0),
                                           left_knee=(1.4, 0, 0))}, "body"),
        ("jawOpen, brows up, wink", {"expression": named(jawOpen=0.8, browInnerUp=1.0,
                                                         eyeBlinkLeft=1.0)}, "face"),
    ]


def render_preview(asset: Asset, out: str | Path) -> Path:
    """Write a PNG contact sheet of the asset and return its path."""
    model = BodyModel(asset)
    faces = model.faces
    head = torch.as_tensor(asset.arrays["head_vertex_ids"]).long()
    head_faces = faces[torch.isin(faces, head).all(1)]
    panels, labels = [], []
    with torch.inference_mode():
        rest = model().vertices[0]
        panels += [render_panel(rest, faces), render_panel(rest, faces, yaw=90)]
        labels += ["template", "template, side"]
        for label, params, region in _samples(model, asset.meta.get("expression_names", [])):
            vertices = model(params).vertices[0]
            if region == "face":
                panels.append(render_panel(vertices, head_faces, yaw=20, focus=head))
            else:
                panels.append(render_panel(vertices, faces))
            labels.append(label)
    sheet = Image.fromarray(np.concatenate(panels, axis=1))
    draw = ImageDraw.Draw(sheet)
    for index, label in enumerate(labels):
        draw.text((index * PANEL[1] + 8, 8), label, fill=(30, 30, 30))
    draw.text((8, PANEL[0] - 18), f"{asset.asset_id} ({asset.meta['kind']}): "
              f"{rest.shape[0]} vertices, {len(model.joint_names)} joints", fill=(30, 30, 30))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
