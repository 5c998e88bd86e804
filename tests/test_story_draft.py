"""Text-to-storyboard drafts (built-in and LLM hook) and the `kinema story` command."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import build_tiny_model
from typer.testing import CliRunner

from kinema.cli import app
from kinema.errors import KinemaInputError
from kinema.studio.draft import (
    CallableDrafter,
    DraftOptions,
    draft_storyboard,
    load_drafter,
    reading_seconds,
    sentences,
)

PARAGRAPH = "A red ball wakes up. It rolls to the left across a long grid, looking for a friend! 青い四角に出会う。"


def test_one_shot_per_sentence_with_durations_from_length() -> None:
    assert sentences(PARAGRAPH) == ["A red ball wakes up.", "It rolls to the left across a long grid, looking for a friend!", "青い四角に出会う。"]
    _, board = draft_storyboard(PARAGRAPH, DraftOptions(title="Ball"))
    assert [s.caption for s in board.shots] == sentences(PARAGRAPH)
    durations = [s.duration for s in board.shots]
    assert durations[1] > durations[0]  # longer sentence, longer shot
    assert all(1.0 <= d <= 4.0 for d in durations)
    assert board.intro is not None and board.intro.title == "Ball"
    assert board.soundtrack is not None and board.soundtrack.narration is not None
    assert reading_seconds("青い四角に出会う。", DraftOptions()) == pytest.approx(9 / 5.0)  # 9 wide characters at 5/s


def test_empty_paragraph_is_refused() -> None:
    with pytest.raises(KinemaInputError, match="paragraph is empty"):
        draft_storyboard("   ")


def test_llm_hook_output_is_validated() -> None:
    seen: dict[str, Any] = {}

    def llm(paragraph: str, schema: dict) -> str:
        seen["schema"] = schema
        return json.dumps({"title": "LLM", "shots": [{"prompt": paragraph[:20], "duration": 2, "camera": "zoom in"}]})

    _, board = draft_storyboard(PARAGRAPH, drafter=CallableDrafter(llm))
    assert board.title == "LLM" and board.shots[0].camera.zoom == 1.0
    assert "shots" in seen["schema"]["properties"]

    def broken(paragraph: str, schema: dict) -> dict:
        return {"shots": [{"prompt": "x", "duration": -2}]}

    with pytest.raises(KinemaInputError, match=r"drafted storyboard is invalid: shots\[0\].duration: must be > 0"):
        draft_storyboard(PARAGRAPH, drafter=CallableDrafter(broken))


def test_load_drafter_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("my_llm_hook")
    module.draft = lambda paragraph, schema: {"shots": [{"prompt": "p", "duration": 1}]}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "my_llm_hook", module)
    _, board = draft_storyboard("x.", drafter=load_drafter("my_llm_hook:draft"))
    assert board.shots[0].prompt == "p"
    with pytest.raises(KinemaInputError, match="module:function"):
        load_drafter("no_colon")


runner = CliRunner()


def test_cli_draft_schema_and_bad_storyboard(tmp_path: Path) -> None:
    out = tmp_path / "draft.yaml"
    result = runner.invoke(app, ["story", "draft", PARAGRAPH, "-o", str(out), "--title", "Ball"])
    assert result.exit_code == 0, result.output
    assert len(yaml.safe_load(out.read_text())["shots"]) == 3

    result = runner.invoke(app, ["story", "schema"])
    assert result.exit_code == 0 and json.loads(result.output)["title"] == "kinema storyboard"

    bad = tmp_path / "bad.yaml"
    bad.write_text("shots:\n  - {prompt: a, duration: 1}\n  - {prompt: b, duration: 1}\n  - {prompt: c, duration: 1}\n  - {prompt: d, duration: 0}\n")
    result = runner.invoke(app, ["story", str(bad), "-o", str(tmp_path / "f.mp4")])
    assert result.exit_code != 0
    assert isinstance(result.exception, KinemaInputError) and str(result.exception) == "shots[3].duration: must be > 0, got 0.0"


def test_cli_renders_a_storyboard(tmp_path: Path, one_thread: Any) -> None:
    model = build_tiny_model(tmp_path / "model")
    board = tmp_path / "film.yaml"
    board.write_text(
        "title: Tiny\nfps: 8\noutput: {height: 36}\nintro: {title: Tiny 小さい, duration: 0.5}\n"
        "shots:\n  - {prompt: a red ball, duration: 1, caption: hello}\n  - {prompt: a blue box, duration: 1, transition: wipe}\n"
    )
    args = ["story", str(board), "-o", str(tmp_path / "film.mp4"), "--model", str(model), "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "film.mp4").is_file() and (tmp_path / "film.srt").is_file()
    assert "2 shots generated, 0 from cache" in result.output
    result = runner.invoke(app, args)
    assert "0 shots generated, 2 from cache" in result.output
    plan = runner.invoke(app, ["story", str(board), "--plan", "--model", str(model)])
    assert plan.exit_code == 0 and json.loads(plan.output)["shots"][1]["frames"] == 8
