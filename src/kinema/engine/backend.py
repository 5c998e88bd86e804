"""The engine's one interface: a `Backend` turns a validated request into frames.

A backend declares what it can do (`Capabilities`) so callers can show the
allowed values and refuse a request before anything heavy loads; `validate`
applies those limits and fills the defaults, producing a `ResolvedRequest` in
which nothing is left to choose; `generate` only runs it.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from kinema.errors import KinemaInputError
from kinema.request import GenerationRequest

Progress = Callable[[int, int], None]
RANDOM_SEED_RANGE = 2**32  # chosen seeds stay short enough to read back and retype


@dataclass(frozen=True)
class Capabilities:
    """What a backend accepts. `buckets` are (height, width) pairs; the first is the default size."""

    tasks: frozenset[str]
    buckets: tuple[tuple[int, int], ...]
    stride: int  # height and width must be multiples of this
    temporal_stride: int  # generated frame counts are 1 + temporal_stride * k
    max_seconds: float
    fps_range: tuple[float, float]
    samplers: tuple[str, ...]
    default_steps: int
    default_guidance: float
    default_sampler: str
    default_fps: float
    default_seconds: float
    supports_negative_prompt: bool = True
    max_prompt_tokens: int | None = None

    def describe_buckets(self) -> str:
        return ", ".join(f"{w}x{h}" for h, w in self.buckets)


@dataclass(frozen=True)
class ResolvedRequest:
    """A request with every default filled in and every backend limit checked."""

    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance: float
    sampler: str
    width: int
    height: int
    fps: float
    num_frames: int  # frames delivered (round(seconds * fps))
    generated_frames: int  # frames the model makes: the smallest 1 + 4k >= num_frames


@dataclass
class Video:
    """Generated frames (uint8 [T, H, W, 3]) and how they were made."""

    frames: np.ndarray
    fps: float
    seed: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])

    def save(self, path: str | Path) -> Path:
        """Write MP4, GIF or a PNG-frame directory (by suffix), atomically: no partial file on failure."""
        from kinema.video.io import write_video

        return write_video(self.frames, path, self.fps)


class Backend(Protocol):
    def capabilities(self) -> Capabilities: ...

    def validate(self, request: GenerationRequest) -> ResolvedRequest: ...

    def generate(self, resolved: ResolvedRequest, progress: Progress | None = None) -> Video: ...


def frame_counts(seconds: float, fps: float, temporal_stride: int) -> tuple[int, int]:
    """(frames delivered, frames generated): a video of n frames lasts n / fps seconds."""
    n = max(1, round(seconds * fps))
    return n, 1 + temporal_stride * math.ceil((n - 1) / temporal_stride)


def resolve_common(request: GenerationRequest, caps: Capabilities) -> ResolvedRequest:
    """The checks every backend with a capability map shares; backends add their own (e.g. tokens)."""
    if "text-to-video" not in caps.tasks:
        raise KinemaInputError("this model does not support text-to-video")
    if request.negative_prompt and not caps.supports_negative_prompt:
        raise KinemaInputError("this model does not support negative prompts")
    sampler = request.sampler or caps.default_sampler
    if sampler not in caps.samplers:
        raise KinemaInputError(f"unknown sampler {sampler!r}; choose one of {', '.join(caps.samplers)}")

    default_h, default_w = caps.buckets[0]
    if request.width is None and request.height is None:
        height, width = default_h, default_w
    elif request.width is None or request.height is None:
        # One side given: pick the bucket that matches it (the smallest if several do).
        given = request.height if request.width is None else request.width
        idx = 0 if request.width is None else 1
        matches = sorted(b for b in caps.buckets if b[idx] == given)
        if not matches:
            name = "height" if idx == 0 else "width"
            _check_stride(name, given, caps.stride)
            raise KinemaInputError(f"{name} {given} is not supported; supported sizes (width x height): {caps.describe_buckets()}")
        height, width = matches[0]
    else:
        height, width = request.height, request.width
        _check_stride("width", width, caps.stride)
        _check_stride("height", height, caps.stride)
        if (height, width) not in caps.buckets:
            raise KinemaInputError(f"size {width}x{height} is not supported; supported sizes (width x height): {caps.describe_buckets()}")

    fps = request.fps if request.fps is not None else caps.default_fps
    lo, hi = caps.fps_range
    if not lo <= fps <= hi:
        allowed = f"{lo:g}" if lo == hi else f"{lo:g} to {hi:g}"
        raise KinemaInputError(f"fps {fps:g} is not supported by this model; allowed: {allowed}")
    seconds = request.seconds if request.seconds is not None else caps.default_seconds
    if seconds > caps.max_seconds:
        raise KinemaInputError(f"seconds {seconds:g} is too long; the limit for this model is {caps.max_seconds:g}")
    num_frames, generated = frame_counts(seconds, fps, caps.temporal_stride)

    return ResolvedRequest(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        seed=request.seed if request.seed is not None else secrets.randbelow(RANDOM_SEED_RANGE),
        steps=request.steps if request.steps is not None else caps.default_steps,
        guidance=request.guidance if request.guidance is not None else caps.default_guidance,
        sampler=sampler,
        width=width,
        height=height,
        fps=fps,
        num_frames=num_frames,
        generated_frames=generated,
    )


def _check_stride(name: str, value: int, stride: int) -> None:
    if value % stride:
        raise KinemaInputError(f"{name} {value} must be a multiple of {stride}")
