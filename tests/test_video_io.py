"""Video io: round trips for MP4/GIF/PNG, browser-friendly MP4, atomic writes, early errors."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from kinema.errors import KinemaInputError
from kinema.video.io import VideoWriter, check_writable, read_video, write_video


def _frames(t: int = 6, h: int = 32, w: int = 48) -> np.ndarray:
    """Smooth moving gradients plus a flat block: easy for lossy codecs, distinct per frame."""
    y, x = np.mgrid[0:h, 0:w]
    out = np.zeros((t, h, w, 3), dtype=np.uint8)
    for i in range(t):
        out[i, ..., 0] = (x * 4 + i * 10) % 256
        out[i, ..., 1] = (y * 5) % 256
        out[i, ..., 2] = 40 + 20 * i
    return out


def test_mp4_round_trip_is_h264_yuv420p_faststart(tmp_path: Path) -> None:
    frames = _frames()
    path = write_video(frames, tmp_path / "a.mp4", fps=12.0)
    assert path == tmp_path / "a.mp4"
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        assert (s.codec_context.width, s.codec_context.height) == (48, 32)
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: playable while downloading
    back, fps = read_video(path)
    assert back.shape == frames.shape and fps == 12.0
    assert np.abs(back.astype(int) - frames).mean() < 3
    assert not np.array_equal(back[0], back[-1])


def test_fractional_fps(tmp_path: Path) -> None:
    _, fps = read_video(write_video(_frames(), tmp_path / "f.mp4", fps=7.5))
    assert fps == 7.5


def test_gif_round_trip(tmp_path: Path) -> None:
    frames = np.zeros((4, 16, 16, 3), dtype=np.uint8)
    for i in range(4):
        frames[i, :, : 4 * (i + 1)] = (230, 40, 40)
    path = write_video(frames, tmp_path / "a.gif", fps=10.0)
    back, fps = read_video(path)
    assert back.shape == frames.shape and np.array_equal(back, frames)
    assert fps == pytest.approx(10.0, rel=0.05)


@pytest.mark.parametrize("name,final", [("frames/", "frames"), ("frames", "frames"), ("frames.png", "frames")])
def test_png_directory_round_trip(tmp_path: Path, name: str, final: str) -> None:
    frames = _frames(t=3)
    path = write_video(frames, str(tmp_path / name) if name.endswith("/") else tmp_path / name, fps=6.0)
    assert path == tmp_path / final and path.is_dir()
    assert sorted(p.name for p in path.glob("*.png")) == ["000000.png", "000001.png", "000002.png"]
    back, fps = read_video(path)
    assert np.array_equal(back, frames) and fps == 6.0


def test_png_directory_is_replaced_whole(tmp_path: Path) -> None:
    write_video(_frames(t=4), tmp_path / "d", fps=6.0)
    write_video(_frames(t=2), tmp_path / "d", fps=6.0)
    assert len(list((tmp_path / "d").glob("*.png"))) == 2


def test_streaming_writer_in_chunks(tmp_path: Path) -> None:
    frames = _frames(t=9)
    with VideoWriter(tmp_path / "s.mp4", fps=8.0, width=48, height=32) as w:
        for chunk in (frames[:4], frames[4:8], frames[8]):
            w.write(chunk)
        assert not (tmp_path / "s.mp4").exists()  # nothing visible until close
    back, _ = read_video(tmp_path / "s.mp4")
    assert back.shape == frames.shape


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ""])
def test_failed_write_leaves_nothing(tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"out{suffix}"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(target, fps=8.0, width=48, height=32) as w:
            w.write(_frames(t=2))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_bad_frames_keep_the_old_file(tmp_path: Path) -> None:
    target = write_video(_frames(), tmp_path / "keep.mp4", fps=8.0)
    before = target.read_bytes()
    with pytest.raises(KinemaInputError, match="does not match"):
        with VideoWriter(target, fps=8.0, width=48, height=32) as w:
            w.write(_frames(t=2))
            w.write(_frames(t=2, h=16, w=16))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]


def test_input_errors(tmp_path: Path) -> None:
    with pytest.raises(KinemaInputError, match="unsupported video format"):
        write_video(_frames(), tmp_path / "a.avi", fps=8.0)
    with pytest.raises(KinemaInputError, match="even width and height"):
        write_video(_frames(w=47), tmp_path / "a.mp4", fps=8.0)
    with pytest.raises(KinemaInputError, match="uint8"):
        write_video(_frames().astype(np.float32), tmp_path / "a.mp4", fps=8.0)
    with pytest.raises(KinemaInputError, match="no frames"):
        VideoWriter(tmp_path / "e.mp4", fps=8.0, width=48, height=32).close()
    assert list(tmp_path.iterdir()) == []


def test_check_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(KinemaInputError, match="cannot write to"):
        check_writable(blocker / "sub" / "out.mp4")
    (tmp_path / "adir.mp4").mkdir()
    with pytest.raises(KinemaInputError, match="cannot write to"):
        check_writable(tmp_path / "adir.mp4")
    assert check_writable(tmp_path / "new" / "out.mp4") == tmp_path / "new" / "out.mp4"
    assert (tmp_path / "new").is_dir() and list((tmp_path / "new").iterdir()) == []


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(KinemaInputError, match="not found"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(KinemaInputError, match="cannot read"):
        read_video(tmp_path / "junk.mp4")
