"""Frame and camera conditioning pieces: camera signal, training tasks, images, windows, interpolation."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kinema.conditioning.camera import CameraMotion, camera_from_metadata, camera_tensor
from kinema.conditioning.images import fit_frames, load_image, load_video_tail
from kinema.conditioning.tasks import FrameLatents, build_cond, capabilities_for, latent_index, sample_tasks
from kinema.engine.native import crossfade
from kinema.engine.windows import plan_windows
from kinema.errors import KinemaInputError
from kinema.video.interpolate import StreamInterpolator, interpolate_stream
from kinema.video.io import write_video


# --- camera -----------------------------------------------------------------------------


def test_named_camera_moves_follow_shapes_world_signs() -> None:
    assert CameraMotion.named("pan left") == CameraMotion(pan=-1.0)
    assert CameraMotion.named("Tilt-Up") == CameraMotion(tilt=1.0)
    assert CameraMotion.named("zoom out").vector() == [0.0, 0.0, -1.0, 1.0]
    assert CameraMotion(pan=0.9, zoom=0.2).nearest_name() == "pan right"
    with pytest.raises(KinemaInputError, match="unknown camera move 'roll'"):
        CameraMotion.named("roll")


def test_camera_parse_limits_and_tensor() -> None:
    assert CameraMotion.parse({"pan": 1, "zoom": "0.5"}) == CameraMotion(pan=1.0, zoom=0.5)
    with pytest.raises(KinemaInputError, match="between -2 and 2"):
        CameraMotion.parse({"tilt": 5})
    with pytest.raises(KinemaInputError, match="unknown camera field"):
        CameraMotion.parse({"roll": 1})
    t = camera_tensor([CameraMotion(pan=1.0), None])
    assert t.tolist() == [[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]


def test_camera_from_metadata_prefers_explicit_values() -> None:
    assert camera_from_metadata({"scene": {"camera": "tilt down"}}) == CameraMotion(tilt=-1.0)
    assert camera_from_metadata({"camera": {"zoom": 1.0}, "scene": {"camera": "static"}}) == CameraMotion(zoom=1.0)
    assert camera_from_metadata({"video": "x.mp4"}) is None


# --- training tasks ---------------------------------------------------------------------


def test_latent_index_matches_the_causal_grouping() -> None:
    # frame 0 alone, then groups of four: 1-4 -> 1, 5-8 -> 2, 16 -> 4
    assert [latent_index(f) for f in (0, 1, 4, 5, 8, 16)] == [0, 1, 1, 2, 2, 4]


def _clip(b: int = 1) -> tuple[torch.Tensor, FrameLatents]:
    x0 = torch.randn(b, 3, 5, 2, 2)
    images = FrameLatents(torch.randn(b, 2, 3, 2, 2), torch.tensor([[16, 6]] * b))
    return x0, images


@pytest.mark.parametrize(
    ("task", "given"),
    [("text", []), ("first", [0]), ("last", [4]), ("first_last", [0, 4])],
)
def test_build_cond_gives_the_right_frames(task: str, given: list[int]) -> None:
    x0, images = _clip()
    cond = build_cond(x0, [task], images, np.random.default_rng(0))
    assert cond.shape == (1, 4, 5, 2, 2)
    mask = cond[0, 3, :, 0, 0]
    assert [j for j in range(5) if mask[j] == 1] == given
    if 0 in given:
        assert torch.equal(cond[0, :3, 0], x0[0, :, 0])  # the clip's own first latent
    if 4 in given:
        assert torch.equal(cond[0, :3, 4], images.latents[0, 0])  # the last frame encoded alone
    masked_out = [j for j in range(5) if j not in given]
    assert cond[0, :3, masked_out].abs().sum() == 0


def test_build_cond_continuation_and_keyframes() -> None:
    x0, images = _clip(b=64)
    rng = np.random.default_rng(1)
    cond = build_cond(x0, ["continue"] * 64, images, rng)
    counts = cond[:, 3, :, 0, 0].sum(dim=1)
    assert counts.min() >= 1 and counts.max() <= 4  # never the whole clip
    for i in range(64):
        k = int(counts[i])
        assert torch.equal(cond[i, :3, :k], x0[i, :, :k]) and cond[i, 3, k:].sum() == 0
    cond = build_cond(x0, ["keyframes"] * 64, images, rng)
    assert (cond[:, 3, latent_index(6)] == 1).all()  # the inner frame at its latent
    assert 0 < cond[:, 3, 0, 0, 0].sum() < 64  # the first frame only some of the time


def test_task_sampling_and_capabilities() -> None:
    picks = sample_tasks({"text": 0.5, "first": 0.5, "last": 0.0}, 2000, np.random.default_rng(0))
    assert set(picks) == {"text", "first"} and 800 < picks.count("first") < 1200
    caps = capabilities_for({"text": 1.0, "first": 0.1, "continue": 0.1}, camera=True)
    assert {"image-to-video", "video-extension", "long-video", "camera-control"} <= set(caps)
    assert "last-frame" not in caps and capabilities_for({"text": 1.0}, camera=False) == ["text-to-video", "interpolation"]


# --- images -------------------------------------------------------------------------------


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares a size in its header but carries almost no data (what a bomb looks like)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))
    return path


def test_load_image_refuses_bad_files(tmp_path: Path) -> None:
    with pytest.raises(KinemaInputError, match="image not found"):
        load_image(tmp_path / "none.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(KinemaInputError, match="cannot read .*notes.png as an image"):
        load_image(tmp_path / "notes.png")
    with pytest.raises(KinemaInputError, match="60.0 megapixels; the limit is 50"):
        load_image(_png_header_only(tmp_path / "huge.png", 10000, 6000))
    with pytest.raises(KinemaInputError, match="decompression bomb"):
        load_image(_png_header_only(tmp_path / "bomb.png", 3000, 2000))


def test_load_image_reads_rgb(tmp_path: Path) -> None:
    Image.new("L", (20, 10), 200).save(tmp_path / "grey.png")
    img = load_image(tmp_path / "grey.png")
    assert img.shape == (10, 20, 3) and img.dtype == np.uint8 and (img == 200).all()


def test_fit_modes() -> None:
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = 255  # left half white
    fill = fit_frames(img, 16, 16, "fill")  # cover + centre crop: half white, half black
    assert fill.shape == (16, 16, 3) and fill[:, :6].min() == 255 and fill[:, 10:].max() == 0
    fit = fit_frames(img, 16, 16, "fit")  # stretched: still left half white
    assert fit[:, :7].min() > 200 and fit[:, 9:].max() < 50
    pad = fit_frames(img, 16, 16, "pad")  # letterboxed: black bars above and below
    assert pad[:3].max() == 0 and pad[-3:].max() == 0 and pad[8, :7].min() > 200
    with pytest.raises(KinemaInputError, match="image_fit"):
        fit_frames(img, 16, 16, "zoom")


def test_video_tail_limits(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    path = write_video(frames, tmp_path / "short.mp4", fps=8.0)
    with pytest.raises(KinemaInputError, match="too short to extend: it gives 4 frames at 8 fps; at least 5"):
        load_video_tail(path, 8.0, 5, 32, 32, "fill")
    (tmp_path / "fake.mp4").write_text("hello")
    with pytest.raises(KinemaInputError, match="cannot read video .*fake.mp4"):
        load_video_tail(tmp_path / "fake.mp4", 8.0, 5, 32, 32, "fill")
    long = write_video(np.repeat(frames, 4, axis=0), tmp_path / "long.mp4", fps=16.0)  # 16 frames at 16 fps
    out = load_video_tail(long, 8.0, 5, 16, 16, "fill")
    assert out.shape == (8, 16, 16, 3)  # 1 s resampled to 8 fps and fitted


# --- windows and interpolation ----------------------------------------------------------------


def test_windows_overlap_and_end_on_the_last_frame() -> None:
    assert plan_windows(17, 17, 5) == [(0, 17)]
    assert plan_windows(9, 17, 5) == [(0, 9)]
    wins = plan_windows(61, 17, 5)
    assert wins == [(0, 17), (12, 17), (24, 17), (36, 17), (48, 13)]
    assert all((n - 1) % 4 == 0 for _, n in wins) and wins[-1][0] + wins[-1][1] == 61
    for (s0, n0), (s1, _) in zip(wins, wins[1:]):
        assert s0 + n0 - s1 == 5  # each window starts 5 frames before the last one ended
    with pytest.raises(ValueError):
        plan_windows(16, 17, 5)


def test_window_overlaps_fade_from_the_earlier_window_to_the_later() -> None:
    before, after = np.zeros((5, 2, 2, 3), np.uint8), np.full((5, 2, 2, 3), 240, np.uint8)
    faded = crossfade(before, after)
    assert faded.dtype == np.uint8 and faded.shape == before.shape
    assert faded[:, 0, 0, 0].tolist() == [40, 80, 120, 160, 200]  # neither end repeats a window's frame
    assert np.array_equal(crossfade(after, after), after)


def test_stream_interpolation_counts_and_blends() -> None:
    frames = np.stack([np.full((2, 2, 3), v, np.uint8) for v in (0, 90, 180)])
    chunks = list(interpolate_stream([frames[:2], frames[2:]], 3))
    out = np.concatenate(chunks)
    assert len(out) == 9  # n inputs -> n x factor outputs
    assert out[:, 0, 0, 0].tolist() == [0, 30, 60, 90, 120, 150, 180, 180, 180]
    same = StreamInterpolator(1)
    assert same.push(frames) is frames
