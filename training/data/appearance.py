"""Random looks for synthetic people: skin tone, hair, brow, eye and lip colours recoloured from
the asset's painted look (``backend/renderer/paint.py``), clothes (a top, a bottom, shoes)
painted in UV space with plain, striped, checked or mottled fabric, and a random light.

Where clothes go comes from the skinning: a vertex belongs to the joint that moves it most, and
along an arm or leg its place between that joint and the next one says where a sleeve or a
trouser leg ends. (anny's part segmentation only separates the head, hands, feet and eyes from
one body island, so it cannot draw clothes; the skinning works for every asset.)
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
import torch

from backend.body.model import BodyModel
from backend.renderer.mesh_raster import Fragments, shade_smooth
from backend.renderer.paint import COLORS, SKIN

PAINT_CLASSES = ("skin", *COLORS)  # a painted vertex's class: its nearest paint colour
# Skin albedos from very light to very dark; a sample picks a point along the ramp.
SKIN_RAMP = np.array([(0.96, 0.80, 0.70), (0.88, 0.68, 0.56), (0.78, 0.57, 0.44),
                      (0.62, 0.43, 0.31), (0.45, 0.30, 0.21), (0.28, 0.18, 0.12)])
HAIR = np.array([(0.04, 0.03, 0.03), (0.14, 0.09, 0.05), (0.30, 0.18, 0.10),
                 (0.45, 0.21, 0.10), (0.74, 0.60, 0.38), (0.62, 0.61, 0.60)])
HAIR_WEIGHTS = np.array([0.3, 0.3, 0.18, 0.07, 0.1, 0.05])
IRIS = np.array([(0.30, 0.19, 0.10), (0.12, 0.07, 0.04), (0.30, 0.45, 0.62),
                 (0.30, 0.42, 0.26), (0.45, 0.35, 0.15)])

GARMENTS = ("top", "bottom", "shoes")
_TOP_JOINTS = ("spine1", "spine2", "spine3", "left_collar", "right_collar")
_BOTTOM_JOINTS = ("pelvis",)
_SHOE_JOINTS = ("left_ankle", "right_ankle", "left_foot", "right_foot")
# Limb bones (joint, next joint, garment, segment): a sleeve of length 1.5 covers the upper arm
# and half the forearm.
_LIMBS = tuple((f"{side}_{a}", f"{side}_{b}", garment, segment) for side in ("left", "right")
               for a, b, garment, segment in (("shoulder", "elbow", "top", 0),
                                              ("elbow", "wrist", "top", 1),
                                              ("hip", "knee", "bottom", 0),
                                              ("knee", "ankle", "bottom", 1)))
PATTERNS = ("plain", "stripes", "checks", "mottled")
PATTERN_WEIGHTS = np.array([0.4, 0.2, 0.15, 0.25])


@dataclass(frozen=True)
class BodyRegions:
    """What painting needs of an asset, computed once: its painted colours and their classes,
    and for clothes each vertex's garment and its place along a limb."""

    colors: np.ndarray  # (V, 3) the asset's painted look; plain skin for an unpainted asset
    paint_class: np.ndarray  # (V,) index into PAINT_CLASSES
    garment: np.ndarray  # (V,) index into GARMENTS, -1 for skin, head and hands
    limb: np.ndarray  # (V,) segments along the arm or leg (0..2), nan off the limbs
    uv: tuple[np.ndarray, np.ndarray] | None  # the asset's uv_coords and uv_faces

    @classmethod
    def of(cls, model: BodyModel, arrays: dict[str, np.ndarray]) -> BodyRegions:
        count = model.v_template.shape[0]
        palette = np.array([SKIN, *COLORS.values()])
        colors = np.asarray(arrays.get("vertex_colors", np.tile(SKIN, (count, 1))), np.float64)
        paint_class = np.argmin(((colors[:, None] - palette[None]) ** 2).sum(-1), axis=1)
        names = model.joint_names
        dominant = model.lbs_weights.argmax(1).numpy()
        garment = np.full(count, -1)
        for joints, name in ((_TOP_JOINTS, "top"), (_BOTTOM_JOINTS, "bottom"),
                             (_SHOE_JOINTS, "shoes")):
            on = [names.index(j) for j in joints if j in names]
            garment[np.isin(dominant, on)] = GARMENTS.index(name)
        with torch.no_grad():
            rest = model(model.default_params(1))
        vertices, joints = rest.vertices[0].double().numpy(), rest.joints[0].double().numpy()
        limb = np.full(count, np.nan)
        for start, end, name, segment in _LIMBS:
            if start not in names or end not in names:
                continue
            on = dominant == names.index(start)
            bone = joints[names.index(end)] - joints[names.index(start)]
            along = (vertices[on] - joints[names.index(start)]) @ bone / (bone @ bone)
            limb[on] = segment + np.clip(along, 0, 1)
            garment[on] = GARMENTS.index(name)
        uv = ((arrays["uv_coords"], arrays["uv_faces"]) if "uv_coords" in arrays
              and "uv_faces" in arrays else None)
        return cls(colors, paint_class, garment, limb, uv)


