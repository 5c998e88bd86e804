"""One model, many tasks: which latent frames a training sample is given clean.

Frame conditioning reaches the DiT as `cond = [clean latents * mask, mask]`
(C + 1 channels, zero-initialised embedding). Training mixes tasks by weight:

    text         nothing given (plain text-to-video)
    first        latent frame 0 (the causal VAE encodes frame 0 alone, so it
                 is exactly the latent of the first image)
    last         the last frame, encoded on its own as an image, placed at the
                 last latent frame (what a user's `last_image` becomes)
    first_last   both
    continue     the first k latent frames of the clip itself (extension)
    keyframes    one frame from inside the clip, encoded as an image, placed at
                 the latent frame that covers it (plus the first frame half the time)

Why images are encoded on their own: at generation time a user gives images,
not 4-frame latent groups, so training must show the model exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from kinema.errors import KinemaInputError

TASKS = ("text", "first", "last", "first_last", "continue", "keyframes")


def check_task_weights(weights: dict[str, float], where: str) -> None:
    unknown = [k for k in weights if k not in TASKS]
    if unknown:
        raise KinemaInputError(f"{where}: unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    if any((not isinstance(v, (int, float))) or v < 0 for v in weights.values()) or sum(weights.values()) <= 0:
        raise KinemaInputError(f"{where}: weights must be >= 0 and not all zero, got {weights}")


def latent_index(frame: int) -> int:
    """The latent frame that covers pixel frame `frame` (frame 0 alone, then groups of 4)."""
    return (frame + 3) // 4


@dataclass
class FrameLatents:
    """Per-sample images encoded on their own: [B, K, C, h, w] with their pixel frame indices [B, K]."""

    latents: torch.Tensor
    frames: torch.Tensor


def build_cond(x0: torch.Tensor, tasks: list[str], images: FrameLatents | None, rng: np.random.Generator) -> torch.Tensor:
    """cond [B, C+1, T', h, w] for normalised clean latents x0 [B, C, T', h, w].

    `images.latents[:, 0]` must be the clip's last frame and `images.latents[:, 1]`
    a frame from inside it (as the latent cache stores them).
    """
    b, c, tl, h, w = x0.shape
    cond = x0.new_zeros(b, c + 1, tl, h, w)

    def give(i: int, j: int, latent: torch.Tensor) -> None:
        cond[i, :c, j] = latent
        cond[i, c, j] = 1.0

    for i, task in enumerate(tasks):
        if task == "text" or tl < 2 and task != "first":
            continue
        if task in ("first", "first_last") or (task == "keyframes" and rng.random() < 0.5):
            give(i, 0, x0[i, :, 0])
        if task in ("last", "first_last"):
            if images is None:
                raise KinemaInputError("the 'last' tasks need cached frame latents")
            give(i, tl - 1, images.latents[i, 0])
        if task == "keyframes":
            if images is None:
                raise KinemaInputError("the 'keyframes' task needs cached frame latents")
            give(i, latent_index(int(images.frames[i, 1])), images.latents[i, 1])
        if task == "continue":
            k = int(rng.integers(1, tl))
            cond[i, :c, :k] = x0[i, :, :k]
            cond[i, c, :k] = 1.0
    return cond


# What each training task teaches, as engine capabilities (engine.backend.TASKS).
_CAPABILITIES = {
    "first": ("image-to-video",),
    "last": ("last-frame",),
    "first_last": ("first-last-frame",),
    "keyframes": ("keyframes",),
    "continue": ("video-extension", "long-video"),
}


def capabilities_for(weights: dict[str, float], camera: bool) -> list[str]:
    """The engine tasks a model trained with these task weights (and camera signal) can serve."""
    caps = ["text-to-video", "interpolation"]
    for task, names in _CAPABILITIES.items():
        if weights.get(task, 0.0) > 0:
            caps += names
    if camera:
        caps.append("camera-control")
    return caps


def sample_tasks(weights: dict[str, float], n: int, rng: np.random.Generator) -> list[str]:
    names = [k for k, v in weights.items() if v > 0]
    p = np.array([weights[k] for k in names], dtype=np.float64)
    return [names[i] for i in rng.choice(len(names), size=n, p=p / p.sum())]
