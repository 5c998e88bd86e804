"""Bucket assignment and the one-shape-per-batch sampler."""

from collections import Counter

import numpy as np
import pytest

from kinema.train.buckets import Bucket, BucketSampler, assign_bucket, frames_available

BUCKETS = [[64, 64], [64, 112], [112, 64]]


@pytest.mark.parametrize(
    "h, w, expected",
    [(64, 64, (64, 64)), (1080, 1920, (64, 112)), (1920, 1080, (112, 64)), (560, 640, (64, 64)), (400, 1000, (64, 112))],
)
def test_nearest_aspect_bucket(h, w, expected):
    b = assign_bucket(h, w, 100, 8.0, BUCKETS, [17, 33], 8.0)
    assert (b.height, b.width) == expected


def test_longest_frame_count_that_fits_after_fps_resampling():
    assert assign_bucket(64, 64, 40, 8.0, BUCKETS, [17, 33], 8.0).num_frames == 33
    assert assign_bucket(64, 64, 20, 8.0, BUCKETS, [17, 33], 8.0).num_frames == 17
    # 30 fps footage: 100 frames = 3.3 s -> 27 frames at 8 fps -> only 17 fits
    assert frames_available(100, 30.0, 8.0) == 27
    assert assign_bucket(64, 64, 100, 30.0, BUCKETS, [17, 33], 8.0).num_frames == 17
    assert assign_bucket(64, 64, 10, 8.0, BUCKETS, [17, 33], 8.0) is None


def test_every_batch_has_one_bucket_and_is_deterministic_per_step():
    keys = ["64x64x17"] * 50 + ["64x112x17"] * 30 + ["112x64x33"] * 20
    s = BucketSampler(keys, batch_size=8, seed=3)
    for step in range(20):
        key, idx = s.batch(step)
        assert {keys[i] for i in idx} == {key} and len(idx) == 8
        assert len(set(idx.tolist())) == 8  # no repeats when the bucket is big enough
        key2, idx2 = BucketSampler(keys, batch_size=8, seed=3).batch(step)
        assert key == key2 and np.array_equal(idx, idx2)


def test_bucket_frequency_follows_counts_or_weights():
    keys = ["a"] * 75 + ["b"] * 25
    counts = Counter(BucketSampler(keys, 4, seed=0).batch(s)[0] for s in range(2000))
    assert 0.70 < counts["a"] / 2000 < 0.80
    weighted = Counter(BucketSampler(keys, 4, seed=0, weights={"a": 1.0, "b": 1.0}).batch(s)[0] for s in range(2000))
    assert 0.45 < weighted["a"] / 2000 < 0.55


def test_ranks_get_disjoint_slices_of_the_same_bucket():
    keys = ["a"] * 40 + ["b"] * 40
    r0 = BucketSampler(keys, 4, seed=1, rank=0, world_size=2)
    r1 = BucketSampler(keys, 4, seed=1, rank=1, world_size=2)
    for step in range(10):
        (k0, i0), (k1, i1) = r0.batch(step), r1.batch(step)
        assert k0 == k1 and not set(i0.tolist()) & set(i1.tolist())


def test_bucket_key_round_trip():
    assert Bucket.from_key(Bucket(64, 112, 17).key) == Bucket(64, 112, 17)
