"""`kinema generate` end to end: files written, seeds reported, bad input refused cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from kinema import cli
from kinema.video.io import read_video

from conftest import build_tiny_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread: None) -> None:
    """Every test here runs tiny models on one thread."""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_cli"))


def run(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Run `kinema ...` in this process through the real entry point; returns the exit code."""
    monkeypatch.setattr(sys, "argv", ["kinema", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return int(exc.value.code or 0)


def test_console_script_writes_playable_mp4(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "kinema.cli", "generate", "a red circle moving left", "-o", str(out), "--model", str(model_dir),
         "--seed", "5", "--width", "64", "--height", "32", "--seconds", "2", "--timings", "--no-progress"],
        capture_output=True, text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "seed: 5" in proc.stdout and str(out) in proc.stdout
    for stage in ("startup", "model load", "text encoding", "denoising", "vae decoding", "file encoding", "total"):
        assert stage in proc.stdout
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        frames = [f for f in container.decode(stream)]
    assert len(frames) == 16 and (frames[0].width, frames[0].height) == (64, 32)


def test_gif_and_png_outputs_and_random_seed_is_reported(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(monkeypatch, "generate", "a circle", "-o", str(tmp_path / "a.gif"), "--model", str(model_dir), "--no-progress") == 0
    out = capsys.readouterr().out
    seed = int(out.split("seed: ")[1].split()[0])
    frames, _ = read_video(tmp_path / "a.gif")
    assert frames.shape == (8, 32, 32, 3)
    # The reported seed reproduces the video exactly (PNG frames are lossless).
    assert run(monkeypatch, "generate", "a circle", "-o", str(tmp_path / "b"), "--model", str(model_dir), "--seed", str(seed), "--no-progress") == 0
    assert run(monkeypatch, "generate", "a circle", "-o", str(tmp_path / "c"), "--model", str(model_dir), "--seed", str(seed), "--no-progress") == 0
    b, fps = read_video(tmp_path / "b")
    c, _ = read_video(tmp_path / "c")
    assert b.shape == (8, 32, 32, 3) and fps == 8.0 and (b == c).all()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["", "-o", "{tmp}/x.mp4"], "prompt is empty"),
        (["   ", "-o", "{tmp}/x.mp4"], "prompt is empty"),
        (["word " * 300, "-o", "{tmp}/x.mp4"], "the limit is 1000"),
        (["a b c d e f g h i j k l m", "-o", "{tmp}/x.mp4"], "prompt is 14 tokens; the limit is 12"),
        (["a circle", "-o", "{tmp}/x.mp4", "--width", "40", "--height", "32"], "width 40 must be a multiple of 16"),
        (["a circle", "-o", "{tmp}/x.mp4", "--width", "48", "--height", "48"], "supported sizes"),
        (["a circle", "-o", "{tmp}/x.mp4", "--steps", "0"], "steps must be between 1 and 200"),
        (["a circle", "-o", "{tmp}/x.mp4", "--candidates", "0"], "candidates must be between 1 and 16"),
        (["a circle", "-o", "{tmp}/x.mp4", "--candidates", "3"], "candidates 3 is more than this model can use: it has no video-text matcher"),
        (["a circle", "-o", "{tmp}/x.mp4", "--steps", "-1"], "steps must be between 1 and 200"),
        (["a circle", "-o", "{tmp}/x.mp4", "--seconds", "0"], "seconds must be > 0"),
        (["a circle", "-o", "{tmp}/x.mp4", "--seconds", "-1"], "seconds must be > 0"),
        (["a circle", "-o", "{tmp}/x.mp4", "--seconds", "9"], "limit for this model is 2"),
        (["a circle", "-o", "{tmp}/x.mp4", "--fps", "0"], "fps must be > 0"),
        (["a circle", "-o", "{tmp}/x.mp4", "--fps", "-3"], "fps must be > 0"),
        (["a circle", "-o", "{tmp}/x.mp4", "--sampler", "ddim"], "choose one of euler, heun, dpmpp-2m"),
        (["a circle", "-o", "{tmp}/x.avi"], "unsupported video format '.avi'"),
        (["a circle", "-o", "{tmp}/missing/x.mp4"], "does not exist"),
        (["a circle", "-o", "/proc/x.mp4"], "cannot write to /proc/x.mp4"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_file(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code = run(monkeypatch, "generate", *args, "--model", str(model_dir), "--no-progress")
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []  # no output, no temp file, no directory made
    assert not Path("/proc/x.mp4").exists()


def test_missing_model_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(monkeypatch, "generate", "a circle", "-o", str(tmp_path / "x.mp4"), "--model", str(tmp_path / "none"))
    assert code == 2 and "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()
