"""The storyboard format: a film as typed data (pydantic), published as a JSON Schema.

A shot's generation fields are *derived from* `GenerationRequest` (same
names, types, defaults and descriptions; its validators run when the planner
builds each shot's request), so a storyboard is not a second request
vocabulary: whatever the engine learns to accept, a shot accepts too. Only
what a film adds lives here: durations on a timeline, subjects, transitions,
cards, captions, sound and output settings.

Field paths in errors are zero-based JSON paths: `shots[3].duration` is the
fourth shot.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    create_model,
    field_validator,
    model_validator,
)

from kinema.request import AspectRatio, GenerationRequest

MAX_SHOTS = 200
MAX_SHOT_SECONDS = 60.0
MAX_CARD_SECONDS = 30.0
MAX_FILM_SECONDS = 3600.0
DEFAULT_SHORT_SIDE = 360  # output pixels on the short side when the storyboard gives no size

# GenerationRequest fields a shot may set. Size, fps, format, seconds and the
# first-frame conditioning of a continuous shot come from the storyboard itself.
SHOT_REQUEST_FIELDS = (
    "prompt", "negative_prompt", "seed", "steps", "guidance", "sampler",
    "camera", "image", "last_image", "keyframes", "image_fit", "loop",
)  # fmt: skip
MEDIA_FIELDS = ("image", "last_image")  # paths, relative to the storyboard file

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
TransitionType = Literal["cut", "crossfade", "fade-black", "wipe"]
_TRANSITION_ALIASES = {"fade": "fade-black", "fade through black": "fade-black", "fade-through-black": "fade-black", "dissolve": "crossfade"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _positive(v: float, limit: float) -> float:
    if not (v > 0 and v < float("inf")):
        raise ValueError(f"must be > 0, got {v}")
    if v > limit:
        raise ValueError(f"must be at most {limit:g} s, got {v}")
    return v


def _color(v: str) -> str:
    if not _HEX.match(v):
        raise ValueError(f"must be a #rrggbb colour, got {v!r}")
    return v.lower()


class Transition(_Model):
    """How one item hands over to the next. Overlapping transitions shorten the film by `duration`."""

    type: TransitionType = Field("cut", description="cut, crossfade, fade-black (fade through black) or wipe")
    duration: float = Field(0.5, description="seconds the two items overlap (ignored for cut)")
    direction: Literal["left", "right", "up", "down"] = Field("left", description="where a wipe moves to")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if isinstance(v, str):  # `transition: crossfade`
            v = {"type": v}
        if isinstance(v, dict) and isinstance(v.get("type"), str):
            key = " ".join(v["type"].lower().replace("_", " ").split())
            v = {**v, "type": _TRANSITION_ALIASES.get(key, key.replace(" ", "-"))}
        return v

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: float) -> float:
        if not (0 <= v <= 10):
            raise ValueError(f"must be between 0 and 10 s, got {v}")
        return v

    @property
    def overlap(self) -> float:
        return 0.0 if self.type == "cut" else self.duration


class Subject(_Model):
    """Something that must look the same in every shot it appears in (e.g. "the red ball")."""

    name: str = Field(description="how shots refer to it (`subject: NAME`, or the name appearing in a prompt)")
    description: str = Field("", description="what it looks like: the prompt of its reference frame")
    image: str | None = Field(None, description="a reference image of the subject (else one is generated)")
    seed: int | None = Field(None, description="seed of the generated reference and of the subject's shots")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v.strip()


def _request_field_definitions() -> dict[str, Any]:
    """The shot's generation fields, copied from GenerationRequest so the two cannot drift apart."""
    fields: dict[str, Any] = {}
    for name in SHOT_REQUEST_FIELDS:
        info = GenerationRequest.model_fields.get(name)
        if info is not None:
            fields[name] = (info.annotation, copy.deepcopy(info))
    return fields


ShotRequestFields = create_model("ShotRequestFields", __base__=_Model, **_request_field_definitions())  # type: ignore[call-overload]


