"""The one request vocabulary: every way in (CLI, Python API, HTTP) builds a `GenerationRequest`.

Validation that holds for every backend lives here, once, so all callers get
the same one-line errors. Limits that depend on the model (sizes, buckets,
maximum length, prompt tokens) are checked by `Backend.validate`, which also
fills the `None` fields with the backend's defaults.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from kinema.errors import KinemaInputError

MAX_PROMPT_CHARS = 1000
MAX_STEPS = 200
MAX_FPS = 60.0
MAX_SIDE = 4096
MAX_SEED = 2**63 - 1
MAX_INTERPOLATE = 8
MAX_KEYFRAMES = 16
MAX_CANDIDATES = 16  # best-of-N costs N times the denoising

OutputFormat = Literal["mp4", "gif", "png"]
AspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4"]
ImageFit = Literal["fill", "fit", "pad"]  # cover + centre crop | stretch to the size | letterbox inside it


class CameraControl(BaseModel):
    """Explicit camera motion: strengths in [-2, 2], 1 = the trained speed.

    pan > 0 moves the camera right (the scene drifts left), tilt > 0 moves it
    up, zoom > 0 zooms in. An explicit camera wins over a camera move the prompt names.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    pan: float = 0.0
    tilt: float = 0.0
    zoom: float = 0.0

    @field_validator("pan", "tilt", "zoom")
    @classmethod
    def _strength(cls, v: float, info: Any) -> float:
        if not -2.0 <= v <= 2.0:  # also rejects NaN
            raise ValueError(f"camera {info.field_name} must be between -2 and 2, got {v}")
        return v


class Keyframe(BaseModel):
    """An image the video must pass through at a time (seconds from the start)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str
    seconds: float

    @field_validator("seconds")
    @classmethod
    def _time(cls, v: float) -> float:
        if not (v >= 0 and v < float("inf")):
            raise ValueError(f"keyframe seconds must be >= 0, got {v}")
        return v


class GenerationRequest(BaseModel):
    """A text-to-video job. `None` means "the backend's default"; a `None` seed means a random one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str
    negative_prompt: str = ""
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    sampler: str | None = None
    # Clips sampled per window, the best kept by the model's video-text matcher (None = the model's default).
    candidates: int | None = None
    width: int | None = None
    height: int | None = None
    seconds: float | None = None
    fps: float | None = None
    format: OutputFormat | None = None
    # Conditioning (image paths are files on the caller's machine; the HTTP service stores uploads first).
    image: str | None = None  # the first frame
    last_image: str | None = None  # the last frame
    keyframes: tuple[Keyframe, ...] = ()
    video: str | None = None  # a video to extend forward by `seconds`
    image_fit: ImageFit = "fill"
    loop: bool = False  # the last frame returns to the first
    interpolate: int = 1  # raise the frame rate by this integer factor after generation
    aspect_ratio: AspectRatio | None = None  # snapped to the nearest size the model has
    camera: CameraControl | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the prompt is empty; describe the video you want")
        if len(v) > MAX_PROMPT_CHARS:
            raise ValueError(f"the prompt is {len(v)} characters; the limit is {MAX_PROMPT_CHARS}")
        return v.strip()

    @field_validator("negative_prompt")
    @classmethod
    def _negative(cls, v: str) -> str:
        if len(v) > MAX_PROMPT_CHARS:
            raise ValueError(f"the negative prompt is {len(v)} characters; the limit is {MAX_PROMPT_CHARS}")
        return v.strip()

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int | None) -> int | None:
        if v is not None and not 0 <= v <= MAX_SEED:
            raise ValueError(f"seed must be between 0 and {MAX_SEED}, got {v}")
        return v

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= MAX_STEPS:
            raise ValueError(f"steps must be between 1 and {MAX_STEPS}, got {v}")
        return v

    @field_validator("candidates")
    @classmethod
    def _candidates(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= MAX_CANDIDATES:
            raise ValueError(f"candidates must be between 1 and {MAX_CANDIDATES}, got {v}")
        return v

    @field_validator("guidance")
    @classmethod
    def _guidance(cls, v: float | None) -> float | None:
        if v is not None and not v >= 0:  # `not >=` also rejects NaN
            raise ValueError(f"guidance must be >= 0, got {v}")
        return v

    @field_validator("width", "height")
    @classmethod
    def _side(cls, v: int | None, info: Any) -> int | None:
        if v is not None and not 1 <= v <= MAX_SIDE:
            raise ValueError(f"{info.field_name} must be between 1 and {MAX_SIDE} pixels, got {v}")
        return v

    @field_validator("seconds")
    @classmethod
    def _seconds(cls, v: float | None) -> float | None:
        if v is not None and not (v > 0 and v < float("inf")):
            raise ValueError(f"seconds must be > 0, got {v}")
        return v

    @field_validator("fps")
    @classmethod
    def _fps(cls, v: float | None) -> float | None:
        if v is not None and not 0 < v <= MAX_FPS:
            raise ValueError(f"fps must be > 0 and <= {MAX_FPS:g}, got {v}")
        return v

    @field_validator("interpolate")
    @classmethod
    def _interpolate(cls, v: int) -> int:
        if not 1 <= v <= MAX_INTERPOLATE:
            raise ValueError(f"interpolate must be an integer factor from 1 to {MAX_INTERPOLATE}, got {v}")
        return v

    @field_validator("keyframes")
    @classmethod
    def _keyframes(cls, v: tuple[Keyframe, ...]) -> tuple[Keyframe, ...]:
        if len(v) > MAX_KEYFRAMES:
            raise ValueError(f"at most {MAX_KEYFRAMES} keyframes, got {len(v)}")
        return tuple(sorted(v, key=lambda k: k.seconds))

    @model_validator(mode="after")
    def _consistent(self) -> "GenerationRequest":
        """Options that contradict each other, refused before anything loads."""
        if self.loop and self.last_image is not None:
            raise ValueError("loop and last_image contradict each other: a loop's last frame is its first")
        if self.video is not None and (self.image is not None or self.loop):
            raise ValueError("a video to extend already fixes the first frames: drop image/loop")
        if self.aspect_ratio is not None and (self.width is not None or self.height is not None):
            raise ValueError("give either aspect_ratio or width/height, not both")
        return self

    @property
    def task(self) -> str:
        """The capability this request needs (Capabilities.tasks)."""
        if self.video is not None:
            return "video-extension"
        if self.keyframes:
            return "keyframes"
        if self.last_image is not None or self.loop:
            return "first-last-frame" if self.image is not None or self.loop else "last-frame"
        if self.image is not None:
            return "image-to-video"
        return "text-to-video"


def input_error(exc: ValidationError) -> KinemaInputError:
    """One line for the first problem, naming the field (pydantic's own text is several lines)."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ()))
    if err["type"] == "extra_forbidden":
        return KinemaInputError(f"unknown option {field!r}")
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    if err["type"] == "value_error":  # our validators already name the field
        return KinemaInputError(msg)
    return KinemaInputError(f"{field}: {msg}" if field else msg)


def make_request(**fields: Any) -> GenerationRequest:
    """Build a request, turning validation failures into a one-line KinemaInputError."""
    try:
        return GenerationRequest(**fields)
    except ValidationError as exc:
        raise input_error(exc) from None
