"""Aspect/duration buckets and a sampler whose every batch has one shape.

Why buckets: a batch must stack into one tensor, but clips come in several
aspects and lengths. Each clip is assigned once to the bucket nearest its
aspect ratio and the longest allowed length it can fill; a batch is then drawn
from a single bucket. Buckets are picked in proportion to their clip count (or
given weights) so every clip is seen about equally often.

The sampler is a pure function of (seed, step): resuming at step s yields the
same batches as an uninterrupted run, and each DDP rank takes its own disjoint
slice of one global batch, with no sampler state to checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, order=True)
class Bucket:
    height: int
    width: int
    num_frames: int

    @property
    def key(self) -> str:
        return f"{self.height}x{self.width}x{self.num_frames}"

    @staticmethod
    def from_key(key: str) -> "Bucket":
        h, w, t = (int(v) for v in key.split("x"))
        return Bucket(h, w, t)


def frames_available(num_frames: int, fps: float, target_fps: float) -> int:
    """How many frames a clip has once resampled from `fps` to `target_fps`."""
    if num_frames <= 0:
        return 0
    if fps <= 0 or target_fps <= 0:
        return num_frames
    return int(math.floor((num_frames - 1) * target_fps / fps + 1e-6)) + 1


def assign_bucket(height: int, width: int, num_frames: int, fps: float, buckets: list[list[int]] | list[tuple[int, int]], frame_counts: list[int], target_fps: float) -> Bucket | None:
    """Nearest aspect ratio (in log space), longest allowed frame count that fits.

    Returns None when the clip is shorter than the shortest allowed length, so
    callers can skip it with a count instead of training on repeated frames.
    """
    aspect = math.log(width / height)
    h, w = min(((int(b[0]), int(b[1])) for b in buckets), key=lambda b: (abs(math.log(b[1] / b[0]) - aspect), -b[0] * b[1]))
    avail = frames_available(num_frames, fps, target_fps)
    fitting = [n for n in frame_counts if n <= avail]
    if not fitting:
        return None
    return Bucket(h, w, max(fitting))


class BucketSampler:
    """Infinite, stateless batches of indices drawn from one bucket at a time.

    `bucket_of[i]` is the bucket key of item i. Step `s` draws a bucket with
    probability proportional to its weight, then `batch_size * world_size`
    indices from it (without replacement within the step when the bucket is big
    enough), and rank r keeps slice r.
    """

    def __init__(self, bucket_of: list[str], batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1, weights: dict[str, float] | None = None):
        if not bucket_of:
            raise ValueError("no items to sample from")
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(bucket_of):
            groups.setdefault(key, []).append(i)
        self.keys = sorted(groups)
        self.members = {k: np.asarray(groups[k], dtype=np.int64) for k in self.keys}
        w = np.array([(weights or {}).get(k, float(len(groups[k]))) for k in self.keys], dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"bucket weights must be non-negative with a positive sum, got {dict(zip(self.keys, w))}")
        self.probs = w / w.sum()

    def batch(self, step: int) -> tuple[str, np.ndarray]:
        """(bucket key, this rank's indices) for optimizer step `step`."""
        rng = np.random.default_rng([self.seed, step])
        key = self.keys[int(rng.choice(len(self.keys), p=self.probs))]
        members = self.members[key]
        total = self.batch_size * self.world_size
        if len(members) >= total:
            picks = members[rng.permutation(len(members))[:total]]
        else:
            picks = members[rng.integers(0, len(members), size=total)]
        return key, picks[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
