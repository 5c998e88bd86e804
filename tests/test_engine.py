"""The native backend and the Pipeline API on a tiny random model saved to disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kinema import Pipeline
from kinema.engine import pipeline as pipeline_module
from kinema.engine.backend import frame_counts
from conftest import build_tiny_model
from kinema.engine.native import NativeBackend, NativeConfig
from kinema.errors import KinemaInputError
from kinema.request import make_request
from kinema.video.io import read_video

@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread: None) -> None:
    """Every test here runs tiny models on one thread."""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def pipe(model_dir: Path) -> Pipeline:
    return Pipeline.from_pretrained(model_dir)


def test_capabilities_come_from_pipeline_json(pipe: Pipeline) -> None:
    caps = pipe.capabilities
    assert caps.buckets == ((32, 32), (32, 64), (64, 32))
    assert caps.stride == 16  # VAE stride 8 x DiT patch 2
    assert caps.fps_range == (8.0, 8.0)
    assert (caps.default_steps, caps.default_sampler, caps.max_seconds) == (3, "euler", 2.0)
    assert set(caps.samplers) == {"euler", "heun", "dpmpp-2m"}
    assert "text-to-video" in caps.tasks


def test_frame_counts_cover_duration() -> None:
    assert frame_counts(2.0, 8.0, 4) == (16, 17)
    assert frame_counts(1.0, 8.0, 4) == (8, 9)
    assert frame_counts(0.5, 10.0, 4) == (5, 5)
    assert frame_counts(0.01, 8.0, 4) == (1, 1)


def test_validate_fills_defaults_and_picks_a_seed(pipe: Pipeline) -> None:
    r = pipe.validate(make_request(prompt="a red circle"))
    assert (r.height, r.width, r.steps, r.guidance, r.sampler, r.fps) == (32, 32, 3, 3.0, "euler", 8.0)
    assert (r.num_frames, r.generated_frames) == (8, 9)
    assert isinstance(r.seed, int) and r.seed >= 0
    # One side given: the bucket with that side.
    r = pipe.validate(make_request(prompt="x", width=64))
    assert (r.height, r.width) == (32, 64)


def test_generate_shape_and_timings(pipe: Pipeline) -> None:
    steps_seen: list[tuple[int, int]] = []
    video = pipe.generate("a blue square moving right", seed=3, width=64, height=32, progress=lambda s, n: steps_seen.append((s, n)))
    assert video.frames.dtype == np.uint8 and video.frames.shape == (8, 32, 64, 3)
    assert video.seed == 3 and video.fps == 8.0
    assert steps_seen == [(1, 3), (2, 3), (3, 3)]
    assert {"model_load", "text_encoding", "denoising", "vae_decoding"} <= set(video.timings)
    assert video.frames.std() > 0  # not a constant image


def test_same_seed_is_bit_exact_and_seed_matters(model_dir: Path, pipe: Pipeline) -> None:
    a = pipe.generate("a red circle", seed=7)
    b = pipe.generate("a red circle", seed=7)
    assert b.timings["model_load"] == 0.0  # warm: weights stay loaded
    fresh = Pipeline.from_pretrained(model_dir).generate("a red circle", seed=7)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.frames, fresh.frames)
    assert not np.array_equal(a.frames, pipe.generate("a red circle", seed=8).frames)
    assert not np.array_equal(a.frames, pipe.generate("a green star", seed=7).frames)


def test_negative_prompt_and_guidance(pipe: Pipeline) -> None:
    base = pipe.generate("a red circle", seed=1, guidance=3.0).frames
    neg = pipe.generate("a red circle", seed=1, guidance=3.0, negative_prompt="blue square").frames
    assert not np.array_equal(base, neg)
    # Guidance 1 is conditional sampling: the negative prompt has no effect.
    g1 = pipe.generate("a red circle", seed=1, guidance=1.0).frames
    g1_neg = pipe.generate("a red circle", seed=1, guidance=1.0, negative_prompt="blue square").frames
    assert np.array_equal(g1, g1_neg)


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp-2m"])
def test_every_sampler_runs(pipe: Pipeline, sampler: str) -> None:
    video = pipe.generate("a circle", seed=0, sampler=sampler, steps=2, seconds=0.5)
    assert video.frames.shape == (4, 32, 32, 3)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"width": 40, "height": 32}, "multiple of 16"),
        ({"width": 48, "height": 48}, "supported sizes (width x height): 32x32, 64x32, 32x64"),
        ({"width": 96}, "supported sizes"),
        ({"seconds": 3.0}, "limit for this model is 2"),
        ({"fps": 20.0}, "allowed: 8 (or an integer multiple"),
        ({"sampler": "ddim"}, "euler, heun, dpmpp-2m"),
        ({"negative_prompt": "one two three four five six seven eight nine ten eleven twelve"}, "negative prompt is 13 tokens; the limit is 12"),
        ({"steps": 0}, "between 1 and 200"),
        ({"colour": "red"}, "unknown option 'colour'"),
    ],
)
def test_backend_limits_are_named(pipe: Pipeline, options: dict[str, Any], needle: str) -> None:
    with pytest.raises(KinemaInputError) as exc:
        pipe.generate("a red circle", **options)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_prompt_token_limit(pipe: Pipeline) -> None:
    with pytest.raises(KinemaInputError, match="prompt is 14 tokens; the limit is 12"):
        pipe.generate("a b c d e f g h i j k l m")


def test_validation_loads_no_weights(model_dir: Path) -> None:
    backend = NativeBackend(model_dir)
    with pytest.raises(KinemaInputError):
        backend.validate(make_request(prompt="x", width=48, height=48))
    backend.validate(make_request(prompt="x"))
    assert backend._dit is None and backend._vae is None


def test_save_round_trip(pipe: Pipeline, tmp_path: Path) -> None:
    video = pipe.generate("a red circle", seed=0, width=64, height=32)
    path = video.save(tmp_path / "clip.mp4")
    frames, fps = read_video(path)
    assert frames.shape == video.frames.shape and fps == pytest.approx(8.0)


def test_missing_models_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KinemaInputError, match="does not exist"):
        Pipeline.from_pretrained(tmp_path / "nope")
    with pytest.raises(KinemaInputError, match="not a kinema model directory"):
        Pipeline.from_pretrained(tmp_path)
    monkeypatch.setattr(pipeline_module, "builtin_model_dir", lambda: tmp_path)
    with pytest.raises(KinemaInputError, match="built-in model is not installed"):
        Pipeline.from_builtin()


def test_pipeline_json_refuses_unknown_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown keys"):
        NativeConfig.from_dict({"buckets": [[32, 32]], "resolution": 32})
    cfg = NativeConfig.from_dict({"shift": {"max_shift": 2.0}})
    cfg.save(tmp_path)
    assert NativeConfig.load(tmp_path) == cfg and cfg.shift.max_shift == 2.0


def test_frame_correlated_noise_is_read_from_pipeline_json_and_changes_the_video(model_dir: Path, tmp_path: Path) -> None:
    """A model trained on frame-correlated noise samples from it: pipeline.json carries the correlation."""
    import shutil

    correlated = tmp_path / "correlated"
    shutil.copytree(model_dir, correlated)
    cfg = NativeConfig.load(correlated)
    cfg.noise_frame_correlation = 0.5
    cfg.save(correlated)
    request = dict(prompt="a red ball", seed=3, steps=2)
    plain = Pipeline.from_pretrained(model_dir).generate(**request).frames
    mixed = Pipeline.from_pretrained(correlated).generate(**request).frames
    assert plain.shape == mixed.shape and not np.array_equal(plain, mixed)
    with pytest.raises(ValueError, match="noise_frame_correlation"):
        NativeConfig.from_dict({"noise_frame_correlation": 1.0})


def test_camera_warped_noise_is_read_from_pipeline_json_and_moves_only_a_requested_camera(tmp_path: Path) -> None:
    """A model trained on camera-warped noise samples from it when a camera is asked for, and from plain noise otherwise."""
    tasks = ["text-to-video", "interpolation", "camera-control"]
    plain_pipe = Pipeline.from_pretrained(build_tiny_model(tmp_path / "plain", {"camera_dim": 4}, tasks=tasks))
    warped_pipe = Pipeline.from_pretrained(build_tiny_model(tmp_path / "warped", {"camera_dim": 4}, tasks=tasks, camera_noise_warp=0.8))
    request = dict(prompt="a red ball", seed=3, steps=2)
    assert np.array_equal(plain_pipe.generate(**request).frames, warped_pipe.generate(**request).frames)
    panned = dict(request, camera={"pan": 1.0})
    a, b = plain_pipe.generate(**panned).frames, warped_pipe.generate(**panned).frames
    assert a.shape == b.shape and not np.array_equal(a, b)
    assert np.array_equal(b, warped_pipe.generate(**panned).frames)  # still one video per seed
    with pytest.raises(ValueError, match="camera_noise_warp"):
        NativeConfig.from_dict({"camera_noise_warp": 1.5})


def test_a_self_conditioned_model_reads_the_last_steps_estimate(tmp_path: Path) -> None:
    """Sampling feeds each step the previous step's guided clean-latent estimate (zeros at the first)."""
    import torch

    pipe = Pipeline.from_pretrained(build_tiny_model(tmp_path, dit_options={"self_condition": True}))
    pipe.load()
    dit = pipe.backend._dit
    calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    forward = dit.forward

    def spy(x, t, *args, **kw):
        v = forward(x, t, *args, **kw)
        calls.append((x[:1].clone(), t[:1].clone(), kw["x0_estimate"][:1].clone(), v))
        return v

    dit.forward = spy
    video = pipe.generate("a red circle", seed=5, guidance=3.0)
    assert len(calls) == 3 and not calls[0][2].any()
    for (x, t, _, v), (_, _, estimate, _) in zip(calls, calls[1:]):
        guided = v[1:] + 3.0 * (v[:1] - v[1:])  # the two branches, combined as the sampler saw them
        torch.testing.assert_close(estimate, x - t.view(-1, 1, 1, 1, 1) * guided)
    dit.forward = forward
    assert np.array_equal(video.frames, pipe.generate("a red circle", seed=5, guidance=3.0).frames)
