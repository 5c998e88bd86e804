"""Raise the frame rate by an integer factor, streaming.

Method: linear blending between neighbouring frames (k - 1 in-between frames
per pair). It is cheap, exact on still content and has no model to ship; on
fast motion it shows as a cross-fade rather than true in-between positions,
which at the small per-frame motion of 7.5-8 fps generation reads as motion
blur. A learned interpolator can replace `blend` behind the same interface.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np


def blend(a: np.ndarray, b: np.ndarray, factor: int) -> np.ndarray:
    """The `factor - 1` frames strictly between uint8 frames a and b: [factor - 1, H, W, 3]."""
    w = (np.arange(1, factor, dtype=np.float32) / factor)[:, None, None, None]
    out = a[None].astype(np.float32) * (1.0 - w) + b[None].astype(np.float32) * w
    return np.rint(out).astype(np.uint8)


class StreamInterpolator:
    """Feed chunks of frames in order; get interpolated chunks out, holding back one frame.

    Output for n input frames: (n - 1) * factor + 1 frames, then `finish()`
    pads the tail by repeating the last frame so that n inputs give exactly
    n * factor outputs (each input frame lasts 1 / input fps).
    """

    def __init__(self, factor: int):
        if factor < 1:
            raise ValueError("factor must be >= 1")
        self.factor = factor
        self._last: np.ndarray | None = None

    def push(self, frames: np.ndarray) -> np.ndarray:
        if self.factor == 1 or len(frames) == 0:
            return frames
        out: list[np.ndarray] = []
        for f in frames:
            if self._last is not None:
                out.append(self._last[None])
                out.append(blend(self._last, f, self.factor))
            self._last = f
        return np.concatenate(out) if out else frames[:0]

    def finish(self) -> np.ndarray:
        if self.factor == 1 or self._last is None:
            return np.zeros((0, 1, 1, 3), dtype=np.uint8) if self._last is None else self._last[None][:0]
        last, self._last = self._last, None
        return np.repeat(last[None], self.factor, axis=0)


def interpolate_stream(chunks: Iterable[np.ndarray], factor: int) -> Iterator[np.ndarray]:
    interp = StreamInterpolator(factor)
    for chunk in chunks:
        out = interp.push(chunk)
        if len(out):
            yield out
    tail = interp.finish()
    if len(tail):
        yield tail
