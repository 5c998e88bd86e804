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

from kinema.conditioning.camera import CameraMotion
from kinema.errors import KinemaInputError
from kinema.request import GenerationRequest

Progress = Callable[[int, int], None]
RANDOM_SEED_RANGE = 2**32  # chosen seeds stay short enough to read back and retype
FPS_TOLERANCE = 0.1  # a model made for 8 fps may label its frames 7.5 fps (30 fps = 7.5 x 4): motion 6% slower

# Capability names (Capabilities.tasks). A request's own task is GenerationRequest.task;
# camera, long video and interpolation are checked as extra capabilities.
TASKS = (
    "text-to-video", "image-to-video", "last-frame", "first-last-frame", "keyframes", "video-extension",
    "camera-control", "long-video", "interpolation",
)  # fmt: skip
ASPECT_RATIOS = {"16:9": 16 / 9, "9:16": 9 / 16, "1:1": 1.0, "4:3": 4 / 3, "3:4": 3 / 4}


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
    max_window_seconds: float | None = None  # one generation window; longer videos chain windows ("long-video")
    max_interpolate: int = 8
    # Best-of-N per window, picked by a video-text matcher; 1 = the backend cannot choose among clips.
    max_candidates: int = 1
    default_candidates: int = 1

    def describe_buckets(self) -> str:
        return ", ".join(f"{w}x{h}" for h, w in self.buckets)


@dataclass(frozen=True)
class GivenFrame:
    """An image the video must show at generation frame `frame` (already fitted to the size)."""

    frame: int
    pixels: np.ndarray  # uint8 [H, W, 3]
    role: str  # "first", "last" or "keyframe"


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
    num_frames: int  # frames delivered (round(seconds * fps)), at the output fps
    generated_frames: int  # frames the model makes at the generation fps (fps / interpolate): 1 + 4k, or more with windows
    interpolate: int = 1  # output fps = generation fps x interpolate
    images: tuple[GivenFrame, ...] = ()
    extend_frames: np.ndarray | None = None  # a video to continue (uint8 [T, H, W, 3] at the generation fps)
    loop: bool = False
    camera: CameraMotion | None = None
    candidates: int = 1  # clips sampled per window; the matcher keeps one
    task: str = "text-to-video"
    notes: tuple[str, ...] = ()  # adjustments worth telling the user (sizes or fps snapped)

    @property
    def generation_fps(self) -> float:
        return self.fps / self.interpolate


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


def _require(caps: Capabilities, task: str, what: str) -> None:
    if task not in caps.tasks:
        raise KinemaInputError(f"this model does not support {what} (it supports: {', '.join(sorted(caps.tasks))})")


def resolve_size(request: GenerationRequest, caps: Capabilities) -> tuple[int, int, str | None]:
    """(height, width, note): explicit sizes must be a bucket; an aspect ratio snaps to the nearest one."""
    default_h, default_w = caps.buckets[0]
    if request.aspect_ratio is not None:
        want = ASPECT_RATIOS[request.aspect_ratio]
        height, width = min(caps.buckets, key=lambda b: (abs(math.log(b[1] / b[0] / want)), b[0] * b[1]))
        exact = abs(width / height - want) < 0.02
        note = None if exact else f"aspect ratio {request.aspect_ratio} snapped to {width}x{height}, the nearest size this model makes"
        return height, width, note
    if request.width is None and request.height is None:
        return default_h, default_w, None
    if request.width is None or request.height is None:
        # One side given: pick the bucket that matches it (the smallest if several do).
        given = request.height if request.width is None else request.width
        idx = 0 if request.width is None else 1
        matches = sorted(b for b in caps.buckets if b[idx] == given)
        if not matches:
            name = "height" if idx == 0 else "width"
            _check_stride(name, given, caps.stride)
            raise KinemaInputError(f"{name} {given} is not supported; supported sizes (width x height): {caps.describe_buckets()}")
        return matches[0][0], matches[0][1], None
    height, width = request.height, request.width
    _check_stride("width", width, caps.stride)
    _check_stride("height", height, caps.stride)
    if (height, width) not in caps.buckets:
        raise KinemaInputError(f"size {width}x{height} is not supported; supported sizes (width x height): {caps.describe_buckets()}")
    return height, width, None


