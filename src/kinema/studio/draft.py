"""Text to storyboard: a paragraph becomes a draft the user edits (one shot per sentence).

The built-in `SentenceDrafter` is deterministic: it splits sentences (Latin
and CJK punctuation), makes each one a shot whose prompt and caption are the
sentence, and times it by reading speed (words, or characters for CJK text),
clamped to the model's shot lengths. A `Drafter` is anything with
`draft(paragraph, options) -> storyboard data`; `CallableDrafter` plugs in an
LLM as a plain function `fn(paragraph, schema) -> dict | JSON/YAML text`,
named on the command line as `module:function`. Whatever a drafter returns
is validated like a storyboard file, so an LLM cannot hand back a broken one.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kinema.errors import KinemaInputError
from kinema.request import MAX_PROMPT_CHARS
from kinema.studio.load import parse_storyboard, parse_text, storyboard_json_schema
from kinema.studio.storyboard import Storyboard
from kinema.studio.text import is_wide

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])|\n+")


@dataclass(frozen=True)
class DraftOptions:
    title: str = ""
    aspect_ratio: str = "16:9"
    fps: float = 24.0
    words_per_second: float = 2.5  # a calm narration pace
    cjk_chars_per_second: float = 5.0
    min_seconds: float = 1.0
    max_seconds: float = 4.0  # the built-in model's longest shot
    narration: bool = True
    music: bool = True
    transition: str = "crossfade"


class Drafter(Protocol):
    def draft(self, paragraph: str, options: DraftOptions) -> dict[str, Any]: ...


def sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(paragraph) if s and s.strip()]


def reading_seconds(text: str, options: DraftOptions) -> float:
    """How long a sentence takes to read (or say): wide characters at CJK pace, words at Latin pace."""
    wide = sum(is_wide(c) for c in text)
    words = len(re.findall(r"[^\W_]+", "".join(c if not is_wide(c) else " " for c in text)))
    seconds = words / options.words_per_second + wide / options.cjk_chars_per_second
    return round(min(options.max_seconds, max(options.min_seconds, seconds)), 2)


class SentenceDrafter:
    """One shot per sentence; durations from text length."""

    def draft(self, paragraph: str, options: DraftOptions) -> dict[str, Any]:
        parts = sentences(paragraph)
        if not parts:
            raise KinemaInputError("the paragraph is empty; write a few sentences to draft from")
        shots = [{"prompt": s[:MAX_PROMPT_CHARS], "duration": reading_seconds(s, options), "caption": s} for s in parts]
        data: dict[str, Any] = {"title": options.title, "aspect_ratio": options.aspect_ratio, "fps": options.fps, "transition": options.transition, "shots": shots}
        if options.title:
            data["intro"] = {"title": options.title, "duration": 2.0}
            data["outro"] = {"title": "The End", "duration": 1.5}
        if options.narration or options.music:
            data["soundtrack"] = {"narration": options.narration, "music": options.music}
        return data


class CallableDrafter:
    """An LLM (or any function) as a drafter: `fn(paragraph, json_schema) -> dict or JSON/YAML text`."""

    def __init__(self, fn: Callable[[str, dict[str, Any]], Any], name: str = "drafter"):
        self.fn, self.name = fn, name

    def draft(self, paragraph: str, options: DraftOptions) -> dict[str, Any]:
        out = self.fn(paragraph, storyboard_json_schema())
        if isinstance(out, str):
            out = parse_text(out, f"{self.name} output")
        if not isinstance(out, dict):
            raise KinemaInputError(f"{self.name} returned {type(out).__name__}, not a storyboard mapping")
        return out


def load_drafter(spec: str) -> CallableDrafter:
    """`package.module:function` -> a CallableDrafter (how the CLI's --llm names a hook)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise KinemaInputError(f"--llm must be module:function, got {spec!r}")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise KinemaInputError(f"cannot load drafter {spec!r}: {e}") from None
    if not callable(fn):
        raise KinemaInputError(f"drafter {spec!r} is not callable")
    return CallableDrafter(fn, spec)


def draft_storyboard(paragraph: str, options: DraftOptions | None = None, drafter: Drafter | None = None) -> tuple[dict[str, Any], Storyboard]:
    """(the draft as plain data, ready to save and edit; the same validated)."""
    options = options or DraftOptions()
    data = (drafter or SentenceDrafter()).draft(paragraph, options)
    try:
        board = parse_storyboard(data, check_files=False)
    except KinemaInputError as e:
        raise KinemaInputError(f"the drafted storyboard is invalid: {e}") from None
    return data, board


def to_yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100)
