"""Our request vocabulary -> one diffusers pipeline call per generation window.

A window is `length` frames with optional pinned frames: the first frame (a
user's image, or the last frame of the previous window when chaining), the
last frame, keyframes inside it (LTX only), and a run of leading context
frames (LTX continues a clip from several frames, the others from one image).
`window_call` picks the family's pipeline class for that combination and
spells the arguments the way that pipeline wants them; it never loads
anything, so it is cheap to test on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kinema.engine.diffusers.families import Configs, Family
from kinema.errors import KinemaInputError


@dataclass
class Window:
    length: int  # frames this call makes (1 + stride * k)
    first: np.ndarray | None = None  # uint8 [H, W, 3] pinned at frame 0
    last: np.ndarray | None = None  # uint8 [H, W, 3] pinned at frame length - 1
    context: np.ndarray | None = None  # uint8 [k, H, W, 3] pinned at frames 0..k-1 (continuing a clip)
    keyframes: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (frame in this window, pixels)


def context_frames(family: Family, temporal_stride: int) -> int:
    """Frames a window shares with the one before: LTX conditions on a whole latent group plus one; the
    image-conditioned families continue from a single frame."""
    return 1 + temporal_stride if family.name == "ltx" else 1


def _pil(frame: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(frame))


def window_call(family: Family, configs: Configs, routes: dict[str, str], window: Window, model: str) -> tuple[str, dict[str, Any]]:
    """(pipeline class name, conditioning kwargs) for one window."""
    first = window.first if window.context is None else window.context[-1]
    pinned_last = window.last is not None
    if family.name == "ltx":
        return _ltx_call(routes, window)
    if first is None and not pinned_last and not window.keyframes:
        return _route(routes, "text-to-video", model), {}
    if window.keyframes:
        raise KinemaInputError(f"model {model}: {family.title} cannot pin keyframes inside a clip")
    if first is None:
        raise KinemaInputError(f"model {model}: {family.title} needs a first image to condition on a last frame")
    kwargs: dict[str, Any] = {"image": _pil(first)}
    if pinned_last:
        cls = _route(routes, "first-last-frame", model)
        kwargs["last_image"] = _pil(window.last)
        return cls, kwargs
    task = "video-extension" if window.context is not None else "image-to-video"
    return _route(routes, task, model), kwargs


def _ltx_call(routes: dict[str, str], window: Window) -> tuple[str, dict[str, Any]]:
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

    if window.context is None and window.last is None and not window.keyframes:
        if window.first is None:
            return routes["text-to-video"], {}
        return routes["image-to-video"], {"image": _pil(window.first)}
    conditions = []
    if window.context is not None:
        conditions.append(LTXVideoCondition(video=[_pil(f) for f in window.context], frame_index=0))
    elif window.first is not None:
        conditions.append(LTXVideoCondition(image=_pil(window.first), frame_index=0))
    for index, pixels in window.keyframes:
        conditions.append(LTXVideoCondition(image=_pil(pixels), frame_index=index))
    if window.last is not None:
        conditions.append(LTXVideoCondition(image=_pil(window.last), frame_index=window.length - 1))
    return routes["first-last-frame"], {"conditions": conditions}


def _route(routes: dict[str, str], task: str, model: str) -> str:
    if task not in routes:
        raise KinemaInputError(f"model {model} does not support {task.replace('-', ' ')} (it supports: {', '.join(sorted(routes))})")
    return routes[task]


def common_kwargs(family: Family, configs: Configs, *, prompt: str, negative_prompt: str, steps: int, guidance: float,
                  height: int, width: int, num_frames: int, fps: float) -> dict[str, Any]:  # fmt: skip
    """The arguments every window of a request shares, in the family's own spelling."""
    kw: dict[str, Any] = dict(prompt=prompt, num_inference_steps=steps, guidance_scale=guidance, height=height, width=width, num_frames=num_frames)
    if family.supports_negative_prompt:
        kw["negative_prompt"] = negative_prompt or None
    if family.name == "ltx":
        kw["frame_rate"] = int(round(fps))  # LTX takes the frame rate as an input (its RoPE is scaled by it)
    if configs["model_index"]["_class_name"].startswith("SkyReelsV2DiffusionForcing"):
        kw["fps"] = int(round(fps))  # diffusion-forcing checkpoints embed the frame rate
    kw.update(family.call_defaults(configs))
    return kw
