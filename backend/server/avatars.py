"""What the server's ``avatar.*`` ops run (docs/protocol.md): a person's avatar built from one
image with the trained renderer, and rendered in any motion's poses as RGBA PNGs laid where
the body is in the motion's full frame (a preview over the footage).

Both run on the server's finisher thread (seconds each); the server keeps the built avatars
per client (``Server._avatars``). Without a renderer checkpoint for the body model the ops are
``unavailable`` with the reason, as the regressor estimators are: never a random network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..body.asset import Asset
from ..body.registry import DEFAULT_ASSET_ID
from ..errors import InputError
from ..perception.people import PersonNotFound
from ..pipeline.avatar_frames import (
    AvatarAnimator,
    SourcePerson,
    fit_source_image,
    place_in_frame,
    renderer_checkpoint_path,
    renderer_problem,
)
from ..regressor.crop_camera import CROP_ASPECT
from ..results import results_to_message
from .protocol import MAX_AVATAR_FRAMES, MAX_IMAGE_BYTES, ErrorCode, ProtocolError


@dataclass
class BuiltAvatar:
    animator: AvatarAnimator
    person: SourcePerson


class AvatarMaker:
    """Loads each body model's renderer once (``checkpoint``: one folder for every asset;
    default: each asset's own ``$PEAR_HOME/checkpoints/<asset>/renderer``)."""

    def __init__(self, asset: Callable[[str], Asset], device: str,
                 checkpoint: str | None = None):
        self._asset, self.device, self.checkpoint = asset, device, checkpoint
        self._animators: dict[str, AvatarAnimator] = {}

    def problem(self, asset_id: str) -> str:
        """Why no avatar can be made on ``asset_id`` here ("" if one can); reads no weights."""
        return renderer_problem(self._asset(asset_id), self.checkpoint) or ""

    def describe(self) -> dict:
        """``hello.avatar``: whether the default body model has a renderer, and if not why."""
        reason = self.problem(DEFAULT_ASSET_ID)
        return {"available": not reason, "reason": reason}

    def check_available(self, asset_id: str) -> None:
        reason = self.problem(asset_id)
        if reason:
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"avatars are unavailable for body "
                                f"model {asset_id!r}: {reason}")

    def build(self, fields: dict, image: np.ndarray) -> tuple[BuiltAvatar, dict]:
        """The avatar of the person in ``image`` (RGB), and the reply's fields."""
        animator = self._animator(fields["asset"])
        intrinsics = fields["intrinsics"] or {}
        center = None
        if "cx" in intrinsics or "cy" in intrinsics:
            center = (intrinsics.get("cx", image.shape[1] / 2),
                      intrinsics.get("cy", image.shape[0] / 2))
        try:
            source = fit_source_image(image, animator.asset, intrinsics.get("focal"), center)
        except PersonNotFound as exc:
            raise ProtocolError(ErrorCode.PERSON_NOT_FOUND, str(exc)) from None
        person = animator.build(image, source)
        return BuiltAvatar(animator, person), {
            "gaussians": int(person.avatar.opacities.shape[1]),
            "source": results_to_message(source)}

    def render(self, built: BuiltAvatar, fields: dict) -> dict:
        """The reply's fields: the asked frames of the motion, each an RGBA PNG."""
        import cv2

        motion = fields["motion"]
        try:
            built.animator.check_motion(motion, "'motion'")
        except InputError as exc:
            raise ProtocolError(ErrorCode.BAD_FIELD, str(exc)) from None
        count = len(motion.frames)
        positions = fields["frames"] if fields["frames"] is not None else list(range(count))
        beyond = [t for t in positions if t >= count]
        if beyond:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"'frames' {beyond[:5]} are past the "
                                f"motion's {count} frames (positions 0-{count - 1})")
        if len(positions) > MAX_AVATAR_FRAMES:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"the motion has {count} frames: ask for "
                                f"at most {MAX_AVATAR_FRAMES} at a time with 'frames'")
        images, boxes = [], []
        for t in positions:
            frame = built.animator.render(built.person, motion, t)
            rgba = place_in_frame(frame, motion.width, motion.height, fields["max_side"])
            ok, png = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
            if not ok:
                raise RuntimeError(f"PNG encoding failed for frame {t}")
            images.append(png.tobytes())
            if sum(map(len, images)) > MAX_IMAGE_BYTES:  # the reply must stay one message
                raise ProtocolError(ErrorCode.BAD_FIELD, f"{len(images)} of the {len(positions)}"
                                    f" frames already make {sum(map(len, images)) >> 20} MiB of "
                                    "images: ask for fewer frames, or a smaller max_side")
            half = np.array([frame.height * CROP_ASPECT, frame.height]) / 2
            boxes.append(np.concatenate([frame.center - half, frame.center + half]))
        return {"frames": [int(motion.frames[t]) for t in positions], "images": images,
                "boxes": np.asarray(boxes, np.float32),
                "size": [int(rgba.shape[1]), int(rgba.shape[0])]}

    def _animator(self, asset_id: str) -> AvatarAnimator:
        from ..avatar.checkpoint import load_avatar

        if asset_id not in self._animators:
            asset = self._asset(asset_id)
            renderer = load_avatar(renderer_checkpoint_path(asset_id, self.checkpoint), asset,
                                   device=self.device)
            self._animators[asset_id] = AvatarAnimator(renderer, asset)
        return self._animators[asset_id]

