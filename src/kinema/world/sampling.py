"""Random Shapes World scenes for the dataset, with the held-out split enforced here.

The training set must never contain a held-out pair (see HELD_OUT in scene.py), so
the filter lives at the one place scenes are born rather than downstream.

Dataset choices (documented because they shape what the model learns):
- The camera is static half of the time; otherwise one of the six moves, uniformly.
- A moving camera is never paired with the `plain` texture: on a plain background
  the camera would be unobservable, so its caption would be unlearnable.
- Objects start where they stay fully inside the frame for the whole clip, taking
  their own motion, growth, bounce, spin and the camera into account. When no start
  works (a fast object in a long clip), the speed falls back to slower, then to still.
- Rotation only comes from `spin` (initial angle 0) so that a square never looks
  like a diamond.
- Two objects never overlap at frame 0; the sampler also prefers start positions
  where they stay apart for the whole clip, so a judge sees both throughout.
- Only directional motions carry a speed; the others keep the default speed, which
  captions never mention.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from kinema.world.render import SHAPE_CIRCUMRADIUS, SHAPE_HALF_EXTENTS, object_track
from kinema.world.scene import (
    BACKGROUND_COLORS,
    CAMERAS,
    COLORS,
    DEFAULT_SPEED,
    HELD_OUT,
    MOTION_DIRECTIONS,
    MOTIONS,
    RELATION_MARGIN,
    SHAPES,
    TEXTURES,
    ClipSpec,
    ObjectSpec,
    Scene,
)

HELDOUT_MODES = ("exclude", "only", "any")
TRANSLATIONS = ("still", "left", "right", "up", "down")


def _one_normal_object(scene: Scene) -> bool:
    return len(scene.objects) == 1 and scene.objects[0].speed == "normal"


def _one_object(scene: Scene) -> bool:
    return _one_normal_object(scene) and scene.camera == "static"


# Narrower slices of the world a dataset can be drawn from (`write_dataset(focus=...)`): a sampled scene is
# kept only when the predicate holds. "one-object": one object, a static camera, the normal speed, any
# motion; "one-object-translation": the same, still or moving left / right / up / down (the slice a DiT
# learned to move objects on, docs/benchmarks.md, "Why the objects do not move"); "camera-moves": one still
# object at the normal speed under a moving camera (pan, tilt, zoom), so only the camera moves the picture.
# Slices joined by "+" (focus_parts) mix them in even shares.
FOCUSES: dict[str, Callable[[Scene], bool]] = {
    "": lambda scene: True,
    "one-object": _one_object,
    "one-object-translation": lambda scene: _one_object(scene) and scene.objects[0].motion in TRANSLATIONS,
    "camera-moves": lambda scene: _one_normal_object(scene) and scene.camera != "static" and scene.objects[0].motion == "still",
}
FOCUS_JOIN = "+"


def focus_parts(focus: str) -> tuple[str, ...]:
    """The slices a focus names: "a+b" joins slices of FOCUSES, whose clips then alternate (an even share
    each, whatever share of the world each slice is; a slice may be named twice to get two shares).
    Raises ValueError naming the known slices when a part is unknown."""
    parts = tuple(focus.split(FOCUS_JOIN)) if focus else ("",)
    unknown = [p for p in parts if p not in FOCUSES or (p == "" and len(parts) > 1)]
    if unknown:
        raise ValueError(f"focus must be one of {sorted(FOCUSES)} or several joined by {FOCUS_JOIN!r}, got {focus!r}")
    return parts


EDGE_MARGIN = 0.02  # objects keep this fraction of min(H, W) away from the frame edge
GAP_MARGIN = 0.04  # bounding circles of two objects stay this far apart at frame 0
SIZE_WEIGHTS = {"small": 0.3, "medium": 0.4, "large": 0.3}
STATIC_CAMERA_PROB = 0.5
RELATION_PROB = 0.5
_SPEED_FALLBACK = {"quickly": ("quickly", "normal", "slowly"), "normal": ("normal", "slowly"), "slowly": ("slowly",)}
_MAX_ATTEMPTS = 1000


def _extents(obj: ObjectSpec) -> tuple[float, float]:
    """Half extents (x, y) in units of the side: the circumradius if the shape turns."""
    if obj.motion == "spin" or obj.angle % 360.0:
        r = SHAPE_CIRCUMRADIUS[obj.shape]
        return r, r
    return SHAPE_HALF_EXTENTS[obj.shape]


def feasible_box(obj: ObjectSpec, clip: ClipSpec, camera: str) -> tuple[float, float, float, float] | None:
    """Start positions (x_lo, x_hi, y_lo, y_hi) in frame fractions that keep `obj` inside
    the frame for every frame of `clip`, or None. Screen position is affine in the start."""
    base = object_track(replace(obj, x=0.0, y=0.0), clip, camera)
    unit_scale = object_track(replace(obj, x=1.0, y=1.0), clip, camera)
    kx = unit_scale.cx - base.cx  # = zoom * width
    ky = unit_scale.cy - base.cy
    hx, hy = _extents(obj)
    m = EDGE_MARGIN * min(clip.height, clip.width)
    ex, ey = hx * base.side + m, hy * base.side + m
    x_lo = float(np.max((ex - base.cx) / kx))
    x_hi = float(np.min((clip.width - ex - base.cx) / kx))
    y_lo = float(np.max((ey - base.cy) / ky))
    y_hi = float(np.min((clip.height - ey - base.cy) / ky))
    if x_lo > x_hi or y_lo > y_hi:
        return None
    return x_lo, x_hi, y_lo, y_hi


def stays_inside(obj: ObjectSpec, clip: ClipSpec, camera: str) -> bool:
    """True when the object's bounding box stays fully inside the frame for the whole clip."""
    tr = object_track(obj, clip, camera)
    hx, hy = _extents(obj)
    return bool(
        np.all(tr.cx - hx * tr.side >= -1e-6)
        and np.all(tr.cx + hx * tr.side <= clip.width + 1e-6)
        and np.all(tr.cy - hy * tr.side >= -1e-6)
        and np.all(tr.cy + hy * tr.side <= clip.height + 1e-6)
    )


