"""The easy-first curriculum: which clips are easy, and how often a step draws from them."""

from types import SimpleNamespace

import numpy as np
import torch

from kinema.train.curriculum import easy_items, easy_step, is_easy_scene


def _scene(objects: int, camera: str) -> dict:
    return {"objects": [{"shape": "circle"}] * objects, "camera": camera}


def test_easy_means_one_object_and_a_static_camera():
    assert is_easy_scene(_scene(1, "static"))
    assert not is_easy_scene(_scene(2, "static"))
    assert not is_easy_scene(_scene(1, "pan left"))
    assert not is_easy_scene(None) and not is_easy_scene({})


def test_easy_items_are_cache_rows_of_easy_clips():
    records = [SimpleNamespace(scene=s) for s in (_scene(1, "static"), _scene(2, "static"), None, _scene(1, "static"), _scene(1, "zoom in"))]
    clip_ids = {"a": torch.tensor([4, 0, 1]), "b": torch.tensor([2, 3])}  # rows of each bucket name dataset clips
    easy = easy_items(records, clip_ids)
    assert easy["a"].tolist() == [1] and easy["b"].tolist() == [1]


def test_the_easy_share_falls_linearly_to_zero():
    n = 1000
    assert easy_step(0, n, seed=0) and not easy_step(n, n, seed=0) and not easy_step(5 * n, n, seed=0)
    assert not any(easy_step(s, 0, seed=0) for s in range(50))  # off
    early = np.mean([easy_step(s, n, seed=0) for s in range(0, 200)])
    late = np.mean([easy_step(s, n, seed=0) for s in range(800, 1000)])
    assert early > 0.8 and late < 0.2
    assert [easy_step(s, n, seed=1) for s in range(300)] == [easy_step(s, n, seed=1) for s in range(300)]  # deterministic
