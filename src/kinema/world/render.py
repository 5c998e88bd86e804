"""Shapes World v1 renderer: a scene description in, anti-aliased uint8 frames out.

The renderer is a pure function of (scene, clip, seed) so that a dataset can be
re-created bit for bit and a judge can compare against ground truth. Everything
is drawn from continuous coordinates with signed distance functions (coverage
`clip(0.5 - d, 0, 1)` in screen pixels), vectorised over whole frame chunks with
numpy, because the built-in model's dataset is tens of thousands of clips
rendered on a couple of CPU cores.

Coordinates. Screen pixels have x to the right, y down, and pixel (i, j) covers
[j, j+1] x [i, i+1]. The *world* plane coincides with the screen at frame 0;
the camera then moves over it: ``screen = c + zoom(t) * (world - c - cam(t))``
with ``c`` the frame centre. Objects move in world coordinates, and the
background texture is defined on the infinite world plane, so camera motion
moves both together.

Time. Frame ``i`` is at ``t = i / fps`` seconds (used by every rate: speed,
bounce, spin, pan) and at clip progress ``p = i / (num_frames - 1)`` (used by
the over-the-clip factors grow/shrink and zoom, so that the last frame shows
exactly the stated factor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kinema.world.scene import (
    BACKGROUND_COLORS,
    BOUNCE_AMPLITUDE,
    BOUNCE_HZ,
    CAMERA_SPEED,
    COLORS,
    CROSS_THICKNESS_RATIO,
    DIAMOND_WIDTH_RATIO,
    GROW_FACTOR,
    MOTION_DIRECTIONS,
    SIZES,
    SPEEDS,
    SPIN_PERIOD_S,
    STAR_INNER_RATIO,
    STAR_OUTER_RATIO,
    TEXTURE_VALUE_RANGE,
    ZOOM_FACTOR,
    ClipSpec,
    ObjectSpec,
    Scene,
)

# Texture layout, in units of min(H, W) (tuned at 64 px: grid every 16 px, 1 px lines,
# one 1.2 px star per 12x12 px cell, diagonal stripes every ~13 px).
GRID_SPACING = 0.25
LINE_WIDTH = 1.0 / 64.0
STRIPE_SPACING = 0.2
DOT_CELL = 12.0 / 64.0
DOT_RADIUS = 1.2 / 64.0

# Bounding-box half extents (x, y) at angle 0 and circumradius, in units of the side s.
# The sampler uses them to keep objects inside the frame.
_SQRT3 = math.sqrt(3.0)
SHAPE_HALF_EXTENTS: dict[str, tuple[float, float]] = {
    "circle": (0.5, 0.5),
    "square": (0.5, 0.5),
    "triangle": (0.5, _SQRT3 / 4.0),
    "diamond": (DIAMOND_WIDTH_RATIO / 2.0, 0.5),
    "star": (STAR_OUTER_RATIO * math.sin(math.radians(72.0)), STAR_OUTER_RATIO),
    "cross": (0.5, 0.5),
}
SHAPE_CIRCUMRADIUS: dict[str, float] = {
    "circle": 0.5,
    "square": math.sqrt(0.5),
    "triangle": math.sqrt(0.25 + 3.0 / 16.0),
    "diamond": 0.5,
    "star": STAR_OUTER_RATIO,
    "cross": math.sqrt(0.25 + (CROSS_THICKNESS_RATIO / 2.0) ** 2),
}

# Peak number of float32 pixels per rendering chunk (bounds memory for long clips).
_CHUNK_PIXELS = 1 << 20


@dataclass(frozen=True)
class Track:
    """Per-frame screen-space state of one object: centre (px), bbox side (px), angle (deg)."""

    cx: np.ndarray
    cy: np.ndarray
    side: np.ndarray
    angle: np.ndarray


@dataclass(frozen=True)
class CameraTrack:
    """Per-frame camera: world offset ``(ox, oy)`` in px and zoom, see the module docstring."""

    ox: np.ndarray
    oy: np.ndarray
    zoom: np.ndarray


def frame_times(clip: ClipSpec) -> np.ndarray:
    """Seconds of every frame: t = i / fps."""
    return np.arange(clip.num_frames, dtype=np.float64) / clip.fps


def clip_progress(clip: ClipSpec) -> np.ndarray:
    """Clip progress of every frame in [0, 1] (0 everywhere for a single frame)."""
    n = clip.num_frames
    return np.arange(n, dtype=np.float64) / (n - 1) if n > 1 else np.zeros(1)


def camera_track(camera: str, clip: ClipSpec) -> CameraTrack:
    """Camera offset and zoom per frame. Pan left moves the camera left (scene drifts right)."""
    t, p = frame_times(clip), clip_progress(clip)
    v = CAMERA_SPEED * clip.width * t
    zero, one = np.zeros_like(t), np.ones_like(t)
    ox, oy, zoom = zero, zero, one
    if camera == "pan left":
        ox = -v
    elif camera == "pan right":
        ox = v
    elif camera == "tilt up":
        oy = -v
    elif camera == "tilt down":
        oy = v
    elif camera == "zoom in":
        zoom = ZOOM_FACTOR**p
    elif camera == "zoom out":
        zoom = ZOOM_FACTOR ** (-p)
    return CameraTrack(ox=ox, oy=oy, zoom=zoom)


def world_track(obj: ObjectSpec, clip: ClipSpec) -> Track:
    """The object's state in world coordinates (no camera) for every frame."""
    t, p = frame_times(clip), clip_progress(clip)
    unit = min(clip.height, clip.width)
    cx = np.full_like(t, obj.x * clip.width)
    cy = np.full_like(t, obj.y * clip.height)
    side = np.full_like(t, SIZES[obj.size] * unit)
    angle = np.full_like(t, obj.angle)
    if obj.motion in MOTION_DIRECTIONS:
        dx, dy = MOTION_DIRECTIONS[obj.motion]
        dist = SPEEDS[obj.speed] * clip.width * t
        cx, cy = cx + dx * dist, cy + dy * dist
    elif obj.motion == "bounce":
        cy = cy - BOUNCE_AMPLITUDE * unit * np.abs(np.sin(math.pi * BOUNCE_HZ * t))
    elif obj.motion == "spin":
        angle = angle + 360.0 * t / SPIN_PERIOD_S
    elif obj.motion == "grow":
        side = side * GROW_FACTOR**p
    elif obj.motion == "shrink":
        side = side * GROW_FACTOR ** (-p)
    return Track(cx=cx, cy=cy, side=side, angle=angle)