def _gap(a: ObjectSpec, b: ObjectSpec, clip: ClipSpec, camera: str, whole_clip: bool) -> bool:
    """Bounding circles apart (with margin) at frame 0, or at every frame if `whole_clip`."""
    ta, tb = object_track(a, clip, camera), object_track(b, clip, camera)
    sl = slice(None) if whole_clip else slice(0, 1)
    dist = np.hypot(ta.cx[sl] - tb.cx[sl], ta.cy[sl] - tb.cy[sl])
    need = SHAPE_CIRCUMRADIUS[a.shape] * ta.side[sl] + SHAPE_CIRCUMRADIUS[b.shape] * tb.side[sl]
    need = need + GAP_MARGIN * min(clip.height, clip.width)
    return bool(np.all(dist > need))


def relations_at_start(a: ObjectSpec, b: ObjectSpec, clip: ClipSpec) -> list[str]:
    """Relations of `a` to `b` that hold clearly at frame 0 (see RELATION_MARGIN)."""
    dx = (a.x - b.x) * clip.width
    dy = (a.y - b.y) * clip.height
    margin = RELATION_MARGIN * min(clip.height, clip.width)
    out = []
    if abs(dx) >= margin and abs(dx) >= abs(dy):
        out.append("left of" if dx < 0 else "right of")
    if abs(dy) >= margin and abs(dy) >= abs(dx):
        out.append("above" if dy < 0 else "below")
    return out