@dataclass(frozen=True)
class Fabric:
    kind: str  # one of PATTERNS
    colors: np.ndarray  # (2, 3) ground and pattern colour
    frequency: float  # pattern repeats per UV unit (the body's UV island is ~0.7 units tall)
    angle: float  # stripe direction (radians)
    duty: float  # stripe width as a fraction of the period
    noise: np.ndarray  # (8, 8) a coarse grid for the mottled look


@dataclass(frozen=True)
class Appearance:
    vertex_colors: np.ndarray  # (V, 3) albedo: the recoloured paint, garments in ground colour
    garments: np.ndarray  # (V, G) 1 where a vertex wears garment g
    fabrics: tuple[Fabric, ...]  # one per garment
    light: tuple[float, float, float]  # camera frame, pointing toward the light
    light_color: np.ndarray  # (3,) tint times exposure


def _fabric_color(rng: np.random.Generator) -> np.ndarray:
    hue, saturation, value = rng.uniform(), rng.uniform(0, 0.85), rng.uniform(0.08, 0.95)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value))


def _fabric(rng: np.random.Generator) -> Fabric:
    return Fabric(kind=PATTERNS[rng.choice(len(PATTERNS), p=PATTERN_WEIGHTS)],
                  colors=np.stack([_fabric_color(rng), _fabric_color(rng)]),
                  frequency=float(rng.uniform(8, 45)), angle=float(rng.uniform(0, np.pi)),
                  duty=float(rng.uniform(0.2, 0.6)), noise=rng.uniform(size=(8, 8)))


