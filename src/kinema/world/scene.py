"""Shapes World v1 scene model (see ../shared/shapes-world.md).

This module is the single source of truth for the world's vocabulary: the
renderer, the caption grammar, the dataset writer and the judge all import
their constants from here so that they can never disagree on what a word means.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SPEC_VERSION = "shapes-world-v1"

BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {
    # Dark, low-saturation bases (HSV value <= 0.3).
    "black": (10, 10, 12),
    "navy": (16, 22, 58),
    "charcoal": (52, 54, 58),
    "dark green": (18, 50, 28),
}
TEXTURES: tuple[str, ...] = ("plain", "grid", "dots", "stripes")

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross")

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (40, 190, 60),
    "cyan": (30, 200, 220),
    "blue": (40, 80, 235),
    "purple": (150, 60, 210),
    "white": (245, 245, 245),
}

SIZES: dict[str, float] = {"small": 0.16, "medium": 0.24, "large": 0.34}
DEFAULT_SIZE = "medium"

MOTIONS: tuple[str, ...] = ("still", "left", "right", "up", "down", "bounce", "spin", "grow", "shrink")
# Directional motions and their unit direction in image coordinates (x right, y down).
MOTION_DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
}
SPEEDS: dict[str, float] = {"slowly": 0.12, "normal": 0.22, "quickly": 0.35}  # frame widths / s
DEFAULT_SPEED = "normal"
BOUNCE_HZ = 1.0  # up and down once per second
SPIN_PERIOD_S = 2.0  # one turn per 2 s
GROW_FACTOR = 1.6  # grow: size x1.6 over the clip; shrink: size / 1.6

CAMERAS: tuple[str, ...] = ("static", "pan left", "pan right", "tilt up", "tilt down", "zoom in", "zoom out")
ZOOM_FACTOR = 1.5  # zoom in: x1.5 over the clip; zoom out: / 1.5
CAMERA_SPEED = 0.22  # pan/tilt speed in frame widths per second (the normal object speed)

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")

# --- Shape geometry -------------------------------------------------------------------
# Every shape fits an axis-aligned bounding box of side s = SIZES[size] * min(H, W) at
# angle 0, centred on the object's position. Rotation (`angle`, spin) is counter-clockwise
# on screen. The renderer draws exactly these shapes and the judge measures against them.
CIRCLE_RADIUS_RATIO = 0.5  # circle: radius s/2
SQUARE_SIDE_RATIO = 1.0  # square: axis-aligned side s
TRIANGLE_BASE_RATIO = 1.0  # triangle: equilateral, pointing up, base s, centred on its bbox centre
DIAMOND_WIDTH_RATIO = 0.6  # diamond: vertical diagonal s, horizontal diagonal 0.6 s (not a rotated square)
STAR_POINTS = 5  # star: 5 points, one pointing up
STAR_OUTER_RATIO = 0.5  # star outer radius s/2
STAR_INNER_RATIO = 0.4  # inner radius / outer radius, i.e. inner radius 0.2 s
CROSS_THICKNESS_RATIO = 1.0 / 3.0  # cross: plus sign, tip-to-tip arm length s, arm thickness s/3

# --- Motion geometry ------------------------------------------------------------------
BOUNCE_AMPLITUDE = 0.12  # bounce apex height, as a fraction of min(H, W): y = y0 - A |sin(pi f t)|

# --- Background texture ---------------------------------------------------------------
# Texture marks are grey with an HSV value in this range (saturation <= 0.15), darker than
# every object color, so a judge can separate objects from texture by brightness/saturation.
TEXTURE_VALUE_RANGE = (0.35, 0.45)

# A relation holds at frame 0 when the centres differ along its axis by at least this
# fraction of min(H, W) and that axis dominates the offset.
RELATION_MARGIN = 0.15

MAX_OBJECTS = 2


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a scene. `x`, `y` are the start position of its centre in frame
    fractions (x * width, y * height), so a scene renders at any canvas size."""

    shape: str
    color: str
    size: str = DEFAULT_SIZE
    motion: str = "still"
    speed: str = DEFAULT_SPEED
    # Start position of the object's centre, in frame fractions: (0,0) top-left, (1,1) bottom-right.
    x: float = 0.5
    y: float = 0.5
    # Initial rotation in degrees (spin adds to it).
    angle: float = 0.0

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; expected one of {SHAPES}")
        if self.color not in COLORS:
            raise ValueError(f"unknown color {self.color!r}; expected one of {tuple(COLORS)}")
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; expected one of {tuple(SIZES)}")
        if self.motion not in MOTIONS:
            raise ValueError(f"unknown motion {self.motion!r}; expected one of {MOTIONS}")
        if self.speed not in SPEEDS:
            raise ValueError(f"unknown speed {self.speed!r}; expected one of {tuple(SPEEDS)}")


