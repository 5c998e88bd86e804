"""Renderer: determinism, anti-aliasing, exact palette, and every motion/camera moving the right way."""

from __future__ import annotations

import numpy as np
import pytest

from kinema.world.render import object_track, render
from kinema.world.scene import BACKGROUND_COLORS, CAMERAS, COLORS, GROW_FACTOR, SHAPES, ZOOM_FACTOR, ClipSpec, ObjectSpec, Scene

CLIP = ClipSpec(height=64, width=64, num_frames=9, fps=8.0)


def _scene(*objects: ObjectSpec, texture: str = "plain", camera: str = "static", background: str = "black") -> Scene:
    return Scene(objects=tuple(objects), texture=texture, camera=camera, background=background)


def _mask(frames: np.ndarray, color: str) -> np.ndarray:
    """Pixels within a small distance of a palette color: the object's solid interior."""
    diff = frames.astype(np.int32) - np.asarray(COLORS[color])
    return np.abs(diff).max(axis=-1) <= 30


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def test_render_is_deterministic_and_shaped() -> None:
    scene = _scene(ObjectSpec("star", "red", motion="spin"), texture="dots", camera="zoom in")
    a, b = render(scene, CLIP, seed=3), render(scene, CLIP, seed=3)
    assert a.dtype == np.uint8 and a.shape == (9, 64, 64, 3)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("texture", ["dots", "grid", "stripes"])
def test_texture_depends_on_seed(texture: str) -> None:
    scene = _scene(ObjectSpec("circle", "white", size="small"), texture=texture)
    assert not np.array_equal(render(scene, CLIP, seed=0), render(scene, CLIP, seed=1))


