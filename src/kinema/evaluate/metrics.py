"""Numbers computed from frames and judge scores: temporal flicker and attribute accuracy.

Kept free of the judge and the renderer so that any video (real footage too) can
be measured with the same definitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from kinema.errors import KinemaInputError


def temporal_flicker(frames: np.ndarray) -> tuple[float, float]:
    """VBench-style temporal flickering: (mean absolute difference, score).

    For each pair of consecutive frames, the mean absolute pixel difference on the
    0-255 scale; these are averaged over pairs. The score is (255 - mean) / 255, so
    higher is steadier and a frozen video scores 1. A single frame has no pairs and
    counts as perfectly steady.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise KinemaInputError(f"flicker needs frames [T, H, W, 3], got shape {frames.shape}")
    if frames.shape[0] < 2:
        return 0.0, 1.0
    f = frames.astype(np.float32)
    per_pair = np.abs(f[1:] - f[:-1]).mean(axis=(1, 2, 3))
    mean = float(per_pair.mean())
    return mean, (255.0 - mean) / 255.0


def attribute_accuracy(scores: Iterable[Mapping[str, bool]]) -> dict[str, float]:
    """Fraction right per attribute over clips, plus "overall" over every attribute read.

    An attribute missing from a clip's scores is not counted for that clip, so
    suites may mix attribute sets.
    """
    right: dict[str, int] = {}
    seen: dict[str, int] = {}
    for s in scores:
        for key, ok in s.items():
            right[key] = right.get(key, 0) + bool(ok)
            seen[key] = seen.get(key, 0) + 1
    out = {k: right[k] / seen[k] for k in seen}
    total = sum(seen.values())
    out["overall"] = sum(right.values()) / total if total else 0.0
    return out