@dataclass(frozen=True)
class Scene:
    """A whole clip description: background, 1-2 objects and the camera.

    `relation`, when set, names the first object's place relative to the second
    ("left of", "right of", "above", "below") and is only valid with two objects.
    """

    objects: tuple[ObjectSpec, ...]
    background: str = "black"
    texture: str = "plain"
    camera: str = "static"
    relation: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.objects) <= MAX_OBJECTS:
            raise ValueError(f"a scene has 1 or {MAX_OBJECTS} objects, got {len(self.objects)}")
        if self.background not in BACKGROUND_COLORS:
            raise ValueError(f"unknown background {self.background!r}")
        if self.texture not in TEXTURES:
            raise ValueError(f"unknown texture {self.texture!r}")
        if self.camera not in CAMERAS:
            raise ValueError(f"unknown camera {self.camera!r}")
        if self.relation is not None:
            if self.relation not in RELATIONS:
                raise ValueError(f"unknown relation {self.relation!r}")
            if len(self.objects) != 2:
                raise ValueError("a relation needs two objects")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, stored beside every clip in the dataset metadata."""
        d = asdict(self)
        d["objects"] = [asdict(o) for o in self.objects]
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Scene":
        objects = tuple(ObjectSpec(**o) for o in d["objects"])
        rest = {k: v for k, v in d.items() if k != "objects"}
        return Scene(objects=objects, **rest)


@dataclass(frozen=True)
class ClipSpec:
    """How a scene is rendered: canvas, duration and frame rate."""

    height: int = 64
    width: int = 64
    num_frames: int = 17
    fps: float = 8.0

    def __post_init__(self) -> None:
        if self.height % 16 or self.width % 16 or self.height <= 0 or self.width <= 0:
            raise ValueError(f"height and width must be positive multiples of 16, got {self.height}x{self.width}")
        if self.num_frames < 1:
            raise ValueError("num_frames must be at least 1")
        if self.fps <= 0:
            raise ValueError("fps must be positive")

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps


@dataclass
class HeldOut:
    """Combinations no training clip may contain, for any object of its scene."""

    color_shape: frozenset[tuple[str, str]] = field(
        default_factory=lambda: frozenset(
            {
                ("red", "star"),
                ("orange", "diamond"),
                ("yellow", "cross"),
                ("green", "circle"),
                ("cyan", "square"),
                ("blue", "triangle"),
                ("purple", "star"),
                ("white", "diamond"),
            }
        )
    )
    shape_motion: frozenset[tuple[str, str]] = field(
        default_factory=lambda: frozenset(
            {
                ("square", "up"),
                ("circle", "grow"),
                ("triangle", "right"),
                ("star", "down"),
                ("diamond", "spin"),
                ("cross", "left"),
            }
        )
    )

    def object_is_heldout(self, obj: ObjectSpec) -> bool:
        return (obj.color, obj.shape) in self.color_shape or (obj.shape, obj.motion) in self.shape_motion

    def scene_is_heldout(self, scene: Scene) -> bool:
        """True when any object of the scene carries a held-out pair."""
        return any(self.object_is_heldout(o) for o in scene.objects)


HELD_OUT = HeldOut()