def object_track(obj: ObjectSpec, clip: ClipSpec, camera: str = "static") -> Track:
    """Ground-truth screen-space track of an object (what a judge should read back)."""
    w, cam = world_track(obj, clip), camera_track(camera, clip)
    cxf, cyf = clip.width / 2.0, clip.height / 2.0
    return Track(
        cx=cxf + cam.zoom * (w.cx - cxf - cam.ox),
        cy=cyf + cam.zoom * (w.cy - cyf - cam.oy),
        side=w.side * cam.zoom,
        angle=w.angle,
    )


# ---------------------------------------------------------------------------------------
# Signed distance functions (Inigo Quilez' exact 2D SDFs), local coordinates y up, in px.
# ---------------------------------------------------------------------------------------


def _sd_circle(x: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    return np.sqrt(x * x + y * y) - 0.5 * s


def _sd_box(x: np.ndarray, y: np.ndarray, bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    qx, qy = np.abs(x) - bx, np.abs(y) - by
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0)


def _sd_square(x: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    return _sd_box(x, y, 0.5 * s, 0.5 * s)


def _sd_diamond(x: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    bx, by = 0.5 * DIAMOND_WIDTH_RATIO * s, 0.5 * s
    px, py = np.abs(x), np.abs(y)
    h = np.clip(((bx - 2 * px) * bx - (by - 2 * py) * by) / (bx * bx + by * by), -1.0, 1.0)
    dx, dy = px - 0.5 * bx * (1 - h), py - 0.5 * by * (1 + h)
    return np.sqrt(dx * dx + dy * dy) * np.sign(px * by + py * bx - bx * by)


def _sd_triangle(x: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    # Equilateral with base s, apex up; IQ's version is centroid-centred, ours is
    # bbox-centred, and the bbox centre lies h/6 above the centroid.
    r = 0.5 * s
    h = _SQRT3 / 2.0 * s
    px = np.abs(x) - r
    py = y + h / 6.0 + r / _SQRT3
    fold = px + _SQRT3 * py > 0
    px, py = np.where(fold, (px - _SQRT3 * py) / 2, px), np.where(fold, (-_SQRT3 * px - py) / 2, py)
    px = px - np.clip(px, -2 * r, 0)
    return -np.sqrt(px * px + py * py) * np.sign(py)


_K1 = (0.809016994375, -0.587785252292)


def _sd_star(x: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    r = STAR_OUTER_RATIO * s
    k1x, k1y = _K1
    k2x, k2y = -k1x, k1y
    px, py = np.abs(x), y
    d = 2 * np.maximum(k1x * px + k1y * py, 0)
    px, py = px - d * k1x, py - d * k1y
    d = 2 * np.maximum(k2x * px + k2y * py, 0)
    px, py = px - d * k2x, py - d * k2y
    px, py = np.abs(px), py - r
    bax, bay = STAR_INNER_RATIO * -k1y, STAR_INNER_RATIO * k1x - 1.0  # per unit r
    bax, bay = bax * r, bay * r
    hh = np.clip((px * bax + py * bay) / (bax * bax + bay * bay), 0.0, 1.0)
    dx, dy = px - bax * hh, py - bay * hh
    return np.sqrt(dx * dx + dy * dy) * np.sign(py * bax - px * bay)


def _sd_cross(x: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    bx, by = 0.5 * s, 0.5 * CROSS_THICKNESS_RATIO * s
    px, py = np.abs(x), np.abs(y)
    swap = py > px
    px, py = np.where(swap, py, px), np.where(swap, px, py)
    qx, qy = px - bx, py - by
    k = np.maximum(qx, qy)
    wx = np.where(k > 0, qx, by - px)
    wy = np.where(k > 0, qy, -k)
    return np.sign(k) * np.sqrt(np.maximum(wx, 0) ** 2 + np.maximum(wy, 0) ** 2)


_SDF = {
    "circle": _sd_circle,
    "square": _sd_square,
    "triangle": _sd_triangle,
    "diamond": _sd_diamond,
    "star": _sd_star,
    "cross": _sd_cross,
}


def shape_sdf(shape: str, x: np.ndarray, y: np.ndarray, side: np.ndarray | float) -> np.ndarray:
    """Signed distance (px, negative inside) to a shape of bbox side `side`, local coords y up."""
    return _SDF[shape](x, y, np.asarray(side, dtype=np.float32))


# ---------------------------------------------------------------------------------------
# Background texture on the infinite world plane.
# ---------------------------------------------------------------------------------------


def _hash_u32(i: np.ndarray, j: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """Deterministic integer hash of cell coordinates (a murmur3-style finaliser)."""
    h = (i.astype(np.int64) * 73856093) ^ (j.astype(np.int64) * 19349663) ^ ((seed * 83492791 + salt * 2654435761) & 0xFFFFFFFF)
    h = (h & 0xFFFFFFFF).astype(np.uint32)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def _unit(h: np.ndarray) -> np.ndarray:
    return h.astype(np.float32) * np.float32(1.0 / 4294967296.0)


def _line_distance(coord: np.ndarray, spacing: float, phase: float) -> np.ndarray:
    q = (coord - phase) / spacing
    return np.abs(q - np.round(q)) * spacing


def _texture(
    texture: str, wx: np.ndarray, wy: np.ndarray, zoom: np.ndarray, unit: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Coverage [t,H,W] and grey level [t,H,W] (or scalar) of the texture marks.

    `wx` is [t,1,W] and `wy` [t,H,1] world coordinates of pixel centres; world distances
    are turned into screen pixels by multiplying with the zoom.
    """
    phase = np.random.default_rng([seed, 7919]).random(3)
    grey = np.float32(255.0 * sum(TEXTURE_VALUE_RANGE) / 2.0)
    half_line = 0.5 * LINE_WIDTH * unit
    if texture == "grid":
        g = GRID_SPACING * unit
        dx = _line_distance(wx, g, phase[0] * g)
        dy = _line_distance(wy, g, phase[1] * g)
        d = (np.minimum(dx, dy) - half_line) * zoom
        return np.clip(0.5 - d, 0.0, 1.0), grey
    if texture == "stripes":
        g = STRIPE_SPACING * unit
        along = (wx + wy) * np.float32(1.0 / math.sqrt(2.0))
        d = (_line_distance(along, g, phase[2] * g) - half_line) * zoom
        return np.clip(0.5 - d, 0.0, 1.0), grey
    if texture == "dots":
        cell = DOT_CELL * unit
        radius = DOT_RADIUS * unit
        margin = (radius + 1.5 * unit / 64.0) / cell  # keep every dot and its AA inside its cell
        ci = np.floor(wx / cell)
        cj = np.floor(wy / cell)
        ci, cj = np.broadcast_arrays(ci, cj)
        h1 = _hash_u32(ci, cj, seed, 1)
        h2 = _hash_u32(ci, cj, seed, 2)
        span = 1.0 - 2.0 * margin
        dotx = (ci + margin + span * _unit(h1)) * cell
        doty = (cj + margin + span * _unit(h2)) * cell
        d = (np.sqrt((wx - dotx) ** 2 + (wy - doty) ** 2) - radius) * zoom
        lo, hi = TEXTURE_VALUE_RANGE
        level = 255.0 * (lo + (hi - lo) * _unit(_hash_u32(ci, cj, seed, 3)))
        return np.clip(0.5 - d, 0.0, 1.0), level
    raise ValueError(f"unknown texture {texture!r}")


# ---------------------------------------------------------------------------------------
# Rendering.
# ---------------------------------------------------------------------------------------


def _render_chunk(
    scene: Scene,
    clip: ClipSpec,
    seed: int,
    sel: slice,
    cam: CameraTrack,
    tracks: list[Track],
) -> np.ndarray:
    h, w = clip.height, clip.width
    unit = float(min(h, w))
    f32 = np.float32
    zoom = cam.zoom[sel].astype(f32)[:, None, None]
    n = zoom.shape[0]
    xs = (np.arange(w, dtype=f32) + 0.5)[None, None, :]
    ys = (np.arange(h, dtype=f32) + 0.5)[None, :, None]
    img = np.empty((n, h, w, 3), dtype=f32)
    img[:] = np.asarray(BACKGROUND_COLORS[scene.background], dtype=f32)
    if scene.texture != "plain":
        cxf, cyf = f32(w / 2.0), f32(h / 2.0)
        ox = cam.ox[sel].astype(f32)[:, None, None]
        oy = cam.oy[sel].astype(f32)[:, None, None]
        wx = cxf + ox + (xs - cxf) / zoom
        wy = cyf + oy + (ys - cyf) / zoom
        alpha, level = _texture(scene.texture, wx, wy, zoom, unit, seed)
        img += alpha[..., None] * (np.asarray(level, dtype=f32)[..., None] - img)
    for obj, track in zip(scene.objects, tracks):
        cx = track.cx[sel].astype(f32)[:, None, None]
        cy = track.cy[sel].astype(f32)[:, None, None]
        side = track.side[sel].astype(f32)[:, None, None]
        theta = np.radians(track.angle[sel]).astype(f32)[:, None, None]
        dx = xs - cx
        dyu = cy - ys  # y up
        if obj.shape == "circle" or not np.any(track.angle[sel] % 360.0):
            lx, ly = dx, dyu  # broadcasts to [t,H,W] inside the SDF
        else:
            c, s = np.cos(theta), np.sin(theta)
            lx, ly = c * dx + s * dyu, c * dyu - s * dx  # rotate by -theta (shape turns CCW)
        alpha = np.clip(0.5 - shape_sdf(obj.shape, lx, ly, side), 0.0, 1.0)
        color = np.asarray(COLORS[obj.color], dtype=f32)
        img += alpha[..., None] * (color - img)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render(scene: Scene, clip: ClipSpec, seed: int = 0) -> np.ndarray:
    """Render `scene` as uint8 frames [T, H, W, 3]; a pure function of (scene, clip, seed)."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    cam = camera_track(scene.camera, clip)
    tracks = [object_track(o, clip, scene.camera) for o in scene.objects]
    out = np.empty((clip.num_frames, clip.height, clip.width, 3), dtype=np.uint8)
    step = max(1, _CHUNK_PIXELS // (clip.height * clip.width))
    for start in range(0, clip.num_frames, step):
        sel = slice(start, min(start + step, clip.num_frames))
        out[sel] = _render_chunk(scene, clip, seed, sel, cam, tracks)
    return out