def sample_appearance(regions: BodyRegions, rng: np.random.Generator) -> Appearance:
    """A random look: skin, hair, brows, eyes and lips recoloured, random clothes, a light."""
    position = rng.uniform(0, len(SKIN_RAMP) - 1)
    low = min(int(position), len(SKIN_RAMP) - 2)
    skin = SKIN_RAMP[low] + (position - low) * (SKIN_RAMP[low + 1] - SKIN_RAMP[low])
    skin = np.clip(skin * rng.normal(1, 0.03, 3), 0, 1)
    hair = HAIR[rng.choice(len(HAIR), p=HAIR_WEIGHTS)] * rng.uniform(0.8, 1.2)
    new = {"skin": skin, "hair": hair, "brows": hair * 0.8,
           "iris": IRIS[rng.integers(len(IRIS))],
           "lips": skin * np.array([0.95, 0.7, 0.7]) * rng.uniform(0.75, 0.95)}
    old = dict(zip(PAINT_CLASSES, [np.asarray(SKIN), *map(np.asarray, COLORS.values())],
                   strict=True))
    # Scale each class by new/old so the paint's soft blends (lips into skin) survive.
    ratio = np.ones((len(PAINT_CLASSES), 3))
    for name, color in new.items():
        ratio[PAINT_CLASSES.index(name)] = color / old[name]
    colors = np.clip(regions.colors * ratio[regions.paint_class], 0, 1)

    sleeve, leg = rng.uniform(-0.3, 2.05), rng.uniform(0.35, 2.05)
    worn = {"top": rng.uniform() < 0.95, "bottom": rng.uniform() < 0.97,
            "shoes": rng.uniform() < 0.85}
    reach = {"top": sleeve, "bottom": leg}
    garments = np.zeros((len(colors), len(GARMENTS)))
    fabrics = []
    for g, name in enumerate(GARMENTS):
        fabric = _fabric(rng)
        fabrics.append(fabric)
        on = regions.garment == g
        on &= np.isnan(regions.limb) | (regions.limb < reach.get(name, np.inf))
        if worn[name]:
            garments[on, g] = 1.0
            colors[on] = fabric.colors[0]

    direction = (rng.uniform(-1, 1), rng.uniform(-1, 0.3), -rng.uniform(0.15, 1))
    light_color = np.clip(rng.normal(1, 0.06, 3), 0.8, 1.2) * rng.uniform(0.7, 1.25)
    return Appearance(colors, garments, tuple(fabrics), direction, light_color)


def fabric_value(fabric: Fabric, uv: torch.Tensor) -> torch.Tensor:
    """(n,) how much of the pattern colour shows at UV points (n, 2), in [0, 1]."""
    if fabric.kind == "plain":
        return uv.new_zeros(len(uv))
    scaled = uv * fabric.frequency
    if fabric.kind == "stripes":
        along = scaled[:, 0] * np.cos(fabric.angle) + scaled[:, 1] * np.sin(fabric.angle)
        return (torch.frac(along) < fabric.duty).to(uv.dtype)
    if fabric.kind == "checks":
        return (torch.floor(scaled).sum(1) % 2).to(uv.dtype)
    # Mottled: the coarse noise grid, bilinear, tiled across the UV square.
    grid = torch.as_tensor(fabric.noise, dtype=uv.dtype)[None, None]
    points = (torch.frac(uv * fabric.frequency / 8) * 2 - 1)[None, None]  # to [-1, 1]
    return torch.nn.functional.grid_sample(grid, points, align_corners=True)[0, 0, 0]


def shade_body(appearance: Appearance, regions: BodyRegions, fragments: Fragments,
               vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(H, W, 3) colours in [0, 1] of the covered pixels (0 elsewhere): the albedo with fabric
    patterns looked up in UV, Lambert-shaded under the appearance's light (float32)."""
    vertices = vertices.float()
    # Shade the albedo and each garment's weight together: the weights come out times the
    # light's intensity, ready to scale each fabric's pattern colour.
    attributes = np.concatenate([appearance.vertex_colors, appearance.garments], 1)
    shaded = shade_smooth(fragments, vertices, faces, torch.as_tensor(attributes),
                          light=appearance.light, background=0.0)
    color = shaded[..., :3]
    hit = fragments.face >= 0
    if regions.uv is not None and appearance.garments.any():
        uv_coords, uv_faces = (torch.as_tensor(a) for a in regions.uv)
        corners = uv_coords.float()[uv_faces.long()[fragments.face[hit]]]  # (n, 3, 2)
        uv = (corners * fragments.bary[hit][:, :, None].float()).sum(1)
        worn = shaded[..., 3:][hit]
        pattern = color[hit]
        for g, fabric in enumerate(appearance.fabrics):
            if fabric.kind == "plain" or not appearance.garments[:, g].any():
                continue
            change = torch.as_tensor(fabric.colors[1] - fabric.colors[0], dtype=torch.float32)
            pattern = pattern + (worn[:, g] * fabric_value(fabric, uv))[:, None] * change
        color[hit] = pattern
    light = torch.as_tensor(appearance.light_color, dtype=torch.float32)
    return (color * light).clamp(0, 1)
