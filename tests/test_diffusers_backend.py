"""The diffusers backend end to end on tiny random pipelines of every family, offline.

Each family's components are built from configs in memory (kinema.engine.diffusers.tiny),
saved with save_pretrained, loaded back through `Pipeline.from_model`, and every mode the
family supports is run to an MP4 whose frame count, size and fps are read back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("diffusers")

from kinema.engine.diffusers.backend import DiffusersBackend  # noqa: E402
from kinema.engine.diffusers.memory import DiffusersOptions  # noqa: E402
from kinema.engine.diffusers.tiny import save_tiny_pipeline  # noqa: E402
from kinema.engine.pipeline import Pipeline  # noqa: E402
from kinema.errors import KinemaInputError  # noqa: E402
from kinema.request import make_request  # noqa: E402
from kinema.video.io import read_video, write_video  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tiny pipeline, saved once for the module."""
    root = tmp_path_factory.mktemp("tiny_diffusers")
    names = ("wan-t2v", "wan-i2v", "wan22-i2v", "wan22-ti2v", "ltx", "cogvideox-t2v", "cogvideox-i2v", "hunyuan-t2v", "hunyuan-framepack",
             "skyreels-t2v", "skyreels-i2v", "skyreels-df", "mochi")  # fmt: skip
    return {n: save_tiny_pipeline(n, root / n) for n in names}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A red first frame, a blue last frame, a green keyframe and a short clip to extend."""
    root = tmp_path_factory.mktemp("pictures")
    out = {}
    for name, rgb in (("red", (220, 20, 20)), ("blue", (20, 20, 220)), ("green", (20, 200, 20))):
        px = np.zeros((48, 48, 3), np.uint8)
        px[...] = rgb
        px[8:20, 8:20] = 255
        Image.fromarray(px).save(root / f"{name}.png")
        out[name] = str(root / f"{name}.png")
    clip = np.zeros((9, 32, 32, 3), np.uint8)
    for t in range(9):
        clip[t, :, : 4 * (t + 1)] = (200, 200, 0)
    out["clip"] = str(write_video(clip, root / "clip.mp4", fps=16.0))
    return out


def _size(name: str) -> dict[str, int]:
    return {"width": 16, "height": 16} if name == "cogvideox-i2v" else {"width": 32, "height": 32}


# (tiny pipeline, mode, extra request fields) for every mode each family supports.
MODES = [
    ("wan-t2v", "text-to-video", {}),
    ("wan-i2v", "image-to-video", {"image": "red"}),
    ("wan-i2v", "video-extension", {"video": "clip"}),
    ("wan22-i2v", "image-to-video", {"image": "red"}),
    ("wan22-i2v", "first-last-frame", {"image": "red", "last_image": "blue"}),
    ("wan22-i2v", "loop", {"image": "red", "loop": True}),
    ("wan22-ti2v", "text-to-video", {}),
    ("wan22-ti2v", "image-to-video", {"image": "red"}),
    ("ltx", "text-to-video", {}),
    ("ltx", "image-to-video", {"image": "red"}),
    ("ltx", "first-last-frame", {"image": "red", "last_image": "blue"}),
    ("ltx", "last-frame", {"last_image": "blue"}),
    ("ltx", "keyframes", {"image": "red", "keyframes": [{"image": "green", "seconds": 0.16}]}),
    ("ltx", "video-extension", {"video": "clip"}),
    ("cogvideox-t2v", "text-to-video", {}),
    ("cogvideox-i2v", "image-to-video", {"image": "red"}),
    ("cogvideox-i2v", "video-extension", {"video": "clip"}),
    ("hunyuan-t2v", "text-to-video", {}),
    ("hunyuan-framepack", "image-to-video", {"image": "red"}),
    ("hunyuan-framepack", "first-last-frame", {"image": "red", "last_image": "blue"}),
    ("skyreels-t2v", "text-to-video", {}),
    ("skyreels-i2v", "image-to-video", {"image": "red"}),
    ("skyreels-i2v", "video-extension", {"video": "clip"}),
    ("skyreels-df", "text-to-video", {}),
    ("skyreels-df", "image-to-video", {"image": "red"}),
    ("skyreels-df", "first-last-frame", {"image": "red", "last_image": "blue"}),
    ("skyreels-df", "video-extension", {"video": "clip"}),
    ("mochi", "text-to-video", {}),
]


def _fields(extra: dict, pictures: dict[str, str]) -> dict:
    out = {}
    for k, v in extra.items():
        if k == "keyframes":
            out[k] = [{**kf, "image": pictures[kf["image"]]} for kf in v]
        elif k in ("image", "last_image", "video"):
            out[k] = pictures[v]
        else:
            out[k] = v
    return out


@pytest.mark.parametrize(("name", "mode", "extra"), MODES, ids=[f"{n}-{m}" for n, m, _ in MODES])
def test_every_mode_makes_an_mp4_of_the_right_shape(tiny_dirs: dict[str, Path], pictures: dict[str, str], tmp_path: Path, name: str, mode: str, extra: dict) -> None:
    pipe = Pipeline.from_model(tiny_dirs[name])
    fps = pipe.capabilities.default_fps
    seconds = 8 / fps
    request = make_request(prompt="a red ball", seed=3, steps=2, seconds=seconds, **_size(name), **_fields(extra, pictures))
    resolved = pipe.validate(request)
    assert resolved.task == (mode if mode != "loop" else "first-last-frame")
    steps_seen: list[tuple[int, int]] = []
    video = pipe.run(resolved, progress=lambda s, t: steps_seen.append((s, t)))
    path = video.save(tmp_path / "out.mp4")
    frames, got_fps = read_video(path)
    assert frames.shape == (resolved.num_frames, _size(name)["height"], _size(name)["width"], 3)
    assert got_fps == pytest.approx(fps, rel=1e-3)
    assert steps_seen and steps_seen[-1][0] == steps_seen[-1][1]  # the bar ends full
    if mode == "video-extension":  # the clip's last frames (resampled to the model's fps) lead the output
        tail = resolved.extend_frames
        assert np.abs(frames[: len(tail)].astype(int) - tail.astype(int)).mean() < 6  # an H.264 round trip


def test_seed_decides_the_video(tiny_dirs: dict[str, Path]) -> None:
    pipe = Pipeline.from_model(tiny_dirs["wan-t2v"])
    a = pipe.generate("a ball", seed=1, steps=2, seconds=0.5, width=32, height=32).frames
    b = pipe.generate("a ball", seed=1, steps=2, seconds=0.5, width=32, height=32).frames
    c = pipe.generate("a ball", seed=2, steps=2, seconds=0.5, width=32, height=32).frames
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sizes_and_frame_counts_snap_and_say_so(tiny_dirs: dict[str, Path]) -> None:
    ltx = Pipeline.from_model(tiny_dirs["ltx"])
    resolved = ltx.validate(make_request(prompt="x", width=40, height=20, seconds=0.4, fps=25))
    assert (resolved.width, resolved.height) == (64, 32)  # LTX: multiples of 32, rounded up
    assert resolved.generated_frames == 13 and resolved.num_frames == 10  # 1 + 4k for the tiny VAE's 4x time stride
    assert any("snapped to 64x32" in n for n in resolved.notes)
    assert any("generating 13" in n for n in resolved.notes)
    wan = Pipeline.from_model(tiny_dirs["wan-t2v"])
    r = wan.validate(make_request(prompt="x", aspect_ratio="16:9", seconds=1))
    assert r.width % 16 == 0 and r.height % 16 == 0 and abs(r.width / r.height - 16 / 9) < 0.05
    assert r.generated_frames == 17  # 16 frames asked at 16 fps -> 1 + 4k


def test_long_video_chains_windows(tiny_dirs: dict[str, Path], pictures: dict[str, str], tmp_path: Path) -> None:
    backend = DiffusersBackend(tiny_dirs["ltx"], options=DiffusersOptions(window_frames=9))
    pipe = Pipeline(backend)
    resolved = pipe.validate(make_request(prompt="a ball", image=pictures["red"], last_image=pictures["blue"], seconds=1.0, fps=25, width=32, height=32, steps=2, seed=0))
    plan = backend._window_plan(resolved.generated_frames)
    assert len(plan) >= 3 and plan[0] == (9, 0) and all(shared == 5 for _, shared in plan[1:])
    assert sum(length - shared for length, shared in plan) == resolved.generated_frames  # the last image lands on the last frame
    video = pipe.run(resolved)
    assert video.frames.shape[0] == resolved.num_frames == resolved.generated_frames
    assert backend.cost(resolved).windows == len(plan)

    wan = DiffusersBackend(tiny_dirs["wan-i2v"], options=DiffusersOptions(window_frames=9))
    r = Pipeline(wan).validate(make_request(prompt="a ball", image=pictures["red"], seconds=1.5, width=32, height=32, steps=2))
    assert len(wan._window_plan(r.generated_frames)) == 3
    assert Pipeline(wan).run(r).frames.shape[0] == r.num_frames


def test_interpolation_raises_the_frame_rate(tiny_dirs: dict[str, Path]) -> None:
    pipe = Pipeline.from_model(tiny_dirs["wan-t2v"])
    video = pipe.generate("a ball", seed=0, steps=2, seconds=0.5, fps=32, width=32, height=32)
    assert video.fps == 32 and video.num_frames == 16  # 8 frames at 16 fps, x2


@pytest.mark.parametrize(
    ("name", "fields", "needle"),
    [
        ("wan-t2v", {"image": "red"}, "does not support image to video"),
        ("cogvideox-t2v", {"last_image": "blue", "image": "red"}, "does not support first last frame"),
        ("wan-i2v", {}, "does not support text to video"),
        ("wan-i2v", {"image": "red", "keyframes": [{"image": "green", "seconds": 0.2}]}, "does not support keyframes"),
        ("hunyuan-t2v", {"negative_prompt": "blurry"}, "negative prompts"),
        ("cogvideox-i2v", {"image": "red", "width": 32, "height": 32}, "one size only"),
        ("cogvideox-t2v", {"seconds": 30.0}, "too long"),
        ("wan-t2v", {"fps": 24.0}, "fps 24"),
        ("ltx", {"camera": {"pan": 1.0}}, "camera"),
        ("wan22-i2v", {"loop": True}, "needs the first image"),
        ("wan-i2v", {"image": "red", "last_image": "blue"}, "does not support first last frame"),
        ("mochi", {"image": "red"}, "does not support image to video"),
        ("skyreels-t2v", {"image": "red"}, "does not support image to video"),
        ("skyreels-i2v", {"image": "red", "last_image": "blue"}, "does not support first last frame"),
        # long videos and extension on checkpoints that cannot chain windows: refused by the capability map
        ("wan-t2v", {"video": "clip"}, "does not support video extension"),
        ("mochi", {"video": "clip"}, "does not support video extension"),
        ("hunyuan-t2v", {"video": "clip"}, "does not support video extension"),
        ("mochi", {"seconds": 30.0}, "too long; the limit for this model is 5.4"),
        ("skyreels-t2v", {"seconds": 30.0}, "too long; the limit for this model is 4"),
        ("hunyuan-t2v", {"seconds": 30.0}, "too long"),
    ],
)
def test_a_mode_the_family_lacks_is_refused_before_weights_load(tiny_dirs: dict[str, Path], pictures: dict[str, str], name: str, fields: dict, needle: str) -> None:
    backend = DiffusersBackend(tiny_dirs[name])
    fields = {"width": _size(name)["width"], "height": _size(name)["height"], **fields}
    with pytest.raises(KinemaInputError, match=needle) as err:
        backend.validate(make_request(prompt="a ball", **_fields(fields, pictures)))
    assert str(tiny_dirs[name]) in str(err.value)  # names the model
    assert backend._pipe is None  # nothing heavy loaded


def test_prompt_token_limit_is_checked(tiny_dirs: dict[str, Path]) -> None:
    backend = DiffusersBackend(tiny_dirs["cogvideox-t2v"])  # the tiny transformer reads 16 text tokens
    with pytest.raises(KinemaInputError, match="the prompt is .* tokens; the limit is 16"):
        backend.validate(make_request(prompt="a red ball rolls slowly across the floor", width=32, height=32))


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [
        ("wan-i2v", {"image": "red"}, {"image": "blue"}),
        ("wan22-i2v", {"image": "red"}, {"image": "blue"}),
        ("ltx", {"image": "red"}, {"image": "blue"}),
        ("cogvideox-i2v", {"image": "red"}, {"image": "blue"}),
        ("hunyuan-framepack", {"image": "red"}, {"image": "blue"}),
        ("skyreels-i2v", {"image": "red"}, {"image": "blue"}),
        ("skyreels-df", {"image": "red"}, {"image": "blue"}),
    ],
)
def test_the_first_frame_changes_the_video(tiny_dirs: dict[str, Path], pictures: dict[str, str], name: str, a: dict, b: dict) -> None:
    """Same seed and prompt, another first image: the video changes (the image is not dropped)."""
    pipe = Pipeline.from_model(tiny_dirs[name])
    fps = pipe.capabilities.default_fps
    common = dict(prompt="a ball", seed=5, steps=2, seconds=8 / fps, **_size(name))
    va = pipe.run(pipe.validate(make_request(**common, **_fields(a, pictures)))).frames
    vb = pipe.run(pipe.validate(make_request(**common, **_fields(b, pictures)))).frames
    assert va.shape == vb.shape
    assert not np.array_equal(va, vb)


class _Recorder:
    """Stands in for a loaded diffusers pipeline: records the call's arguments, then runs it."""

    def __init__(self, pipe: object, calls: list[tuple[str, dict]]):
        self.pipe, self.calls = pipe, calls

    def __call__(self, **kwargs: object) -> object:
        self.calls.append((type(self.pipe).__name__, kwargs))
        return self.pipe(**kwargs)


