"""Load the images and videos a request conditions on, safely, and fit them to the output size.

Why checks happen here, before any model loads: an image is user input from
anywhere, so size limits (megapixels, and the decompression-bomb ratio of
pixels to file bytes) are read from the header before the pixels are
decoded, and every failure names the file and the limit.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from kinema.errors import KinemaInputError

MAX_MEGAPIXELS = 50.0
MAX_PIXELS_PER_BYTE = 1000.0  # a bomb decodes to far more pixels than its bytes could honestly hold
BOMB_CHECK_MIN_PIXELS = 4_000_000  # small images may compress that well (flat colours); they are harmless


def load_image(path: str | Path) -> np.ndarray:
    """uint8 [H, W, 3] from an image file, refusing non-images, > 50 MP and decompression bombs."""
    p = Path(path)
    if not p.is_file():
        raise KinemaInputError(f"image not found: {p}")
    size_bytes = p.stat().st_size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                w, h = img.size  # header only: nothing decoded yet
                pixels = w * h
                if pixels > MAX_MEGAPIXELS * 1e6:
                    raise KinemaInputError(f"image {p} is {pixels / 1e6:.1f} megapixels; the limit is {MAX_MEGAPIXELS:g}")
                if pixels >= BOMB_CHECK_MIN_PIXELS and pixels / max(1, size_bytes) > MAX_PIXELS_PER_BYTE:
                    raise KinemaInputError(
                        f"image {p} declares {w}x{h} pixels in {size_bytes} bytes (over {MAX_PIXELS_PER_BYTE:g} pixels per byte): refused as a decompression bomb"
                    )
                rgb = img.convert("RGB")
                rgb.load()
    except KinemaInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise KinemaInputError(f"image {p} is too large to decode safely (limit {MAX_MEGAPIXELS:g} megapixels)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise KinemaInputError(f"cannot read {p} as an image: {exc}") from None
    return np.asarray(rgb, dtype=np.uint8)


def _resize(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return F.interpolate(frames, size=(height, width), mode="bilinear", antialias=True, align_corners=False)


def fit_frames(frames: np.ndarray, height: int, width: int, mode: str = "fill") -> np.ndarray:
    """uint8 [T, H, W, 3] (or [H, W, 3]) to the output size.

    fill: scale to cover, then centre-crop (nothing stretched, edges may be cut);
    fit:  stretch to exactly the size (nothing cut, proportions may change);
    pad:  scale to fit inside, then letterbox with black (nothing cut or stretched).
    """
    single = frames.ndim == 3
    arr = frames[None] if single else frames
    t, h, w, _ = arr.shape
    if (h, w) == (height, width):
        return frames
    x = torch.from_numpy(np.array(arr, dtype=np.uint8)).permute(0, 3, 1, 2).float()
    if mode == "fit":
        out = _resize(x, height, width)
    elif mode in ("fill", "pad"):
        scale = max(height / h, width / w) if mode == "fill" else min(height / h, width / w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        if mode == "fill":
            nh, nw = max(nh, height), max(nw, width)
        x = _resize(x, nh, nw)
        if mode == "fill":
            top, left = (nh - height) // 2, (nw - width) // 2
            out = x[:, :, top : top + height, left : left + width]
        else:
            out = x.new_zeros(t, 3, height, width)
            top, left = (height - nh) // 2, (width - nw) // 2
            out[:, :, top : top + nh, left : left + nw] = x
    else:
        raise KinemaInputError(f"image_fit must be fill, fit or pad, got {mode!r}")
    res = out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return res[0] if single else res


def load_video_tail(path: str | Path, fps: float, frames_needed: int, height: int, width: int, mode: str) -> np.ndarray:
    """All frames of a video to extend, resampled to `fps` and fitted: uint8 [T, H, W, 3].

    Refuses a file that is not a video and one shorter than `frames_needed` frames at `fps`.
    """
    from kinema.train.data import resample_frames
    from kinema.video.io import read_video

    p = Path(path)
    if not p.exists():
        raise KinemaInputError(f"video to extend not found: {p}")
    try:
        frames, src_fps = read_video(p, default_fps=fps)
    except KinemaInputError:
        raise
    except Exception as exc:  # PyAV raises many error types for non-videos
        raise KinemaInputError(f"cannot read {p} as a video: {exc}") from None
    if frames.ndim != 4 or len(frames) == 0:
        raise KinemaInputError(f"{p} has no video frames")
    src_fps = src_fps or fps
    count = int(np.floor((len(frames) - 1) * fps / src_fps)) + 1
    if count < frames_needed:
        raise KinemaInputError(f"video {p} is too short to extend: it gives {count} frames at {fps:g} fps; at least {frames_needed} are needed ({frames_needed / fps:.2f} s)")
    return fit_frames(resample_frames(frames, src_fps, fps, count), height, width, mode)
