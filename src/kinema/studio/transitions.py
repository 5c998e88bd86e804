"""Transitions as pure functions: (outgoing frame, incoming frame, progress 0..1) -> frame.

Frames are uint8 [H, W, 3] of the same size. Progress 0 shows only the
outgoing item, 1 only the incoming one.
"""

from __future__ import annotations

import numpy as np

from kinema.studio.storyboard import Transition


def crossfade(a: np.ndarray, b: np.ndarray, p: float) -> np.ndarray:
    return np.clip(a.astype(np.float32) * (1.0 - p) + b.astype(np.float32) * p + 0.5, 0, 255).astype(np.uint8)


def fade_black(a: np.ndarray, b: np.ndarray, p: float) -> np.ndarray:
    """The first half fades the outgoing item to black, the second half the incoming one up from black."""
    frame, gain = (a, 1.0 - 2.0 * p) if p < 0.5 else (b, 2.0 * p - 1.0)
    return np.clip(frame.astype(np.float32) * gain + 0.5, 0, 255).astype(np.uint8)


def wipe(a: np.ndarray, b: np.ndarray, p: float, direction: str) -> np.ndarray:
    """The incoming item slides its edge across: `left` reveals it from the right edge moving left."""
    h, w = a.shape[:2]
    out = a.copy()
    if direction == "left":
        x = round(w * (1.0 - p))
        out[:, x:] = b[:, x:]
    elif direction == "right":
        x = round(w * p)
        out[:, :x] = b[:, :x]
    elif direction == "up":
        y = round(h * (1.0 - p))
        out[y:] = b[y:]
    elif direction == "down":
        y = round(h * p)
        out[:y] = b[:y]
    else:
        raise ValueError(f"unknown wipe direction {direction!r}")
    return out


def apply(transition: Transition, a: np.ndarray, b: np.ndarray, p: float) -> np.ndarray:
    p = min(1.0, max(0.0, p))
    if transition.type == "crossfade":
        return crossfade(a, b, p)
    if transition.type == "fade-black":
        return fade_black(a, b, p)
    if transition.type == "wipe":
        return wipe(a, b, p, transition.direction)
    return b if p >= 0.5 else a  # cut (has no overlap, so this is only reached at the boundary)