class Shot(ShotRequestFields):  # type: ignore[misc, valid-type]
    """One generated clip on the timeline; its request fields mean what they mean in GenerationRequest."""

    id: str | None = Field(None, description="a stable name for the shot (previews, editors); default shot-N")
    duration: float = Field(description="seconds on the timeline (the request's `seconds`)")
    subject: str | list[str] | None = Field(None, description="declared subject(s) in this shot; default: those whose name the prompt mentions")
    continuous: bool = Field(False, description="continue the previous shot's action: start from its last frame")
    caption: str | None = Field(None, description="a caption shown (and narrated) for the whole shot")
    transition: Transition | None = Field(None, description="how this shot hands over to the next item (default: the storyboard's)")

    @model_validator(mode="before")
    @classmethod
    def _camera_name(cls, v: Any) -> Any:
        """`camera: pan left` is shorthand for the {pan, tilt, zoom} strengths of that move."""
        if isinstance(v, dict) and isinstance(v.get("camera"), str):
            v = {**v, "camera": camera_strengths(v["camera"])}
        return v

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: float) -> float:
        return _positive(v, MAX_SHOT_SECONDS)

    def subject_names(self) -> list[str]:
        if self.subject is None:
            return []
        return [self.subject] if isinstance(self.subject, str) else list(self.subject)

    def request_fields(self) -> dict[str, Any]:
        """The GenerationRequest fields this shot sets (unset ones keep the request's defaults)."""
        return {name: getattr(self, name) for name in SHOT_REQUEST_FIELDS if name in self.model_fields_set and name in type(self).model_fields}


_CAMERA_MOVES = {
    "static": (0.0, 0.0, 0.0), "pan left": (-1.0, 0.0, 0.0), "pan right": (1.0, 0.0, 0.0),
    "tilt up": (0.0, 1.0, 0.0), "tilt down": (0.0, -1.0, 0.0), "zoom in": (0.0, 0.0, 1.0), "zoom out": (0.0, 0.0, -1.0),
}  # fmt: skip  # Shapes World's camera moves (kinema.world.scene.CAMERAS)


def camera_strengths(name: str) -> dict[str, float] | str:
    """{pan, tilt, zoom} for a named move; an unknown name is returned as is so validation names it."""
    key = " ".join(name.lower().replace("_", " ").replace("-", " ").split())
    if key not in _CAMERA_MOVES:
        return name
    pan, tilt, zoom = _CAMERA_MOVES[key]
    return {"pan": pan, "tilt": tilt, "zoom": zoom}


class Card(_Model):
    """A full-frame title card (intro or outro)."""

    title: str = Field(description="large text, wrapped inside the title-safe area")
    subtitle: str = Field("", description="smaller text under the title")
    duration: float = Field(2.0, description="seconds on screen")
    background: str = Field("#000000", description="#rrggbb")
    color: str = Field("#ffffff", description="text colour, #rrggbb")
    transition: Transition | None = Field(None, description="intro only: how it hands over to the first shot")

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: float) -> float:
        return _positive(v, MAX_CARD_SECONDS)

    @field_validator("background", "color")
    @classmethod
    def _colors(cls, v: str) -> str:
        return _color(v)


class Caption(_Model):
    """Text on screen from `start` to `end` (seconds on the film's timeline, intro included)."""

    text: str
    start: float
    end: float

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v.strip()

    @field_validator("start")
    @classmethod
    def _start(cls, v: float) -> float:
        if not (v >= 0 and v < float("inf")):
            raise ValueError(f"must be >= 0, got {v}")
        return v

    @model_validator(mode="after")
    def _order(self) -> Caption:
        if not self.end > self.start:
            raise ValueError(f"end ({self.end:g}) must be after start ({self.start:g})")
        return self


class Narration(_Model):
    """Captions read aloud by a speech synthesiser (espeak-ng by default)."""

    voice: str = Field("en", description="voice/language name, e.g. en, en-us, ja, cmn")
    rate: int = Field(165, description="words per minute")
    volume: float = Field(1.0)

    @field_validator("rate")
    @classmethod
    def _rate(cls, v: int) -> int:
        if not 80 <= v <= 450:
            raise ValueError(f"must be between 80 and 450 words per minute, got {v}")
        return v


class Music(_Model):
    """A generated music bed: soft chords under the film, ducked under narration."""

    volume: float = Field(0.25)
    tempo: float = Field(72.0, description="beats per minute; one chord per bar of four beats")
    key: Literal["C", "D", "E", "F", "G", "A", "B"] = "C"
    mode: Literal["major", "minor"] = "major"

    @field_validator("tempo")
    @classmethod
    def _tempo(cls, v: float) -> float:
        if not 30 <= v <= 240:
            raise ValueError(f"must be between 30 and 240 bpm, got {v}")
        return v


class Soundtrack(_Model):
    """An audio file, and/or generated narration and music bed."""

    file: str | None = Field(None, description="an audio (or video) file; trimmed or padded with silence to the film")
    volume: float = Field(1.0, description="gain of the file")
    narration: Narration | None = None
    music: Music | None = None

    @model_validator(mode="before")
    @classmethod
    def _flags(cls, v: Any) -> Any:
        """`narration: true` / `music: true` mean the defaults; false means none."""
        if isinstance(v, dict):
            v = dict(v)
            for key in ("narration", "music"):
                if v.get(key) is True:
                    v[key] = {}
                elif v.get(key) is False:
                    v[key] = None
        return v

    @model_validator(mode="after")
    def _one_bed(self) -> Soundtrack:
        if self.file is not None and self.music is not None:
            raise ValueError("give a soundtrack file or a generated music bed, not both")
        return self