def resolve_fps(request: GenerationRequest, caps: Capabilities) -> tuple[float, int, str | None]:
    """(output fps, interpolation factor, note).

    `fps` is always the output rate. The model generates at fps / interpolate;
    with no explicit factor, the smallest one that brings the rate within the
    model's range is chosen (30 fps from an 8 fps model: 7.5 fps x 4).
    """
    lo, hi = caps.fps_range
    allowed = f"{lo:g}" if lo == hi else f"{lo:g} to {hi:g}"

    def fits(rate: float, tolerance: float) -> bool:
        return lo * (1 - tolerance) - 1e-9 <= rate <= hi * (1 + tolerance) + 1e-9

    if request.fps is None:
        return caps.default_fps * request.interpolate, request.interpolate, None
    fps = request.fps
    if request.interpolate > 1 or fits(fps, 0.0):
        k = request.interpolate
        if not fits(fps / k, 0.0 if k == 1 else FPS_TOLERANCE):
            raise KinemaInputError(f"fps {fps:g} with interpolate {k} means generating at {fps / k:g} fps; this model generates at {allowed} fps")
        return fps, k, None
    for k in range(2, caps.max_interpolate + 1):
        if fits(fps / k, FPS_TOLERANCE):
            return fps, k, f"generating at {fps / k:g} fps and interpolating x{k} to {fps:g} fps"
    raise KinemaInputError(f"fps {fps:g} is not supported by this model; allowed: {allowed} (or an integer multiple up to x{caps.max_interpolate}, by interpolation)")


def resolve_common(request: GenerationRequest, caps: Capabilities) -> ResolvedRequest:
    """The checks every backend with a capability map shares; backends add their own (e.g. tokens).

    Images and videos named by the request are loaded and fitted here, so an
    unreadable or oversized file is refused before any model loads.
    """
    from kinema.conditioning.plan import resolve_frames

    task = request.task
    _require(caps, task, task.replace("-", " "))
    if request.camera is not None:
        _require(caps, "camera-control", "camera control")
    if request.negative_prompt and not caps.supports_negative_prompt:
        raise KinemaInputError("this model does not support negative prompts")
    sampler = request.sampler or caps.default_sampler
    if sampler not in caps.samplers:
        raise KinemaInputError(f"unknown sampler {sampler!r}; choose one of {', '.join(caps.samplers)}")
    height, width, size_note = resolve_size(request, caps)
    fps, interpolate, fps_note = resolve_fps(request, caps)
    if interpolate > 1:
        _require(caps, "interpolation", "frame interpolation")

    candidates = request.candidates if request.candidates is not None else caps.default_candidates
    if candidates > caps.max_candidates:
        why = "it has no video-text matcher to choose among clips" if caps.max_candidates == 1 else f"the limit is {caps.max_candidates}"
        raise KinemaInputError(f"candidates {candidates} is more than this model can use: {why}")
    seconds = request.seconds if request.seconds is not None else caps.default_seconds
    if seconds > caps.max_seconds:
        raise KinemaInputError(f"seconds {seconds:g} is too long; the limit for this model is {caps.max_seconds:g}")
    window = caps.max_window_seconds
    if window is not None and seconds > window + 1e-9 or task == "video-extension":
        _require(caps, "long-video", f"videos longer than {window:g} s" if task != "video-extension" else "video extension")
    gen_fps = fps / interpolate
    base_frames, generated = frame_counts(seconds, gen_fps, caps.temporal_stride)
    if task == "video-extension":  # the video's last OVERLAP_FRAMES frames open the first window: keep 1 + 4k in all
        from kinema.conditioning.plan import OVERLAP_FRAMES

        generated = base_frames + (1 - OVERLAP_FRAMES - base_frames) % caps.temporal_stride
    frames = resolve_frames(request, caps, height, width, gen_fps, generated)
    if frames.exact_length:  # the last frame is conditioned: deliver every generated frame
        base_frames = generated
    if frames.extend_frames is not None:  # the output is the given video, then its continuation
        base_frames += len(frames.extend_frames)

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
        num_frames=base_frames * interpolate,
        generated_frames=generated,
        interpolate=interpolate,
        images=frames.images,
        extend_frames=frames.extend_frames,
        loop=request.loop,
        camera=CameraMotion(request.camera.pan, request.camera.tilt, request.camera.zoom) if request.camera is not None else None,
        candidates=candidates,
        task=task,
        notes=tuple(n for n in (size_note, fps_note) if n),
    )


def _check_stride(name: str, value: int, stride: int) -> None:
    if value % stride:
        raise KinemaInputError(f"{name} {value} must be a multiple of {stride}")
