"""Turn a request's images, keyframes and video into frames at generation-frame positions.

Positions are generation frames (at the model's fps, before interpolation):
the first image is frame 0, the last image the last generated frame (so a
clip with a last image is delivered whole, 1 + 4k frames), a keyframe at t
seconds is frame round(t * fps). Everything is loaded and fitted here, so bad
files are refused while validating, before any weights load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from kinema.conditioning.images import fit_frames, load_image, load_video_tail
from kinema.errors import KinemaInputError
from kinema.request import GenerationRequest

if TYPE_CHECKING:
    from kinema.engine.backend import Capabilities, GivenFrame

OVERLAP_FRAMES = 5  # frames a window shares with the one before: 1 + 4, i.e. two latent frames


@dataclass(frozen=True)
class FramePlan:
    images: tuple["GivenFrame", ...]
    extend_frames: np.ndarray | None
    exact_length: bool  # the last generated frame is conditioned, so every generated frame is delivered


def resolve_frames(request: GenerationRequest, caps: "Capabilities", height: int, width: int, fps: float, generated: int) -> FramePlan:
    from kinema.engine.backend import GivenFrame

    fit = request.image_fit
    images: list[GivenFrame] = []
    if request.image is not None:
        images.append(GivenFrame(0, fit_frames(load_image(request.image), height, width, fit), "first"))
    if request.last_image is not None:
        images.append(GivenFrame(generated - 1, fit_frames(load_image(request.last_image), height, width, fit), "last"))
    duration = (generated - 1) / fps
    for k in request.keyframes:
        frame = round(k.seconds * fps)
        if frame > generated - 1:
            raise KinemaInputError(f"keyframe at {k.seconds:g} s is past the end of the video ({duration:g} s)")
        if any(g.frame == frame for g in images):
            raise KinemaInputError(f"two images are given for the same frame at {k.seconds:g} s")
        images.append(GivenFrame(frame, fit_frames(load_image(k.image), height, width, fit), "keyframe"))
    extend = None
    if request.video is not None:
        extend = load_video_tail(request.video, fps, OVERLAP_FRAMES, height, width, fit)
    images.sort(key=lambda g: g.frame)
    return FramePlan(tuple(images), extend, exact_length=request.last_image is not None or request.loop)