def _recorded(backend: DiffusersBackend, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    calls: list[tuple[str, dict]] = []
    real = backend.pipeline
    monkeypatch.setattr(backend, "pipeline", lambda cls: _Recorder(real(cls), calls))
    return calls


def _pixels(pil: object) -> np.ndarray:
    return np.asarray(pil)


def test_last_frames_and_keyframes_reach_the_pipeline(tiny_dirs: dict[str, Path], pictures: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The random tiny VAEs barely respond to a last frame, so check what each pipeline is handed."""
    for name in ("wan22-i2v", "hunyuan-framepack"):
        backend = DiffusersBackend(tiny_dirs[name])
        calls = _recorded(backend, monkeypatch)
        resolved = backend.validate(make_request(prompt="a ball", image=pictures["red"], last_image=pictures["blue"], steps=2, seconds=0.3, width=32, height=32))
        backend.generate(resolved)
        (cls, kwargs), = calls
        assert cls in ("WanImageToVideoPipeline", "HunyuanVideoFramepackPipeline")
        assert np.array_equal(_pixels(kwargs["image"]), resolved.images[0].pixels)
        assert np.array_equal(_pixels(kwargs["last_image"]), resolved.images[-1].pixels)
    backend = DiffusersBackend(tiny_dirs["ltx"])
    calls = _recorded(backend, monkeypatch)
    request = make_request(prompt="a ball", image=pictures["red"], last_image=pictures["blue"], keyframes=[{"image": pictures["green"], "seconds": 0.16}],
                           steps=2, seconds=0.5, fps=25, width=32, height=32)  # fmt: skip
    resolved = backend.validate(request)
    backend.generate(resolved)
    (cls, kwargs), = calls
    assert cls == "LTXConditionPipeline"
    placed = sorted((c.frame_index, tuple(_pixels(c.image)[16, 2])) for c in kwargs["conditions"])
    expected = sorted((g.frame, tuple(g.pixels[16, 2])) for g in resolved.images)
    assert placed == expected and placed[-1][0] == kwargs["num_frames"] - 1


def test_chained_windows_continue_from_the_previous_window(tiny_dirs: dict[str, Path], pictures: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, shared in (("wan-i2v", 1), ("ltx", 5), ("skyreels-df", 1)):
        backend = DiffusersBackend(tiny_dirs[name], options=DiffusersOptions(window_frames=9))
        calls = _recorded(backend, monkeypatch)
        fps = backend.capabilities().default_fps
        resolved = backend.validate(make_request(prompt="a ball", image=pictures["red"], steps=2, seconds=20 / fps, width=32, height=32))
        video = backend.generate(resolved)
        assert len(calls) == len(backend._window_plan(resolved.generated_frames)) >= 2
        for (_, kwargs) in calls[1:]:
            if name == "ltx":
                (cond,) = kwargs["conditions"]
                context = np.stack([_pixels(f) for f in cond.video])
            else:
                context = _pixels(kwargs["image"])[None]
            assert len(context) == shared
        # the second window starts from frames the first one made (exactly: they are handed over as pixels)
        first_window_end = video.frames[9 - shared : 9]
        second = calls[1][1]
        handed = np.stack([_pixels(f) for f in second["conditions"][0].video]) if name == "ltx" else _pixels(second["image"])[None]
        assert np.array_equal(handed, first_window_end)


def test_long_video_refusal_happens_before_any_weights_load(tiny_dirs: dict[str, Path], pictures: dict[str, str]) -> None:
    """What the capability map says about length is what validate enforces: one window for a checkpoint that cannot chain."""
    for name in ("wan-t2v", "cogvideox-t2v", "hunyuan-t2v", "skyreels-t2v", "mochi"):
        backend = DiffusersBackend(tiny_dirs[name])
        caps = backend.capabilities()
        assert "long-video" not in caps.tasks and "video-extension" not in caps.tasks and caps.max_window_seconds is None
        window = (backend.geometry.max_frames - 1) / backend.geometry.fps
        assert caps.max_seconds == pytest.approx(window)
        with pytest.raises(KinemaInputError, match=f"model {tiny_dirs[name]}: seconds .* is too long"):
            backend.validate(make_request(prompt="a ball", seconds=window + 1, width=32, height=32))
        assert backend._pipe is None
    for name in ("wan-i2v", "wan22-ti2v", "ltx", "cogvideox-i2v", "skyreels-i2v", "skyreels-df"):
        caps = DiffusersBackend(tiny_dirs[name]).capabilities()
        assert {"long-video", "video-extension"} <= caps.tasks and caps.max_seconds == 120.0


def test_diffusion_forcing_long_video_and_extension_chain_windows(tiny_dirs: dict[str, Path], pictures: dict[str, str]) -> None:
    backend = DiffusersBackend(tiny_dirs["skyreels-df"], options=DiffusersOptions(window_frames=9))
    pipe = Pipeline(backend)
    resolved = pipe.validate(make_request(prompt="a ball", seconds=1.0, width=32, height=32, steps=2, seed=0))  # 24 frames at 24 fps
    plan = backend._window_plan(resolved.generated_frames)
    assert plan == [(9, 0), (9, 1), (9, 1)]
    assert pipe.run(resolved).frames.shape == (24, 32, 32, 3)
    extended = pipe.validate(make_request(prompt="a ball", video=pictures["clip"], seconds=0.5, width=32, height=32, steps=2, seed=0))
    video = pipe.run(extended)
    assert extended.task == "video-extension" and video.frames.shape[0] == extended.num_frames > len(extended.extend_frames)


def test_a_storyboard_renders_with_a_diffusers_model(tmp_path: Path) -> None:
    """The studio path on a diffusers backend: subject reference frame, a continuous shot from the previous
    shot's last frame (image conditioning), caching by the model's id, and the film written."""
    from kinema.studio.cache import ShotCache
    from kinema.studio.load import parse_storyboard
    from kinema.studio.render import Studio

    directory = save_tiny_pipeline("wan22-ti2v", tmp_path / "ti2v")
    pipe = Pipeline.from_model(directory)
    board = parse_storyboard({
        "fps": 12, "aspect_ratio": "1:1", "output": {"height": 36},
        "subjects": [{"name": "red ball", "description": "a red circle"}],
        "shots": [
            {"prompt": "the red ball moves left", "duration": 0.25, "steps": 2},
            {"prompt": "the red ball again", "duration": 0.25, "continuous": True, "steps": 2},
        ],
    })  # fmt: skip
    studio = Studio(pipe, ShotCache(tmp_path / "cache"))
    plan = studio.plan(board)
    assert [s.condition for s in plan.shots] == ["subject", "previous"] and not plan.warnings
    assert plan.generation_size == (704, 704)  # the tiny checkpoint's square size (its default clip is 1280x704)
    # Priced from the family's cost model, as the service's quotes are.
    assert plan.flops == pytest.approx(sum(pipe.backend.cost(s.resolved).total_flops for s in plan.shots)) and plan.flops > 0
    report = studio.render(board, tmp_path / "film.mp4")
    frames, fps = read_video(report.output)
    assert fps == 12 and frames.shape == (6, 36, 36, 3) and report.generated == 2
    assert str(directory) in studio.fingerprint
    again = studio.render(board, tmp_path / "film2.mp4")
    assert again.generated == 0  # both shots from the cache