def _draw_object(rng: np.random.Generator, want: str) -> ObjectSpec:
    """Attributes of one object; `want` is 'exclude', 'only' (must be held out) or 'any'."""
    sizes = list(SIZE_WEIGHTS)
    while True:
        motion = str(rng.choice(MOTIONS))
        speed = str(rng.choice(("slowly", "normal", "quickly"))) if motion in MOTION_DIRECTIONS else DEFAULT_SPEED
        obj = ObjectSpec(
            shape=str(rng.choice(SHAPES)),
            color=str(rng.choice(list(COLORS))),
            size=str(rng.choice(sizes, p=list(SIZE_WEIGHTS.values()))),
            motion=motion,
            speed=speed,
        )
        held = HELD_OUT.object_is_heldout(obj)
        if want == "any" or (want == "only") == held:
            return obj


def _place(rng: np.random.Generator, obj: ObjectSpec, clip: ClipSpec, camera: str) -> ObjectSpec | None:
    """Give `obj` a start inside its feasible box, slowing it (then stopping it) if needed."""
    candidates = [replace(obj, speed=s) for s in _SPEED_FALLBACK[obj.speed]] if obj.motion in MOTION_DIRECTIONS else [obj]
    candidates.append(replace(obj, motion="still", speed=DEFAULT_SPEED))
    for cand in candidates:
        box = feasible_box(cand, clip, camera)
        if box is not None:
            x_lo, x_hi, y_lo, y_hi = box
            return replace(cand, x=float(rng.uniform(x_lo, x_hi)), y=float(rng.uniform(y_lo, y_hi)))
    return None


def sample_scene(rng: np.random.Generator, clip: ClipSpec, heldout: str = "exclude") -> Scene:
    """A random scene for `clip`.

    heldout: "exclude" (training: no object carries a held-out pair), "only" (at least
    one object does) or "any".
    """
    if heldout not in HELDOUT_MODES:
        raise ValueError(f"heldout must be one of {HELDOUT_MODES}, got {heldout!r}")
    for _ in range(_MAX_ATTEMPTS):
        camera = "static" if rng.random() < STATIC_CAMERA_PROB else str(rng.choice(CAMERAS[1:]))
        textures = TEXTURES if camera == "static" else tuple(t for t in TEXTURES if t != "plain")
        texture = str(rng.choice(textures))
        background = str(rng.choice(list(BACKGROUND_COLORS)))
        n = 1 if rng.random() < 0.5 else 2
        forced = int(rng.integers(n))
        wants = ["only" if (heldout == "only" and i == forced) else ("exclude" if heldout == "exclude" else "any") for i in range(n)]
        drawn = [_draw_object(rng, w) for w in wants]
        objects = _place_all(rng, drawn, clip, camera)
        if objects is None:
            continue
        scene = Scene(objects=tuple(objects), background=background, texture=texture, camera=camera)
        is_held = HELD_OUT.scene_is_heldout(scene)
        if (heldout == "exclude" and is_held) or (heldout == "only" and not is_held):
            continue  # a fallback to still removed the held-out motion; draw again
        if n == 2 and rng.random() < RELATION_PROB:
            rels = relations_at_start(objects[0], objects[1], clip)
            if rels:
                scene = replace(scene, relation=str(rng.choice(rels)))
        return scene
    raise RuntimeError(f"could not sample a scene for {clip} after {_MAX_ATTEMPTS} attempts")


def _place_all(rng: np.random.Generator, drawn: list[ObjectSpec], clip: ClipSpec, camera: str) -> list[ObjectSpec] | None:
    first = _place(rng, drawn[0], clip, camera)
    if first is None:
        return None
    if len(drawn) == 1:
        return [first]
    fallback = None
    for attempt in range(60):
        a = first if attempt == 0 else _place(rng, drawn[0], clip, camera)
        b = _place(rng, drawn[1], clip, camera)
        if a is None or b is None:
            return None
        if _gap(a, b, clip, camera, whole_clip=True):
            return [a, b]
        if fallback is None and _gap(a, b, clip, camera, whole_clip=False):
            fallback = [a, b]
        if attempt >= 30 and fallback is not None:
            return fallback
    return fallback
