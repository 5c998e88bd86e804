"""The shipped built-in model: present, small, fp16, and it makes a real clip offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open

from kinema import Pipeline
from kinema.engine.pipeline import builtin_model_dir

SIZE_LIMIT_BYTES = 40 * 1024 * 1024


def test_builtin_model_is_shipped_small_and_fp16() -> None:
    root = builtin_model_dir()
    weights = [root / "vae" / "model.safetensors", root / "dit" / "model.safetensors"]
    assert all(w.is_file() for w in weights)
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) <= SIZE_LIMIT_BYTES
    for w in weights:
        with safe_open(str(w), "pt") as f:
            tensors = [f.get_tensor(k) for k in f.keys()]
        dtypes = {str(t.dtype) for t in tensors if t.is_floating_point()}
        assert dtypes == {"torch.float16"}
    config = json.loads((root / "pipeline.json").read_text())
    assert config["text_encoder"] == "all-MiniLM-L6-v2"
    assert (root / "MODEL_CARD.md").is_file()


@pytest.fixture(scope="module")
def pipe(one_thread: None) -> Pipeline:
    return Pipeline.from_builtin()


def test_builtin_model_generates_a_clip(pipe: Pipeline) -> None:
    video = pipe.generate("a red ball moving left", seed=3, steps=4)
    assert video.frames.shape == (16, 64, 64, 3)
    assert video.frames.dtype == np.uint8
    # A real picture, not a flat or saturated frame: the shapes world is dark with bright objects.
    assert 5 < video.frames.mean() < 200
    assert video.frames.std() > 5


@pytest.mark.parametrize("width,height", [(112, 64), (64, 112)])
def test_builtin_model_landscape_and_portrait(pipe: Pipeline, width: int, height: int) -> None:
    video = pipe.generate("a blue square moving up", seed=1, steps=2, width=width, height=height)
    assert video.frames.shape[1:3] == (height, width)
