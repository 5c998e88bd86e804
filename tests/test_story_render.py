"""Planning, generating, caching and rendering storyboards with the tiny random model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import build_tiny_model
from PIL import Image

from kinema.engine.backend import ResolvedRequest, Video
from kinema.engine.pipeline import Pipeline
from kinema.errors import KinemaInputError
from kinema.request import GenerationRequest
from kinema.studio.cache import ShotCache
from kinema.studio.load import parse_storyboard
from kinema.studio.mux import stream_report
from kinema.studio.plan import IMAGE_TASK, plan_storyboard
from kinema.studio.render import Studio
from kinema.video.io import read_video


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture()
def pipe(tiny_dir: Path, one_thread: Any) -> Pipeline:
    return Pipeline.from_pretrained(tiny_dir)


def five_shots(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "fps": 8,
        "output": {"height": 36},
        "subjects": [{"name": "red ball", "description": "a red circle"}],
        "shots": [
            {"prompt": "the red ball moves left", "duration": 1},
            {"prompt": "the red ball moves up", "duration": 1, "caption": "up it goes"},
            {"prompt": "a blue square", "duration": 0.5},
            {"prompt": "the red ball spins", "duration": 1, "transition": "crossfade"},
            {"prompt": "the red ball again", "duration": 0.5, "continuous": True},
        ],
    }
    data.update(extra)
    return data


class CountingBackend:
    """Wraps a backend: counts generations, can fail on a prompt, can claim image conditioning.

    With `images=True` it records each request's `image` and hands the inner
    backend a text-only request (the tiny model need not learn conditioning
    to test that the studio asks for the right frames).
    """

    def __init__(self, inner: Any, fail_on: str | None = None, images: bool = False):
        self.inner, self.fail_on, self.images = inner, fail_on, images
        self.model_dir, self.config = inner.model_dir, inner.config
        self.runs: list[str] = []
        self.image_of: dict[str, str | None] = {}

    def capabilities(self) -> Any:
        caps = self.inner.capabilities()
        if self.images:
            from dataclasses import replace

            caps = replace(caps, tasks=caps.tasks | {IMAGE_TASK})
        return caps

    def validate(self, request: GenerationRequest) -> ResolvedRequest:
        if self.images:
            self.image_of[request.prompt] = request.image
            request = request.model_copy(update={"image": None})
        return self.inner.validate(request)

    def generate(self, resolved: ResolvedRequest, progress: Any = None) -> Video:
        if self.fail_on is not None and resolved.prompt == self.fail_on:
            raise RuntimeError("out of memory (simulated)")
        self.runs.append(resolved.prompt)
        return self.inner.generate(resolved, progress)


def test_plan_validates_prices_and_locks_subject_seeds(pipe: Pipeline) -> None:
    board = parse_storyboard(five_shots())
    plan = plan_storyboard(board, pipe)
    assert plan.generation_size == (64, 32)  # the tiny model's landscape bucket for 16:9
    seeds = [s.resolved.seed for s in plan.shots]
    assert seeds[0] == seeds[1] == seeds[3] == plan.subjects["red ball"].seed  # one subject, one seed
    assert seeds[2] != seeds[0]
    assert [s.subjects for s in plan.shots][2] == ()
    assert plan.flops is not None and plan.flops > 0
    d = plan.to_dict()
    assert d["shots"][1]["frames"] == 8 and d["duration"] == pytest.approx(4.0 - 0.5)
    free = plan_storyboard(parse_storyboard(five_shots(consistency=False)), pipe)
    assert len({s.resolved.seed for s in free.shots}) == 5


def test_plan_errors_name_the_shot(pipe: Pipeline) -> None:
    board = parse_storyboard(five_shots(shots=[{"prompt": "a", "duration": 1}, {"prompt": "b", "duration": 3}]))
    with pytest.raises(KinemaInputError, match=r"^shots\[1\]: seconds 3 is too long"):
        plan_storyboard(board, pipe)


def test_without_image_conditioning_the_plan_warns(pipe: Pipeline) -> None:
    if IMAGE_TASK in pipe.capabilities.tasks:
        pytest.skip("this model conditions on images; the mechanism is tested below")
    plan = plan_storyboard(parse_storyboard(five_shots()), pipe)
    assert not plan.image_conditioning
    assert any("cannot condition on images" in w for w in plan.warnings)
    assert all(s.condition == "none" for s in plan.shots)


def test_consistency_conditions_on_reference_and_previous_last_frame(pipe: Pipeline, tmp_path: Path) -> None:
    backend = CountingBackend(pipe.backend, images=True)
    studio = Studio(Pipeline(backend), ShotCache(tmp_path / "cache"))
    plan = studio.plan(parse_storyboard(five_shots()))
    assert [s.condition for s in plan.shots] == ["subject", "subject", "none", "subject", "previous"]
    results = studio.generate_shots(plan)
    ref = backend.image_of["the red ball moves left"]
    assert ref is not None
    assert backend.image_of["the red ball moves up"] == ref == backend.image_of["the red ball spins"]
    assert backend.image_of["a blue square"] is None
    reference_video = studio.cache.get(studio._generate(plan.subjects["red ball"].request, "", None)[3])
    assert reference_video is not None and np.array_equal(np.asarray(Image.open(ref)), reference_video.frames[0])
    last = np.asarray(Image.open(backend.image_of["the red ball again"]))
    assert np.array_equal(last, results[3].video.frames[-1])  # continuous: the previous shot's last frame


def test_render_reuses_cache_and_rerenders_only_the_edited_shot(pipe: Pipeline, tmp_path: Path) -> None:
    backend = CountingBackend(pipe.backend)
    studio = Studio(Pipeline(backend), ShotCache(tmp_path / "cache"))
    data = five_shots(intro={"title": "Red Ball 赤", "duration": 0.5}, soundtrack={"music": True})
    report = studio.render(parse_storyboard(data), tmp_path / "film.mp4")
    assert report.generated == 5 and len(backend.runs) == 5
    streams = stream_report(report.output)
    assert streams["video"]["codec"] == "h264" and streams["audio"]["codec"] == "aac" and streams["subtitle"]["codec"] == "mov_text"
    assert streams["video"]["end"] == pytest.approx(4.0, abs=1 / 8)
    assert abs(streams["audio"]["end"] - streams["video"]["end"]) < 1 / 8
    assert report.srt is not None and "up it goes" in report.srt.read_text()
    first, _ = read_video(report.output)

    again = studio.render(parse_storyboard(data), tmp_path / "film.mp4")
    assert again.generated == 0 and len(backend.runs) == 5
    assert all(np.array_equal(x.video.frames, y.video.frames) for x, y in zip(report.shots, again.shots))
    assert read_video(again.output)[0].shape == first.shape

    assert again.segments_encoded == 0 and again.segments_reused == report.segments_encoded > 0

    data["shots"][2] = {"prompt": "a green star", "duration": 0.5}
    edited = studio.render(parse_storyboard(data), tmp_path / "film.mp4")
    assert edited.generated == 1 and backend.runs[-1] == "a green star"
    # Only the edited shot's segments and the transitions beside it are encoded again.
    assert 0 < edited.segments_encoded < report.segments_encoded and edited.segments_reused > 0
    frames, _ = read_video(edited.output)
    assert frames.shape == first.shape
    untouched = slice(0, 8)  # the intro (0.5 s at 8 fps) and the first shot's start: reused segments
    assert np.array_equal(frames[untouched], first[untouched])


def test_cached_shots_know_which_owner_made_them(pipe: Pipeline, tmp_path: Path) -> None:
    """The service charges a film for what its own task generated: a retry of the same task counts its
    earlier attempt's shots and reference frame; another task finding them in the cache does not."""
    board = parse_storyboard(five_shots())

    def shots(owner: str) -> tuple[list[str], list[bool], list[str]]:
        studio = Studio(Pipeline(CountingBackend(pipe.backend, images=True)), ShotCache(tmp_path / "cache"), owner=owner)
        results = studio.generate_shots(studio.plan(board))
        return [r.made_by for r in results], [r.cached for r in results], sorted(studio.references_made)

    assert shots("task-1") == (["task-1"] * 5, [False] * 5, ["red ball"])
    assert shots("task-1") == (["task-1"] * 5, [True] * 5, ["red ball"])  # the same task, retried
    assert shots("task-2") == ([""] * 5, [True] * 5, [])