class Output(_Model):
    """The finished file: size, quality, text styling and subtitles."""

    width: int | None = Field(None, description="pixels; default from aspect_ratio and height")
    height: int | None = Field(None, description=f"pixels; default {DEFAULT_SHORT_SIDE} on the short side")
    crf: int = Field(20, description="H.264 quality (lower is better, 0-51)")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = Field(
        "veryfast", description="x264 speed/size trade-off; re-renders spend most of their time encoding"
    )
    fit: Literal["cover", "contain"] = Field("cover", description="shots fill the frame (crop) or fit inside it (letterbox)")
    font: str | None = Field(None, description="a .ttf/.otf/.ttc font file (default: the bundled Noto Sans CJK, which covers CJK)")
    caption_size: float = Field(0.055, description="caption text height as a fraction of the frame height")
    safe_area: float = Field(0.05, description="title-safe margin on every side, as a fraction of the frame")
    subtitles: bool = Field(True, description="add a soft subtitle track (mov_text) to the MP4")
    srt: bool = Field(True, description="also write the captions as FILM.srt beside the film")
    burn_captions: bool = Field(True, description="draw captions onto the picture")
    audio_bitrate: int = Field(160_000, description="AAC bits per second")

    @field_validator("width", "height")
    @classmethod
    def _side(cls, v: int | None) -> int | None:
        if v is not None and not (16 <= v <= 4096 and v % 2 == 0):
            raise ValueError(f"must be an even number of pixels from 16 to 4096, got {v}")
        return v

    @field_validator("crf")
    @classmethod
    def _crf(cls, v: int) -> int:
        if not 0 <= v <= 51:
            raise ValueError(f"must be between 0 and 51, got {v}")
        return v

    @field_validator("caption_size")
    @classmethod
    def _caption_size(cls, v: float) -> float:
        if not 0.01 <= v <= 0.25:
            raise ValueError(f"must be between 0.01 and 0.25 of the frame height, got {v}")
        return v

    @field_validator("safe_area")
    @classmethod
    def _safe(cls, v: float) -> float:
        if not 0 <= v <= 0.2:
            raise ValueError(f"must be between 0 and 0.2, got {v}")
        return v


class Storyboard(_Model):
    """A whole film: shots on a timeline, subjects kept consistent, cards, captions, sound, output."""

    version: Literal[1] = 1
    title: str = ""
    aspect_ratio: AspectRatio = Field("16:9", description="of the output (shots are generated at the model's nearest size)")
    fps: float = Field(24.0, description="output frames per second (shots are resampled to it)")
    seed: int = Field(0, description="base of the seeds of shots that give none (a shot's default seed depends only on its prompt)")
    consistency: bool = Field(True, description="condition shots on their subject's reference frame (and continuous shots on the previous last frame)")
    transition: Transition = Field(default_factory=Transition, description="default handover between items")
    subjects: list[Subject] = Field(default_factory=list)
    shots: list[Shot] = Field(min_length=1, max_length=MAX_SHOTS)
    intro: Card | None = None
    outro: Card | None = None
    captions: list[Caption] = Field(default_factory=list)
    soundtrack: Soundtrack | None = None
    output: Output = Field(default_factory=Output)

    @field_validator("fps")
    @classmethod
    def _fps(cls, v: float) -> float:
        if not 0 < v <= 60:
            raise ValueError(f"must be > 0 and <= 60, got {v}")
        return v

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int) -> int:
        if not 0 <= v < 2**32:
            raise ValueError(f"must be between 0 and {2**32 - 1}, got {v}")
        return v

    def size(self) -> tuple[int, int]:
        """(width, height) of the output: explicit sides win, the aspect ratio fills the rest."""
        aw, ah = (int(x) for x in self.aspect_ratio.split(":"))
        w, h = self.output.width, self.output.height
        if w is None and h is None:
            if aw >= ah:
                h = DEFAULT_SHORT_SIDE
            else:
                w = DEFAULT_SHORT_SIDE
        if w is None:
            w = 2 * round(h * aw / ah / 2)
        if h is None:
            h = 2 * round(w * ah / aw / 2)
        return int(w), int(h)

    def handover(self, transition: Transition | None) -> Transition:
        return transition if transition is not None else self.transition
