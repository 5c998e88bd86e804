"""Evaluation: flicker metric, accuracy aggregation, fixed suites, the runner and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from kinema.errors import KinemaInputError
from kinema.evaluate.metrics import attribute_accuracy, temporal_flicker
from kinema.evaluate.run import evaluate, ground_truth, write_report
from kinema.evaluate.suite import build_suite
from kinema.world.captions import canonical_caption
from kinema.world.scene import CAMERAS, HELD_OUT, MOTIONS


def test_flicker_of_a_frozen_video_is_perfect():
    frames = np.full((5, 8, 8, 3), 77, np.uint8)
    assert temporal_flicker(frames) == (0.0, 1.0)


def test_flicker_of_black_white_alternation_is_worst():
    frames = np.zeros((4, 8, 8, 3), np.uint8)
    frames[1::2] = 255
    mad, s = temporal_flicker(frames)
    assert mad == pytest.approx(255.0) and s == pytest.approx(0.0)


def test_flicker_averages_consecutive_pair_differences():
    # steps of 10 then 30 on half the pixels: pair means 5 and 15 -> mean 10
    frames = np.zeros((3, 4, 4, 3), np.uint8)
    frames[1, :2] = 10
    frames[2, :2] = 40
    mad, s = temporal_flicker(frames)
    assert mad == pytest.approx(10.0)
    assert s == pytest.approx(245.0 / 255.0)


def test_flicker_single_frame_and_bad_shape():
    assert temporal_flicker(np.zeros((1, 4, 4, 3), np.uint8)) == (0.0, 1.0)
    with pytest.raises(KinemaInputError):
        temporal_flicker(np.zeros((3, 4, 4), np.uint8))


def test_attribute_accuracy():
    acc = attribute_accuracy([{"count": True, "color": False}, {"count": True, "color": True}, {"count": False}])
    assert acc["count"] == pytest.approx(2 / 3)
    assert acc["color"] == pytest.approx(1 / 2)
    assert acc["overall"] == pytest.approx(3 / 5)


def test_suites_are_deterministic_and_prefix_stable():
    a = build_suite("seen", n_items=9)
    assert a == build_suite("seen", n_items=9)
    assert build_suite("seen", n_items=4) == a[:4]
    assert [i.prompt for i in a] == [canonical_caption(i.scene) for i in a]
    assert a != build_suite("heldout", n_items=9)


def test_heldout_suite_holds_out_and_seen_does_not():
    seen = build_suite("seen", n_items=18)
    held = build_suite("heldout", n_items=18)
    assert not any(HELD_OUT.scene_is_heldout(i.scene) for i in seen)
    assert all(HELD_OUT.scene_is_heldout(i.scene) for i in held)
    for suite in (seen, held):
        assert {i.scene.camera for i in suite} == set(CAMERAS)
        assert {o.motion for i in suite for o in i.scene.objects} == set(MOTIONS)
        assert {len(i.scene.objects) for i in suite} == {1, 2}
        assert {(i.clip.height, i.clip.width) for i in suite} == {(64, 64), (64, 112), (112, 64)}
        assert all(i.clip.num_frames == 17 and i.clip.fps == 8.0 for i in suite)


def test_build_suite_rejects_bad_input():
    for bad in (dict(name="train"), dict(name="seen", size=60), dict(name="seen", n_items=0)):
        with pytest.raises(KinemaInputError):
            build_suite(**bad)


def test_evaluate_scores_ground_truth_high_and_blank_videos_low():
    suite = build_suite("heldout", n_items=4)
    good = evaluate(ground_truth, suite, progress=False)
    assert good["n_items"] == 4 and len(good["items"]) == 4
    assert good["overall"] >= 0.9
    assert 0.0 < good["flicker"]["score"] <= 1.0

    def blank(item):
        return np.zeros((item.clip.num_frames, item.clip.height, item.clip.width, 3), np.uint8)

    bad = evaluate(blank, suite, progress=False)
    assert bad["accuracy"]["count"] == 0.0 and bad["accuracy"]["color"] == 0.0
    assert bad["flicker"] == {"mean_abs_diff": 0.0, "score": 1.0}


def test_write_report_is_atomic_json(tmp_path):
    path = write_report({"a": [1, 2.5], "b": {"c": True}}, tmp_path / "sub" / "r.json")
    assert json.loads(path.read_text()) == {"a": [1, 2.5], "b": {"c": True}}
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]


def test_cli_ground_truth_writes_report(tmp_path):
    from kinema.cli import app

    out = tmp_path / "eval.json"
    result = CliRunner().invoke(
        app, ["evaluate", "--suite", "seen", "--json", str(out), "--ground-truth", "--limit", "3", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["model"] == "ground-truth"
    seen = report["suites"]["seen"]
    assert seen["n_items"] == 3
    assert set(seen["accuracy"]) == {"count", "color", "shape", "motion", "camera"}
    assert "overall" in result.output and "seen" in result.output


def test_cli_rejects_bad_limit(tmp_path):
    from kinema.cli import app

    result = CliRunner().invoke(app, ["evaluate", "--json", str(tmp_path / "x.json"), "--ground-truth", "--limit", "0"])
    assert isinstance(result.exception, KinemaInputError)
    assert not (tmp_path / "x.json").exists()


def test_several_seeds_ask_each_prompt_again_and_report_the_spread():
    suite = build_suite("seen", n_items=2)
    own = {item.seed for item in suite}
    asked = []

    def right_only_with_its_own_seed(item):
        """Ground truth for the suite's own seed, a blank clip for the others."""
        asked.append((item.prompt, item.seed))
        if item.seed in own:
            return ground_truth(item)
        return np.zeros((item.clip.num_frames, item.clip.height, item.clip.width, 3), np.uint8)

    report = evaluate(right_only_with_its_own_seed, suite, progress=False, seeds=3)
    assert report["seeds"] == 3 and report["n_items"] == 6
    assert [p for p, _ in asked] == [suite[0].prompt] * 3 + [suite[1].prompt] * 3
    assert asked[0][1] == suite[0].seed and asked[3][1] == suite[1].seed  # the suite's own seed comes first
    assert len({s for _, s in asked}) == 6
    first, *others = report["overall_per_seed"]
    assert first == evaluate(ground_truth, suite, progress=False)["overall"]
    assert len(others) == 2 and all(o < first for o in others)
    assert report["overall"] == pytest.approx(np.mean(report["overall_per_seed"]))
    assert report["overall_stderr"] == pytest.approx(np.std(report["overall_per_seed"], ddof=1) / np.sqrt(3))
    one = evaluate(ground_truth, suite, progress=False)
    assert one["seeds"] == 1 and one["overall_stderr"] is None and one["n_items"] == 2


def test_cli_rejects_zero_seeds(tmp_path):
    from kinema.cli import app

    result = CliRunner().invoke(app, ["evaluate", "--json", str(tmp_path / "x.json"), "--ground-truth", "--seeds", "0"])
    assert isinstance(result.exception, KinemaInputError) and "--seeds must be at least 1" in str(result.exception)
    assert not (tmp_path / "x.json").exists()