def test_failed_shot_keeps_the_other_shots_cached(pipe: Pipeline, tmp_path: Path) -> None:
    cache = ShotCache(tmp_path / "cache")
    failing = CountingBackend(pipe.backend, fail_on="the red ball spins")
    board = parse_storyboard(five_shots())
    with pytest.raises(RuntimeError, match=r"shots\[3\]: generation failed: out of memory"):
        Studio(Pipeline(failing), cache).render(board, tmp_path / "film.mp4")
    assert not (tmp_path / "film.mp4").exists()
    assert len(cache.keys()) == 3
    retry = CountingBackend(pipe.backend)
    report = Studio(Pipeline(retry), cache).render(board, tmp_path / "film.mp4")
    assert retry.runs == ["the red ball spins", "the red ball again"] and report.generated == 2


def test_cache_key_follows_the_request_and_the_model(pipe: Pipeline, tmp_path: Path, tiny_dir: Path) -> None:
    from kinema.studio.cache import shot_key

    r1 = GenerationRequest(prompt="a", seed=1)
    r2 = GenerationRequest(prompt="a", seed=2)
    v1, v2 = pipe.validate(r1), pipe.validate(r2)
    assert shot_key(r1, v1, {}, "m") == shot_key(GenerationRequest(prompt="a", seed=1), pipe.validate(r1), {}, "m")
    assert shot_key(r1, v1, {}, "m") != shot_key(r2, v2, {}, "m")
    assert shot_key(r1, v1, {}, "m") != shot_key(r1, v1, {}, "other model")
    assert shot_key(r1, v1, {"image": "abc"}, "m") != shot_key(r1, v1, {"image": "abd"}, "m")


