"""Best-of-N in the native backend: candidates sampled in one batch, the matcher keeps one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TEXT_DIM, build_tiny_model
from kinema import Pipeline
from kinema.engine.native import NativeBackend, candidate_generator
from kinema.errors import KinemaInputError
from kinema.models.io import save_pretrained
from kinema.models.matcher import MatcherConfig, VideoTextMatcher
from kinema.request import MAX_CANDIDATES, make_request
from kinema.service.errors import code_for_message


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread: None) -> None:
    """Tiny models on one thread."""


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="module")
def matcher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = build_tiny_model(tmp_path_factory.mktemp("matcher"), candidates=3)
    torch.manual_seed(3)
    save_pretrained(VideoTextMatcher(MatcherConfig(latent_channels=4, text_dim=TEXT_DIM, hidden=16, video_depth=1, fusion_depth=1, heads=2)), d / "matcher")
    return d


class FixedScores:
    """Stands in for the matcher: records what it was asked and prefers candidate `best`."""

    def __init__(self, best: int):
        self.best, self.seen = best, []

    def __call__(self, latents: torch.Tensor, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.seen.append((latents.clone(), text.clone(), mask.clone()))
        scores = torch.zeros(latents.shape[0])
        scores[self.best] = 1.0
        return scores


def _frames(pipe: Pipeline, **kw) -> np.ndarray:
    return pipe.generate("a red ball moving left", seed=11, **kw).frames


def test_a_model_without_a_matcher_refuses_more_than_one_candidate(plain_dir: Path, tmp_path: Path) -> None:
    pipe = Pipeline.from_pretrained(plain_dir)
    assert pipe.capabilities.max_candidates == 1
    with pytest.raises(KinemaInputError, match="candidates 2 is more than this model can use: it has no video-text matcher") as e:
        pipe.validate(make_request(prompt="x", candidates=2))
    assert code_for_message(str(e.value)) == "input.candidates.unsupported"
    bad = build_tiny_model(tmp_path / "bad", candidates=2)
    with pytest.raises(KinemaInputError, match="asks for 2 candidates but the model has no matcher/"):
        NativeBackend(bad)


@pytest.mark.parametrize("value", [0, MAX_CANDIDATES + 1])
def test_candidates_out_of_range_are_refused_with_the_limit(value: int) -> None:
    with pytest.raises(KinemaInputError, match=f"candidates must be between 1 and {MAX_CANDIDATES}, got {value}"):
        make_request(prompt="x", candidates=value)


def test_one_candidate_is_the_plain_sample_bit_for_bit(plain_dir: Path, matcher_dir: Path) -> None:
    with_matcher = Pipeline.from_pretrained(matcher_dir)
    assert with_matcher.capabilities.default_candidates == 3 and with_matcher.capabilities.max_candidates == MAX_CANDIDATES
    assert np.array_equal(_frames(with_matcher, candidates=1), _frames(Pipeline.from_pretrained(plain_dir)))


def test_the_matchers_pick_is_what_comes_out(matcher_dir: Path) -> None:
    pipe = Pipeline.from_pretrained(matcher_dir)
    pipe.backend.load()
    clips = {}
    for best in (0, 2):
        spy = FixedScores(best)
        pipe.backend._matcher = spy
        clips[best] = _frames(pipe)  # the model's default: 3 candidates
        (latents, text, mask), = spy.seen
        assert latents.shape[0] == 3 and text.shape[0] == 3 and mask[0].any()
        assert not torch.allclose(latents[0], latents[1]) and not torch.allclose(latents[1], latents[2])
        decoded = pipe.backend._decode(latents[best : best + 1])
        assert np.array_equal(clips[best], decoded[: len(clips[best])])
    # Candidate 0 is the plain sample (the same noise; a batch of 3 may round differently by a level or two).
    plain = _frames(pipe, candidates=1)
    assert np.abs(clips[0].astype(int) - plain.astype(int)).max() <= 2
    assert np.abs(clips[2].astype(int) - plain.astype(int)).max() > 2


def test_best_of_n_is_reproducible_and_uses_the_real_matcher(matcher_dir: Path) -> None:
    pipe = Pipeline.from_pretrained(matcher_dir)
    a, b = _frames(pipe, candidates=4), _frames(pipe, candidates=4)
    assert np.array_equal(a, b)


def test_candidate_noise_depends_on_seed_window_and_index() -> None:
    draw = lambda *key: torch.randn(4, generator=candidate_generator(*key))  # noqa: E731
    assert torch.equal(draw(5, 0, 1), draw(5, 0, 1))
    assert not torch.equal(draw(5, 0, 1), draw(5, 0, 2))
    assert not torch.equal(draw(5, 0, 1), draw(5, 1, 1))
    assert not torch.equal(draw(5, 0, 1), draw(6, 0, 1))
    draw(2**63 - 1, 3, 15)  # the largest seed a request allows


def test_every_window_of_a_long_video_picks_among_candidates(matcher_dir: Path, tmp_path: Path) -> None:
    d = build_tiny_model(tmp_path / "long", candidates=2, tasks=["text-to-video", "video-extension", "long-video", "interpolation"], window_frames=9, max_total_seconds=4.0)
    save_pretrained(VideoTextMatcher(MatcherConfig(latent_channels=4, text_dim=TEXT_DIM, hidden=16, video_depth=1, fusion_depth=1, heads=2)), d / "matcher")
    pipe = Pipeline.from_pretrained(d)
    pipe.backend.load()
    spy = FixedScores(1)
    pipe.backend._matcher = spy
    video = pipe.generate("a red ball", seed=1, seconds=3.0)
    assert video.frames.shape[0] == 24 and len(spy.seen) >= 2


def test_a_quote_prices_every_candidate(matcher_dir: Path) -> None:
    from kinema.service.pricing import quote

    backend = NativeBackend(matcher_dir)
    one = quote(backend, backend.validate(make_request(prompt="a red ball", candidates=1)), 1000.0)
    three = quote(backend, backend.validate(make_request(prompt="a red ball")), 1000.0)  # the model's default: 3
    assert three.forward_passes == 3 * one.forward_passes
    assert three.tflops == pytest.approx(3 * one.tflops)
