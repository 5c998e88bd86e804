"""Noise that moves with the camera: the camera signal written into the starting noise.

Why: given only as a signal embedded like the timestep, the camera moves no
model trained so far (docs/benchmarks.md, "Conditioning"): a moving camera is the
whole textured background sliding or scaling, and a small DiT does not learn to
draw that from a 4-vector. Go-with-the-Flow (Burgert et al., CVPR 2025) controls
motion by warping the noise instead: where the noise of frame k is the noise of
frame 0 carried along the motion, the details the sampler settles on move with
it, and a model trained on such noise learns to follow it. Shapes World knows
every training clip's camera exactly, so the flow here is the camera's own: each
latent cell of frame k takes the noise of the world point it shows, looked up in
one noise canvas laid over the world at frame 0 (nearest cell, so every entry is
still N(0, 1)), mixed with independent noise by `mix`.

Geometry follows the renderer (kinema.world.render): `screen = c + zoom(t) *
(world - c - cam(t))`, pan and tilt at `CAMERA_SPEED` frame widths per second
times their strength, zoom `ZOOM_FACTOR ** (zoom * progress)`. A latent frame
stands at the mean time of the pixel frames it covers (frame 0 alone, then
groups of `time_stride`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from kinema.world.scene import CAMERA_SPEED, ZOOM_FACTOR


def latent_frame_times(t_lat: int, time_stride: int) -> np.ndarray:
    """Pixel-frame index at the centre of each latent frame: 0, then the middle of each group of `time_stride`."""
    k = np.arange(t_lat, dtype=np.float64)
    return np.where(k == 0, 0.0, time_stride * k - (time_stride - 1) / 2.0)


def camera_source_cells(camera: Sequence[float], t_lat: int, h: int, w: int, fps: float, time_stride: int) -> tuple[np.ndarray, np.ndarray]:
    """For every latent cell of every latent frame, the frame-0 cell (row, col) showing the same world point.

    `camera` is `[pan, tilt, zoom, ...]` in the signal's units (kinema.conditioning.camera).
    Returns two int arrays [t_lat, h, w]; they may fall outside the frame (what the camera reveals).
    """
    pan, tilt, zoom = (float(v) for v in camera[:3])
    frames = latent_frame_times(t_lat, time_stride)
    pixel_frames = time_stride * (t_lat - 1) + 1
    seconds = frames / fps
    progress = frames / (pixel_frames - 1) if pixel_frames > 1 else np.zeros_like(frames)
    offset_x = pan * CAMERA_SPEED * w * seconds  # in latent cells: the speed is in frame widths per second
    offset_y = -tilt * CAMERA_SPEED * w * seconds  # tilt up moves the camera up: the scene drifts down
    scale = ZOOM_FACTOR ** (zoom * progress)
    cy, cx = h / 2.0, w / 2.0
    rows = np.arange(h, dtype=np.float64) + 0.5
    cols = np.arange(w, dtype=np.float64) + 0.5
    src_y = cy + (rows[None, :, None] - cy) / scale[:, None, None] + offset_y[:, None, None]
    src_x = cx + (cols[None, None, :] - cx) / scale[:, None, None] + offset_x[:, None, None]
    src_y = np.broadcast_to(src_y, (t_lat, h, w))
    src_x = np.broadcast_to(src_x, (t_lat, h, w))
    return np.floor(src_y).astype(np.int64), np.floor(src_x).astype(np.int64)


def warped_sample_noise(channels: int, rows: np.ndarray, cols: np.ndarray, generator: torch.Generator | None) -> torch.Tensor:
    """[C, T, h, w] noise read from one N(0, 1) canvas at the given frame-0 cells: the same world point, the same noise."""
    y0, x0 = int(rows.min()), int(cols.min())
    canvas = torch.randn((channels, int(rows.max()) - y0 + 1, int(cols.max()) - x0 + 1), generator=generator)
    return canvas[:, torch.from_numpy(rows - y0), torch.from_numpy(cols - x0)]


def camera_warped_noise(
    shape: tuple[int, ...],
    cameras: torch.Tensor,
    generator: torch.Generator | None,
    mix: float,
    fps: float,
    time_stride: int,
) -> torch.Tensor:
    """Noise [B, C, T, h, w]: for samples whose camera is given (`cameras[i, 3] > 0`), warped along it.

    Each such sample's noise is `sqrt(mix) * warped + sqrt(1 - mix) * independent`, so
    every entry stays N(0, 1); samples without a camera, or `mix = 0`, get exactly
    independent noise. `mix = 1` makes a static camera's latent frames share one noise.
    """
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"camera noise warp must be in [0, 1], got {mix}")
    if len(shape) != 5:
        raise ValueError(f"camera-warped noise needs a [B, C, T, H, W] shape, got {tuple(shape)}")
    independent = torch.randn(shape, generator=generator)
    if mix == 0.0:
        return independent
    b, c, t_lat, h, w = shape
    noise = independent.clone()
    for i in range(b):
        if float(cameras[i, 3]) <= 0.0:
            continue
        rows, cols = camera_source_cells(cameras[i].tolist(), t_lat, h, w, fps, time_stride)
        warped = warped_sample_noise(c, rows, cols, generator)
        noise[i] = math.sqrt(mix) * warped + math.sqrt(1.0 - mix) * independent[i]
    return noise