@pytest.mark.parametrize("size", [(32, 48, 1, 4.0), (48, 32, 5, 24.0), (80, 144, 3, 12.5)])
def test_any_canvas_and_frame_count(size: tuple[int, int, int, float]) -> None:
    h, w, n, fps = size
    out = render(_scene(ObjectSpec("cross", "cyan")), ClipSpec(h, w, n, fps))
    assert out.shape == (n, h, w, 3)
    assert tuple(out[0, h // 2, w // 2]) == COLORS["cyan"]


def test_edges_are_anti_aliased() -> None:
    frame = render(_scene(ObjectSpec("circle", "white", size="large", x=0.47, y=0.52)), ClipSpec(64, 64, 1, 8.0))[0]
    grey = frame[..., 0].astype(int)
    bg, fg = BACKGROUND_COLORS["black"][0], COLORS["white"][0]
    intermediate = (grey > bg + 10) & (grey < fg - 10)
    assert intermediate.sum() >= 20  # a ring of partial coverage, not a hard edge


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("color", list(COLORS))
def test_palette_exact_at_object_centre(shape: str, color: str) -> None:
    scene = _scene(ObjectSpec(shape, color, x=0.4, y=0.6), texture="grid", background="navy")
    frame = render(scene, ClipSpec(64, 64, 1, 8.0))[0]
    assert tuple(int(v) for v in frame[int(0.6 * 64), int(0.4 * 64)]) == COLORS[color]


def test_shapes_have_their_specified_areas() -> None:
    """Coverage sums to the analytic area of each shape (spec geometry, scene.py constants)."""
    side = 0.34 * 128
    expected = {
        "circle": np.pi / 4,
        "square": 1.0,
        "triangle": np.sqrt(3) / 4,
        "diamond": 0.3,
        "star": 5 * 0.5 * 0.2 * np.sin(np.radians(36)),
        "cross": 2 / 3 - 1 / 9,
    }
    for shape, area in expected.items():
        frame = render(_scene(ObjectSpec(shape, "white", size="large")), ClipSpec(128, 128, 1, 8.0))[0]
        bg, fg = BACKGROUND_COLORS["black"][0], COLORS["white"][0]
        coverage = (frame[..., 0].astype(float) - bg) / (fg - bg)
        assert coverage.sum() / side**2 == pytest.approx(area, rel=0.03), shape


@pytest.mark.parametrize(
    "motion,direction", [("left", (-1, 0)), ("right", (1, 0)), ("up", (0, -1)), ("down", (0, 1))]
)
def test_directional_motion_moves_centroid(motion: str, direction: tuple[int, int]) -> None:
    frames = render(_scene(ObjectSpec("square", "green", size="small", motion=motion)), CLIP)
    x0, y0 = _centroid(_mask(frames[0], "green"))
    x1, y1 = _centroid(_mask(frames[-1], "green"))
    expected = 0.22 * 64 * (CLIP.num_frames - 1) / CLIP.fps  # normal speed, frame widths / s
    assert (x1 - x0, y1 - y0) == pytest.approx((direction[0] * expected, direction[1] * expected), abs=1.0)


def test_bounce_goes_up_and_comes_back() -> None:
    frames = render(_scene(ObjectSpec("circle", "orange", size="small", motion="bounce")), CLIP)  # 0..1 s
    ys = [_centroid(_mask(f, "orange"))[1] for f in frames]
    assert ys[4] < ys[0] - 5  # apex at t = 0.5 s
    assert ys[-1] == pytest.approx(ys[0], abs=0.5)


def test_spin_turns_counter_clockwise() -> None:
    clip = ClipSpec(64, 64, 5, 8.0)  # t = 0.5 s at the last frame: a quarter turn
    frames = render(_scene(ObjectSpec("triangle", "yellow", size="large", motion="spin")), clip)
    m0, m1 = _mask(frames[0], "yellow"), _mask(frames[-1], "yellow")
    # The triangle's mass sits towards its base (bbox-centred shape). Apex up at frame 0
    # puts the mass below the centre; a counter-clockwise quarter turn points the apex
    # left, moving the mass to the right (clockwise would move it left).
    x0, y0 = _centroid(m0)
    x1, y1 = _centroid(m1)
    centre = 31.5  # pixel-index coordinates of the frame centre
    assert y0 > centre + 1 and x1 > centre + 1
    assert abs(x0 - centre) < 0.3 and abs(y1 - centre) < 0.3
    assert abs(m0.sum() - m1.sum()) < 0.05 * m0.sum()


@pytest.mark.parametrize("motion,factor", [("grow", GROW_FACTOR**2), ("shrink", GROW_FACTOR**-2)])
def test_grow_and_shrink_scale_area(motion: str, factor: float) -> None:
    frames = render(_scene(ObjectSpec("square", "purple", motion=motion)), CLIP)
    bg, fg = BACKGROUND_COLORS["black"][2], COLORS["purple"][2]
    area = ((frames[..., 2].astype(float) - bg) / (fg - bg)).sum(axis=(1, 2))  # anti-aliased coverage
    assert area[-1] / area[0] == pytest.approx(factor, rel=0.02)
    assert np.all(np.diff(area) > 0) if motion == "grow" else np.all(np.diff(area) < 0)


def _best_shift(a: np.ndarray, b: np.ndarray, axis: int, max_shift: int = 12) -> int:
    """Integer shift s minimising |b[x + s] - a[x]| along `axis` (how far content moved)."""
    errs = {}
    n = a.shape[axis]
    for s in range(-max_shift, max_shift + 1):
        lo, hi = max(0, s), min(n, n + s)
        bs = np.take(b, range(lo, hi), axis=axis).astype(float)
        as_ = np.take(a, range(lo - s, hi - s), axis=axis).astype(float)
        errs[s] = np.abs(bs - as_).mean()
    return min(errs, key=errs.get)


@pytest.mark.parametrize(
    "camera,axis,sign",
    [("pan left", 1, 1), ("pan right", 1, -1), ("tilt up", 0, 1), ("tilt down", 0, -1)],
)
def test_pan_and_tilt_move_the_texture(camera: str, axis: int, sign: int) -> None:
    clip = ClipSpec(64, 64, 3, 8.0)  # 0.25 s: 0.22 * 64 * 0.25 = 3.5 px
    frames = render(_scene(ObjectSpec("circle", "red", size="small", x=0.5, y=0.5), texture="dots", camera=camera), clip)
    grey0, grey1 = frames[0, ..., 1], frames[-1, ..., 1]  # green channel: dots bright, red object dark
    shift = _best_shift(grey0, grey1, axis=axis)
    assert shift * sign in (3, 4)


def _grid_period(frame: np.ndarray) -> int:
    profile = frame[40:, :, 1].astype(float).mean(axis=0)
    profile -= profile.mean()
    scores = {lag: float(np.dot(profile[:-lag], profile[lag:]) / (len(profile) - lag)) for lag in range(6, 30)}
    return max(scores, key=scores.get)


@pytest.mark.parametrize("camera,factor", [("zoom in", ZOOM_FACTOR), ("zoom out", 1 / ZOOM_FACTOR)])
def test_zoom_scales_texture_and_objects(camera: str, factor: float) -> None:
    scene = _scene(ObjectSpec("square", "red", size="small", x=0.3, y=0.3), texture="grid", camera=camera)
    frames = render(scene, CLIP)
    assert _grid_period(frames[0]) == 16
    assert _grid_period(frames[-1]) == pytest.approx(16 * factor, abs=1)
    track = object_track(scene.objects[0], CLIP, camera)
    assert track.side[-1] / track.side[0] == pytest.approx(factor)
    # The object is scaled about the frame centre: off-centre, it moves away (in) / towards (out).
    assert (32 - track.cx[-1]) / (32 - track.cx[0]) == pytest.approx(factor)


def test_objects_drawn_in_order() -> None:
    scene = _scene(ObjectSpec("square", "blue", size="large"), ObjectSpec("circle", "yellow", size="small"))
    frame = render(scene, ClipSpec(64, 64, 1, 8.0))[0]
    assert tuple(int(v) for v in frame[32, 32]) == COLORS["yellow"]


def test_texture_is_dark_grey() -> None:
    for texture in ("grid", "dots", "stripes"):
        frame = render(_scene(ObjectSpec("circle", "red", size="small", x=0.15, y=0.15), texture=texture), ClipSpec(64, 64, 1, 8.0))[0]
        rgb = frame[32:, :].reshape(-1, 3).astype(float) / 255
        value = rgb.max(axis=1)
        sat = np.where(value > 0, (value - rgb.min(axis=1)) / np.maximum(value, 1e-6), 0)
        marks = value > 0.2
        assert marks.any(), texture
        assert value.max() <= 0.46 and sat[marks].max() <= 0.15, texture


@pytest.mark.parametrize("camera", CAMERAS)
def test_every_camera_renders(camera: str) -> None:
    frames = render(_scene(ObjectSpec("diamond", "white"), texture="stripes", camera=camera), CLIP)
    assert frames.shape == (9, 64, 64, 3)
    assert np.array_equal(frames[0], render(_scene(ObjectSpec("diamond", "white"), texture="stripes"), CLIP)[0])
