"""Image-to-video, last frame, keyframes, loop, extension, long video, camera, interpolation on a tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sys

import torch

from conftest import build_tiny_model
from kinema import Pipeline
from kinema import cli
from kinema.engine.backend import TASKS
from kinema.errors import KinemaInputError
from kinema.models.io import load_pretrained
from kinema.train.data import to_model_video
from kinema.video.io import read_video, write_video


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread: None) -> None:
    """Tiny models on one thread."""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(
        tmp_path_factory.mktemp("cond"), dit_options={"camera_dim": 4}, tasks=list(TASKS), window_frames=9, max_seconds=1.0, max_total_seconds=6.0, steps=2
    )


@pytest.fixture(scope="module")
def pipe(model_dir: Path) -> Pipeline:
    return Pipeline.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    img = np.zeros((48, 48, 3), np.uint8)
    img[10:30, 12:34] = rng.integers(100, 255, 3)
    path = tmp_path_factory.mktemp("img") / "first.png"
    from PIL import Image

    Image.fromarray(img).save(path)
    return path


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_image_to_video_keeps_the_first_frame_exactly(pipe: Pipeline, model_dir: Path, image: Path) -> None:
    video = pipe.generate("a red circle", seed=0, image=str(image))
    vae = load_pretrained(model_dir / "vae")
    from kinema.conditioning.images import fit_frames, load_image

    fitted = fit_frames(load_image(image), 32, 32, "fill")
    with torch.no_grad():
        round_trip = vae.decode(vae.encode(to_model_video(fitted[None])))
    expected = ((round_trip[0, :, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert _psnr(video.frames[0], expected) > 40  # frame 0 is the image after the VAE round trip
    plain = pipe.generate("a red circle", seed=0)
    assert not np.array_equal(plain.frames[0], video.frames[0])


def test_python_api_takes_arrays(pipe: Pipeline) -> None:
    img = np.full((20, 30, 3), 128, np.uint8)
    video = pipe.generate("a box", seed=1, image=img, image_fit="pad")
    assert video.frames.shape == (8, 32, 32, 3)


def test_last_image_delivers_every_generated_frame(pipe: Pipeline, image: Path) -> None:
    video = pipe.generate("a ball", seed=0, last_image=str(image))
    assert video.num_frames == 9  # 1 + 4k: the conditioned frame is the last one
    resolved = pipe.validate(pipe_request("a ball", last_image=str(image)))
    assert resolved.task == "last-frame" and resolved.images[0].frame == 8


def pipe_request(prompt: str, **options: object):
    from kinema.request import make_request

    return make_request(prompt=prompt, **options)


def test_keyframes_loop_and_their_errors(pipe: Pipeline, image: Path) -> None:
    r = pipe.validate(pipe_request("x", keyframes=[{"image": str(image), "seconds": 0.5}]))
    assert [(g.frame, g.role) for g in r.images] == [(4, "keyframe")]
    with pytest.raises(KinemaInputError, match="keyframe at 3 s is past the end"):
        pipe.validate(pipe_request("x", keyframes=[{"image": str(image), "seconds": 3.0}]))
    with pytest.raises(KinemaInputError, match="loop and last_image contradict"):
        pipe.validate(pipe_request("x", loop=True, last_image=str(image)))
    video = pipe.generate("a ball", seed=2, loop=True)
    assert video.num_frames == 9
    looped = pipe.generate("a ball", seed=2, loop=True, image=str(image))
    assert looped.num_frames == 9


def test_long_video_chains_windows_and_streams(pipe: Pipeline) -> None:
    steps: list[tuple[int, int]] = []
    resolved = pipe.validate(pipe_request("a star", seed=0, seconds=3.0))
    chunks = list(pipe.stream(resolved, progress=lambda s, n: steps.append((s, n))))
    assert len(chunks) > 1  # written window by window
    frames = np.concatenate(chunks)
    assert frames.shape == (24, 32, 32, 3)
    assert steps[-1][0] == steps[-1][1] and steps[-1][1] % 2 == 0 and steps[-1][1] > 2  # all windows' steps
    whole = pipe.generate("a star", seed=0, seconds=3.0)
    assert np.array_equal(whole.frames, frames)
    with pytest.raises(KinemaInputError, match="limit for this model is 6"):
        pipe.validate(pipe_request("a star", seconds=7.0))


def test_extension_appends_to_the_given_video(pipe: Pipeline, tmp_path: Path) -> None:
    src = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    path = write_video(src, tmp_path / "in.mp4", fps=8.0)
    video = pipe.generate("a ball", seed=0, video=str(path), seconds=1.0)
    assert video.num_frames == 16  # 8 given + 8 new
    given, _ = read_video(path)
    assert np.array_equal(video.frames[:8], given)
    with pytest.raises(KinemaInputError, match="drop image/loop"):
        pipe_request("x", video=str(path), loop=True)


def test_hand_off_fades_the_seam_residual_out() -> None:
    from kinema.engine.native import hand_off

    frames = np.full((10, 4, 4, 3), 100, np.uint8)
    exact, decoded = np.full((4, 4, 3), 130, np.uint8), np.full((4, 4, 3), 100, np.uint8)
    out = hand_off(frames, exact, decoded, span=5)
    assert out[:, 0, 0, 0].tolist() == [125, 120, 115, 110, 105, 100, 100, 100, 100, 100]  # 30 * (1 - i/6)
    assert np.array_equal(frames, np.full_like(frames, 100))  # the input is not touched
    bright = hand_off(np.full((2, 1, 1, 3), 250, np.uint8), np.full((1, 1, 3), 255, np.uint8), np.zeros((1, 1, 3), np.uint8), 2)
    assert bright.max() == 255  # clipped, not wrapped
    assert hand_off(frames[:0], exact, decoded, 5).shape == (0, 4, 4, 3)


def test_extension_seam_continues_the_given_video(pipe: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kinema.engine.native as native

    src = np.full((8, 32, 32, 3), 90, np.uint8)
    src[:, 8:20, 10:22] = (200, 60, 40)
    path = write_video(src, tmp_path / "in.mp4", fps=8.0)
    span = native.HAND_OFF_FRAMES
    smoothed = pipe.generate("a ball", seed=0, video=str(path), seconds=2.0).frames
    monkeypatch.setattr(native, "HAND_OFF_FRAMES", 0)
    cut = pipe.generate("a ball", seed=0, video=str(path), seconds=2.0).frames
    assert np.array_equal(smoothed[:8], cut[:8])  # the given video is kept exactly either way
    assert not np.array_equal(smoothed[8 : 8 + span], cut[8 : 8 + span])
    assert np.array_equal(smoothed[8 + span :], cut[8 + span :])  # past the span, nothing changes

    def jump(v: np.ndarray) -> float:
        return float(np.abs(v[8].astype(np.float32) - v[7].astype(np.float32)).mean())

    assert jump(smoothed) < jump(cut)


def test_interpolation_and_fps(pipe: Pipeline) -> None:
    r = pipe.validate(pipe_request("x", fps=24.0))
    assert (r.interpolate, r.generation_fps, r.num_frames) == (3, 8.0, 24) and r.notes
    video = pipe.generate("x", seed=0, interpolate=2)
    assert video.fps == 16.0 and video.num_frames == 16
    r = pipe.validate(pipe_request("x", fps=30.0, seconds=1.0))
    assert (r.interpolate, r.generation_fps) == (4, 7.5)


def test_camera_changes_the_video_and_aspect_ratio_snaps(pipe: Pipeline) -> None:
    a = pipe.generate("a ball", seed=0, camera={"pan": 1.0}).frames
    b = pipe.generate("a ball", seed=0, camera={"pan": -1.0}).frames
    assert not np.array_equal(a, b)
    r = pipe.validate(pipe_request("x", aspect_ratio="16:9"))
    assert (r.width, r.height) == (64, 32) and "snapped" in r.notes[0]
    r = pipe.validate(pipe_request("x", aspect_ratio="1:1"))
    assert (r.width, r.height) == (32, 32) and not r.notes


def test_a_text_only_model_refuses_conditioning(tmp_path: Path, image: Path) -> None:
    plain = Pipeline.from_pretrained(build_tiny_model(tmp_path / "plain"))
    with pytest.raises(KinemaInputError, match="does not support image to video"):
        plain.validate(pipe_request("x", image=str(image)))
    with pytest.raises(KinemaInputError, match="does not support camera control"):
        plain.validate(pipe_request("x", camera={"zoom": 1.0}))
    assert plain.backend._dit is None  # refused before any weights loaded


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """`kinema ...` through the real entry point (errors become exit code 2); (code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["kinema", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return int(exc.value.code or 0), capsys.readouterr().err


def test_cli_conditioning_flags_and_bad_input(model_dir: Path, image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c.mp4"
    args = ["generate", "a ball", "--model", str(model_dir), "-o", str(out), "--seed", "1", "--no-progress"]
    code, err = _run(monkeypatch, capsys, *args, "--image", str(image), "--camera", "pan=1,zoom=0.5", "--interpolate", "2")
    assert code == 0, err
    frames, fps = read_video(out)
    assert frames.shape == (16, 32, 32, 3) and fps == pytest.approx(16.0)
    (tmp_path / "bad.png").write_text("no")
    for extra, needle in [
        (["--image", str(tmp_path / "bad.png")], "cannot read"),
        (["--keyframe", f"{image}@9"], "past the end"),
        (["--keyframe", "nope"], "IMAGE@SECONDS"),
        (["--camera", "roll=1"], "pan=, tilt=, zoom="),
        (["--loop", "--last-image", str(image)], "contradict"),
        (["--video", str(tmp_path / "bad.png")], "video"),
    ]:
        target = tmp_path / "never.mp4"
        code, err = _run(monkeypatch, capsys, "generate", "a ball", "--model", str(model_dir), "-o", str(target), "--no-progress", *extra)
        assert code == 2, (extra, err)
        assert needle in err and len(err.strip().splitlines()) == 1 and not target.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]