def _video(value: int) -> Video:
    return Video(frames=np.full((4, 8, 8, 3), value, np.uint8), fps=8.0, seed=value)


def test_prune_drops_least_recently_used_entries_but_never_what_this_render_used(tmp_path: Path) -> None:
    import os

    old = ShotCache(tmp_path)
    for i, key in enumerate(["a", "b", "c"]):
        old.put(key, _video(i))
        os.utime(old.path(key), (1_000 + i, 1_000 + i))  # a is the least recently used, c the most
    entry = old.path("a").stat().st_size
    unlimited = ShotCache(tmp_path)
    assert unlimited.prune() == 0 and unlimited.keys() == ["a", "b", "c"]

    cache = ShotCache(tmp_path, max_bytes=2 * entry + entry // 2)
    assert cache.get("a") is not None  # used by this render: kept, and now the most recent
    assert cache.prune() == entry
    assert cache.keys() == ["a", "c"]
    tight = ShotCache(tmp_path, max_bytes=1)
    tight.get("c")
    tight.prune()
    assert tight.keys() == ["c"]  # over the limit still: what is in use is never deleted
    with pytest.raises(ValueError, match="> 0 bytes"):
        ShotCache(tmp_path, max_bytes=0)


def test_a_size_limited_cache_keeps_the_film_it_just_rendered(pipe: Pipeline, tmp_path: Path) -> None:
    backend = CountingBackend(pipe.backend)
    first = parse_storyboard(five_shots())
    data = five_shots()
    data["shots"][2] = {"prompt": "a green star", "duration": 0.5}
    second = parse_storyboard(data)
    Studio(Pipeline(backend), ShotCache(tmp_path / "cache")).render(first, tmp_path / "first.mp4")
    Studio(Pipeline(backend), ShotCache(tmp_path / "cache", max_bytes=1)).render(second, tmp_path / "second.mp4")
    runs = len(backend.runs)
    again = Studio(Pipeline(backend), ShotCache(tmp_path / "cache")).render(second, tmp_path / "second.mp4")
    assert again.generated == 0 and again.segments_encoded == 0 and len(backend.runs) == runs  # all kept
    back = Studio(Pipeline(backend), ShotCache(tmp_path / "cache")).render(first, tmp_path / "first.mp4")
    assert backend.runs[runs:] == ["a blue square"] and back.segments_encoded > 0  # the first film's own shot was pruned
