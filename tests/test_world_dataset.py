"""Scene sampling and the dataset writer: held-out split, framing, determinism, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kinema.errors import KinemaInputError
from kinema.video.io import read_video
from kinema.world.dataset import write_dataset
from kinema.world.render import SHAPE_CIRCUMRADIUS, object_track, render
from kinema.world.sampling import TRANSLATIONS, focus_parts, relations_at_start, sample_scene, stays_inside
from kinema.world.scene import HELD_OUT, RELATION_MARGIN, ClipSpec, Scene

CLIPS = [ClipSpec(64, 64, 17, 8.0), ClipSpec(48, 80, 33, 8.0), ClipSpec(64, 64, 97, 24.0)]


def test_exclude_never_yields_a_heldout_pair() -> None:
    rng = np.random.default_rng(0)
    for i in range(3000):
        scene = sample_scene(rng, CLIPS[i % 3], heldout="exclude")
        for obj in scene.objects:
            assert (obj.color, obj.shape) not in HELD_OUT.color_shape
            assert (obj.shape, obj.motion) not in HELD_OUT.shape_motion


def test_only_always_yields_a_heldout_pair_and_covers_them() -> None:
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(600):
        scene = sample_scene(rng, CLIPS[0], heldout="only")
        assert HELD_OUT.scene_is_heldout(scene)
        for o in scene.objects:
            seen |= {p for p in [(o.color, o.shape)] if p in HELD_OUT.color_shape}
            seen |= {p for p in [(o.shape, o.motion)] if p in HELD_OUT.shape_motion}
    assert seen == set(HELD_OUT.color_shape) | set(HELD_OUT.shape_motion)


def test_unknown_heldout_mode() -> None:
    with pytest.raises(ValueError):
        sample_scene(np.random.default_rng(0), CLIPS[0], heldout="train")


@pytest.mark.parametrize("clip", CLIPS)
def test_objects_stay_inside_and_start_apart(clip: ClipSpec) -> None:
    rng = np.random.default_rng(2)
    unit = min(clip.height, clip.width)
    for _ in range(400):
        scene = sample_scene(rng, clip, heldout="any")
        assert all(stays_inside(o, clip, scene.camera) for o in scene.objects)
        assert not (scene.camera != "static" and scene.texture == "plain")
        if len(scene.objects) == 2:
            a, b = (object_track(o, clip, scene.camera) for o in scene.objects)
            gap = np.hypot(a.cx[0] - b.cx[0], a.cy[0] - b.cy[0])
            radii = SHAPE_CIRCUMRADIUS[scene.objects[0].shape] * a.side[0] + SHAPE_CIRCUMRADIUS[scene.objects[1].shape] * b.side[0]
            assert gap > radii
        if scene.relation:
            assert scene.relation in relations_at_start(*scene.objects, clip)
            a, b = scene.objects
            d = {"left of": (b.x - a.x) * clip.width, "right of": (a.x - b.x) * clip.width,
                 "above": (b.y - a.y) * clip.height, "below": (a.y - b.y) * clip.height}[scene.relation]
            assert d >= RELATION_MARGIN * unit


def test_rendered_objects_never_touch_the_border() -> None:
    rng = np.random.default_rng(4)
    clip = ClipSpec(64, 64, 17, 8.0)
    for i in range(40):
        frames = render(sample_scene(rng, clip), clip, seed=i)
        ring = np.concatenate([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], axis=1)
        assert ring.max() <= 120  # background and grey texture only (objects are far brighter)


def test_sampling_mix() -> None:
    rng = np.random.default_rng(5)
    scenes = [sample_scene(rng, CLIPS[0]) for _ in range(800)]
    two = [s for s in scenes if len(s.objects) == 2]
    assert 0.4 < len(two) / len(scenes) < 0.6
    assert 0.4 < sum(s.camera == "static" for s in scenes) / len(scenes) < 0.6
    assert 0.3 < sum(s.relation is not None for s in two) / len(two) < 0.6
    assert len({s.camera for s in scenes}) == 7


def _read_meta(d: Path) -> list[dict]:
    return [json.loads(line) for line in (d / "metadata.jsonl").read_text().splitlines()]


BUCKETS = [ClipSpec(32, 32, 5, 8.0), ClipSpec(32, 48, 9, 8.0)]


def test_write_dataset_contract_and_determinism(tmp_path: Path) -> None:
    a = write_dataset(tmp_path / "a", 6, BUCKETS, seed=11, progress=False)
    b = write_dataset(tmp_path / "b", 6, BUCKETS, seed=11, progress=False)
    meta = _read_meta(a)
    assert meta == _read_meta(b)
    assert len(meta) == 6 and {m["width"] for m in meta} <= {32, 48}
    for i, m in enumerate(meta):
        assert m["video"] == f"clips/{i:06d}.mp4"
        moving = m["scene"]["camera"] != "static"
        assert set(m) == {"video", "captions", "height", "width", "num_frames", "fps", "scene", "seed", "split"} | ({"captions_without_camera"} if moving else set())
        assert len(set(m["captions"])) >= 3 and m["split"] == "train"
        if moving:
            assert len(set(m["captions_without_camera"])) >= 3 and not any("camera" in c or "zoom" in c for c in m["captions_without_camera"])
        frames, fps = read_video(a / m["video"])
        assert frames.shape == (m["num_frames"], m["height"], m["width"], 3) and fps == m["fps"]
        scene = Scene.from_dict(m["scene"])
        clip = ClipSpec(m["height"], m["width"], m["num_frames"], m["fps"])
        expected = render(scene, clip, m["seed"])
        # Lossy H.264 (yuv420p halves chroma resolution, harsh at 32 px) of the same pixels.
        assert np.abs(frames.astype(int) - expected).mean() < 8
        assert np.abs(frames[:, 8:-8, 8:-8].astype(int) - expected[:, 8:-8, 8:-8]).max(axis=-1).mean() < 10
    c = write_dataset(tmp_path / "c", 6, BUCKETS, seed=12, progress=False)
    assert _read_meta(c) != meta


def test_training_dataset_has_no_heldout_pair(tmp_path: Path) -> None:
    out = write_dataset(tmp_path / "d", 60, [ClipSpec(16, 16, 1, 8.0)], seed=3, progress=False)
    scenes = [Scene.from_dict(m["scene"]) for m in _read_meta(out)]
    assert len(scenes) == 60 and not any(HELD_OUT.scene_is_heldout(s) for s in scenes)
    held = write_dataset(tmp_path / "h", 20, [ClipSpec(16, 16, 1, 8.0)], seed=3, heldout="only", progress=False)
    assert all(HELD_OUT.scene_is_heldout(Scene.from_dict(m["scene"])) for m in _read_meta(held))
    assert {m["split"] for m in _read_meta(held)} == {"heldout"}


def test_a_focused_dataset_holds_only_its_slice_of_the_world(tmp_path: Path) -> None:
    """focus="one-object": every scene has one object, a static camera and the normal speed; the setting is
    recorded, so resuming without it is refused; the whole world has other scenes."""
    out = write_dataset(tmp_path / "f", 12, [ClipSpec(16, 16, 1, 8.0)], seed=3, progress=False, focus="one-object")
    scenes = [Scene.from_dict(m["scene"]) for m in _read_meta(out)]
    assert len(scenes) == 12 and all(len(s.objects) == 1 and s.camera == "static" and s.objects[0].speed == "normal" for s in scenes)
    assert len({s.objects[0].motion for s in scenes}) > 2  # every motion stays in the slice
    whole = [Scene.from_dict(m["scene"]) for m in _read_meta(write_dataset(tmp_path / "w", 12, [ClipSpec(16, 16, 1, 8.0)], seed=3, progress=False))]
    assert not all(len(s.objects) == 1 and s.camera == "static" for s in whole)
    assert json.loads((out / "dataset.json").read_text())["focus"] == "one-object"
    with pytest.raises(KinemaInputError, match="other settings"):
        write_dataset(out, 12, [ClipSpec(16, 16, 1, 8.0)], seed=3, progress=False)
    moving = write_dataset(tmp_path / "t", 12, [ClipSpec(16, 16, 1, 8.0)], seed=3, progress=False, focus="one-object-translation")
    assert {m["scene"]["objects"][0]["motion"] for m in _read_meta(moving)} <= {"still", "left", "right", "up", "down"}
    camera = [Scene.from_dict(m["scene"]) for m in _read_meta(write_dataset(tmp_path / "c", 12, [ClipSpec(16, 16, 1, 8.0)], seed=3, progress=False, focus="camera-moves"))]
    assert all(len(s.objects) == 1 and s.objects[0].motion == "still" and s.camera != "static" for s in camera)
    assert len({s.camera for s in camera}) > 2  # every camera move stays in the slice


def test_a_mixed_focus_takes_its_slices_in_turn(tmp_path: Path) -> None:
    """focus="a+b": even clips from slice a, odd ones from b, whatever share of the world each is; an
    unknown part, or the whole world inside a mix, is refused by name before anything is written."""
    mixed = [Scene.from_dict(m["scene"]) for m in _read_meta(write_dataset(tmp_path / "m", 10, [ClipSpec(16, 16, 1, 8.0)], seed=3, progress=False, focus="one-object-translation+camera-moves"))]
    assert all(s.camera == "static" and s.objects[0].motion in TRANSLATIONS for s in mixed[0::2])
    assert all(s.camera != "static" and s.objects[0].motion == "still" for s in mixed[1::2])
    assert focus_parts("camera-moves+camera-moves+one-object") == ("camera-moves", "camera-moves", "one-object")
    for bad in ("one-object+nope", "+one-object"):
        with pytest.raises(KinemaInputError, match="focus must be one of"):
            write_dataset(tmp_path / "bad", 2, [ClipSpec(16, 16, 1, 8.0)], seed=3, progress=False, focus=bad)
    assert not (tmp_path / "bad").exists()


def test_resume_renders_only_missing_clips(tmp_path: Path) -> None:
    out = write_dataset(tmp_path / "r", 4, BUCKETS, seed=5, progress=False)
    before = _read_meta(out)
    kept = out / "clips" / "000001.mp4"
    kept_bytes = kept.read_bytes()
    kept.write_bytes(b"marker: must not be re-rendered")
    (out / "clips" / "000002.mp4").unlink()
    (out / "metadata.jsonl").unlink()
    write_dataset(out, 4, BUCKETS, seed=5, progress=False)
    assert _read_meta(out) == before
    assert kept.read_bytes() == b"marker: must not be re-rendered"
    assert (out / "clips" / "000002.mp4").exists()
    kept.write_bytes(kept_bytes)
    with pytest.raises(KinemaInputError, match="other settings"):
        write_dataset(out, 4, BUCKETS, seed=6, progress=False)


def test_parallel_matches_serial(tmp_path: Path) -> None:
    serial = write_dataset(tmp_path / "s", 4, BUCKETS, seed=9, progress=False)
    parallel = write_dataset(tmp_path / "p", 4, BUCKETS, seed=9, workers=2, progress=False)
    assert _read_meta(serial) == _read_meta(parallel)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"num_clips": 0}, "num_clips"), ({"buckets": []}, "bucket"), ({"bucket_weights": [1.0]}, "bucket_weights"), ({"heldout": "no"}, "heldout"), ({"focus": "tiny"}, "focus must be one of")],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"out_dir": tmp_path / "x", "num_clips": 2, "buckets": BUCKETS, "seed": 0, "progress": False} | kwargs
    with pytest.raises(KinemaInputError, match=match):
        write_dataset(**args)
