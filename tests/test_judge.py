"""The Shapes World judge: trusted only if it reads the renderer's own clips back (>= 98%)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from kinema.errors import KinemaInputError
from kinema.video.io import read_video, write_video
from kinema.world.judge import ATTRIBUTES, ClipReading, ObjectReading, read_clip, score
from kinema.world.render import render
from kinema.world.sampling import sample_scene
from kinema.world.scene import ClipSpec, ObjectSpec, Scene

N_CLIPS = 201  # 67 per canvas
SIZES = ((64, 64), (64, 112), (112, 64))


@pytest.fixture(scope="module")
def ground_truth():
    """Renderer clips of random scenes (held-out pairs included) across the three canvases."""
    rng = np.random.default_rng(2024)
    out = []
    for i in range(N_CLIPS):
        h, w = SIZES[i % len(SIZES)]
        clip = ClipSpec(height=h, width=w, num_frames=17, fps=8.0)
        scene = sample_scene(rng, clip, heldout="any")
        out.append((scene, clip, render(scene, clip, seed=i)))
    return out


def _accuracy(pairs) -> dict[str, float]:
    right = Counter()
    for scene, frames, fps in pairs:
        for key, ok in score(read_clip(frames, fps), scene).items():
            right[key] += ok
    acc = {k: right[k] / len(pairs) for k in ATTRIBUTES}
    acc["overall"] = sum(right.values()) / (len(pairs) * len(ATTRIBUTES))
    return acc


def test_judge_reads_renderer_clips(ground_truth):
    acc = _accuracy([(scene, frames, clip.fps) for scene, clip, frames in ground_truth])
    print("judge accuracy on renderer clips:", {k: round(v, 4) for k, v in acc.items()})
    assert acc["overall"] >= 0.98, acc
    assert min(acc.values()) >= 0.95, acc


def test_judge_reads_clips_after_h264_round_trip(ground_truth, tmp_path):
    pairs = []
    for i, (scene, clip, frames) in enumerate(ground_truth):
        path = tmp_path / f"{i}.mp4"
        write_video(frames, path, clip.fps)
        decoded, fps = read_video(path)
        assert decoded.shape == frames.shape
        pairs.append((scene, decoded, fps))
    acc = _accuracy(pairs)
    print("judge accuracy after H.264:", {k: round(v, 4) for k, v in acc.items()})
    assert acc["overall"] >= 0.98, acc
    assert min(acc.values()) >= 0.95, acc


def test_judge_reads_a_known_scene_exactly():
    clip = ClipSpec(height=64, width=112, num_frames=17, fps=8.0)
    # pan right drifts the scene left by 0.44 frame widths over the clip: start on the right
    scene = Scene(
        objects=(
            ObjectSpec(shape="triangle", color="orange", size="large", motion="down", speed="slowly", x=0.62, y=0.3),
            ObjectSpec(shape="star", color="cyan", size="medium", motion="bounce", x=0.9, y=0.7),
        ),
        background="dark green",
        texture="dots",
        camera="pan right",
    )
    reading = read_clip(render(scene, clip, seed=3), clip.fps)
    assert reading.camera == "pan right"
    got = sorted((o.color, o.shape, o.motion) for o in reading.objects)
    assert got == [("cyan", "star", "bounce"), ("orange", "triangle", "down")]


def test_blank_video_reads_no_objects():
    frames = np.full((9, 64, 64, 3), 12, np.uint8)
    reading = read_clip(frames, 8.0)
    assert reading.count == 0 and reading.camera == "static"
    scene = Scene(objects=(ObjectSpec(shape="circle", color="red"),))
    assert score(reading, scene) == {"count": False, "color": False, "shape": False, "motion": False, "camera": True}


def test_read_clip_rejects_bad_input():
    with pytest.raises(KinemaInputError):
        read_clip(np.zeros((4, 64, 64), np.uint8), 8.0)
    with pytest.raises(KinemaInputError):
        read_clip(np.zeros((4, 64, 64, 3), np.float32), 8.0)
    with pytest.raises(KinemaInputError):
        read_clip(np.zeros((4, 64, 64, 3), np.uint8), 0.0)


# --- score() on hand-made readings -----------------------------------------------------------


def _obj(color, shape, motion, x, y) -> ObjectReading:
    return ObjectReading(color=color, shape=shape, motion=motion, track=((0, x, y, 0.01), (1, x, y, 0.01)))


SCENE2 = Scene(
    objects=(
        ObjectSpec(shape="square", color="red", motion="left", x=0.7, y=0.3),
        ObjectSpec(shape="circle", color="blue", motion="spin", x=0.3, y=0.7),
    ),
    camera="zoom in",
    texture="grid",
)


def test_score_all_right_in_any_order():
    reading = ClipReading(
        count=2,
        objects=(_obj("blue", "circle", "still", 0.3, 0.7), _obj("red", "square", "left", 0.7, 0.3)),
        camera="zoom in",
    )
    assert score(reading, SCENE2) == dict.fromkeys(ATTRIBUTES, True)


def test_score_one_wrong_attribute_only():
    reading = ClipReading(
        count=2,
        objects=(_obj("red", "square", "up", 0.7, 0.3), _obj("blue", "circle", "spin", 0.3, 0.7)),
        camera="zoom out",
    )
    assert score(reading, SCENE2) == {"count": True, "color": True, "shape": True, "motion": False, "camera": False}


def test_score_matches_by_color_before_position():
    # objects swapped in place: color still decides who is who, so only nothing is wrong
    reading = ClipReading(
        count=2,
        objects=(_obj("red", "square", "left", 0.3, 0.7), _obj("blue", "circle", "still", 0.7, 0.3)),
        camera="zoom in",
    )
    assert all(score(reading, SCENE2).values())
    wrong_color = ClipReading(
        count=2,
        objects=(_obj("orange", "square", "left", 0.7, 0.3), _obj("blue", "circle", "still", 0.3, 0.7)),
        camera="zoom in",
    )
    s = score(wrong_color, SCENE2)
    assert not s["color"] and s["shape"] and s["motion"] and s["count"]


def test_score_missed_object_makes_its_attributes_wrong():
    reading = ClipReading(count=1, objects=(_obj("red", "square", "left", 0.7, 0.3),), camera="zoom in")
    assert score(reading, SCENE2) == {"count": False, "color": False, "shape": False, "motion": False, "camera": True}


def test_spin_is_only_excused_for_a_circle():
    square = Scene(objects=(ObjectSpec(shape="square", color="green", motion="spin"),))
    still = ClipReading(count=1, objects=(_obj("green", "square", "still", 0.5, 0.5),), camera="static")
    assert not score(still, square)["motion"]
    circle = Scene(objects=(ObjectSpec(shape="circle", color="green", motion="spin"),))
    still_circle = ClipReading(count=1, objects=(_obj("green", "circle", "still", 0.5, 0.5),), camera="static")
    assert score(still_circle, circle)["motion"]
