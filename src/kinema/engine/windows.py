"""Cut a long generation into overlapping windows the model can make one at a time.

Each window after the first starts `overlap` frames before the previous one
ends and is conditioned on those frames (re-encoded as the first latent
frames of the new window), so motion carries across the seam. Window starts
step by `window - overlap` (a multiple of the VAE's 4-frame groups) and the
last window is cut short to end exactly on the last frame, which keeps a
last-frame image on a latent boundary.
"""

from __future__ import annotations


def plan_windows(total_frames: int, window: int, overlap: int, temporal_stride: int = 4) -> list[tuple[int, int]]:
    """[(start, length)] covering frames [0, total_frames); every length is 1 + 4k."""
    if (total_frames - 1) % temporal_stride or (window - 1) % temporal_stride:
        raise ValueError(f"frame counts must be 1 + {temporal_stride}k (total {total_frames}, window {window})")
    if total_frames <= window:
        return [(0, total_frames)]
    if not 0 < overlap < window or (window - overlap) % temporal_stride:
        raise ValueError(f"overlap {overlap} must be below the window {window} and leave a multiple of {temporal_stride}")
    out, start = [], 0
    while True:
        length = min(window, total_frames - start)
        out.append((start, length))
        if start + length >= total_frames:
            return out
        start += window - overlap
