"""Noise that moves with the camera (kinema.diffusion.camera_noise): geometry, statistics, pass-through."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kinema.conditioning.camera import CameraMotion, camera_tensor
from kinema.diffusion.camera_noise import camera_source_cells, camera_warped_noise, latent_frame_times
from kinema.world.scene import ZOOM_FACTOR

SHAPE = (1, 3, 5, 8, 8)  # a 64x64, 17-frame clip's latent
FPS, STRIDE = 8.0, 4


def noise_for(camera: str | None, mix: float = 1.0, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> torch.Tensor:
    cams = camera_tensor([None if camera is None else CameraMotion.named(camera)] * shape[0])
    return camera_warped_noise(shape, cams, torch.Generator().manual_seed(seed), mix, FPS, STRIDE)


def test_latent_frames_stand_at_the_middle_of_the_pixel_frames_they_cover():
    assert latent_frame_times(5, 4).tolist() == [0.0, 2.5, 6.5, 10.5, 14.5]


def test_without_a_camera_or_with_mix_zero_it_is_plain_independent_noise():
    plain = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noise_for(None), plain)
    assert torch.equal(noise_for("pan right", mix=0.0), plain)


def test_a_static_camera_at_mix_one_gives_every_latent_frame_the_same_noise():
    n = noise_for("static")
    for k in range(1, SHAPE[2]):
        assert torch.equal(n[0, :, k], n[0, :, 0])


def test_pan_right_carries_the_noise_left_as_the_renderer_carries_the_scene():
    """Pan right moves the camera right, so what frame 0 showed one cell to the right is now here."""
    n = noise_for("pan right")
    # latent frame 1 is 2.5 frames (0.3125 s) in: 0.22 widths/s * 8 cells * 0.3125 s = 0.55 cells
    assert torch.equal(n[0, :, 1, :, :-1], n[0, :, 0, :, 1:])
    m = noise_for("pan left")
    assert torch.equal(m[0, :, 1, :, 1:], m[0, :, 0, :, :-1])


def test_tilt_up_carries_the_noise_down():
    n = noise_for("tilt up")
    assert torch.equal(n[0, :, 1, 1:, :], n[0, :, 0, :-1, :])


def test_zoom_in_reads_a_shrinking_window_about_the_centre():
    rows, cols = camera_source_cells([0.0, 0.0, 1.0], 5, 8, 8, FPS, STRIDE)
    assert rows[0].tolist() == [[i] * 8 for i in range(8)] and cols[0].tolist() == [list(range(8))] * 8
    last_scale = ZOOM_FACTOR ** (14.5 / 16)
    assert last_scale > 1.4
    span = cols[-1].max() - cols[-1].min() + 1
    assert span == pytest.approx(8 / last_scale, abs=1.0)  # the last frame shows ~2/3 of frame 0's width
    rows_out, cols_out = camera_source_cells([0.0, 0.0, -1.0], 5, 8, 8, FPS, STRIDE)
    assert cols_out[-1].min() < 0 and cols_out[-1].max() > 7  # zooming out reveals what frame 0 did not show


def test_revealed_cells_take_fresh_noise_and_every_entry_stays_standard_normal():
    n = noise_for("pan right", mix=1.0, shape=(256, 4, 5, 8, 8))
    assert abs(float(n.mean())) < 0.02 and abs(float(n.std()) - 1.0) < 0.02
    half = noise_for("pan right", mix=0.5, shape=(256, 4, 5, 8, 8))
    assert abs(float(half.std()) - 1.0) < 0.02
    corr = float((half[:, :, 1, :, :-1] * half[:, :, 0, :, 1:]).mean())
    assert corr == pytest.approx(0.5, abs=0.03)  # the warped share, where frame 1 shows what frame 0 showed


def test_a_stronger_pan_moves_the_noise_further():
    slow = camera_source_cells([0.5, 0.0, 0.0], 5, 8, 8, FPS, STRIDE)[1]
    fast = camera_source_cells([2.0, 0.0, 0.0], 5, 8, 8, FPS, STRIDE)[1]
    assert (fast[-1] - np.arange(8)).mean() > (slow[-1] - np.arange(8)).mean() > 0


def test_bad_mix_or_shape_is_refused():
    with pytest.raises(ValueError, match="camera noise warp must be in"):
        noise_for("static", mix=1.5)
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\]"):
        camera_warped_noise((1, 3, 8, 8), camera_tensor([None]), None, 0.5, FPS, STRIDE)
