"""GenerationRequest: the validation every caller shares, and its one-line errors."""

from __future__ import annotations

from typing import Any

import pytest

from kinema.errors import KinemaInputError
from kinema.request import MAX_PROMPT_CHARS, GenerationRequest, make_request


def test_defaults_are_none_for_the_backend_to_fill() -> None:
    r = make_request(prompt="  a red circle moving left ")
    assert r.prompt == "a red circle moving left"
    assert r.negative_prompt == ""
    assert (r.seed, r.steps, r.guidance, r.sampler, r.width, r.height, r.seconds, r.fps, r.format) == (None,) * 9


def test_valid_values_pass_through() -> None:
    r = make_request(prompt="x", seed=0, steps=200, guidance=0.0, width=64, height=112, seconds=0.5, fps=60, format="gif")
    assert (r.seed, r.steps, r.guidance, r.width, r.height, r.seconds, r.fps, r.format) == (0, 200, 0.0, 64, 112, 0.5, 60.0, "gif")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": ""}, "the prompt is empty"),
        ({"prompt": " \n\t "}, "the prompt is empty"),
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, f"the prompt is {MAX_PROMPT_CHARS + 1} characters; the limit is {MAX_PROMPT_CHARS}"),
        ({"negative_prompt": "y" * 1001}, "negative prompt is 1001 characters; the limit is 1000"),
        ({"steps": 0}, "steps must be between 1 and 200, got 0"),
        ({"steps": -1}, "steps must be between 1 and 200, got -1"),
        ({"steps": 201}, "steps must be between 1 and 200, got 201"),
        ({"seconds": 0}, "seconds must be > 0"),
        ({"seconds": -2}, "seconds must be > 0"),
        ({"seconds": float("nan")}, "seconds must be > 0"),
        ({"fps": 0}, "fps must be > 0 and <= 60"),
        ({"fps": 61}, "fps must be > 0 and <= 60"),
        ({"guidance": -0.5}, "guidance must be >= 0"),
        ({"width": 0}, "width must be between 1 and 4096"),
        ({"height": -8}, "height must be between 1 and 4096"),
        ({"seed": -1}, "seed must be between 0 and"),
        ({"format": "avi"}, "format:"),
        ({"steps": "many"}, "steps:"),
        ({"size": 64}, "unknown option 'size'"),
    ],
)
def test_bad_values_give_one_line_naming_the_limit(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(KinemaInputError) as exc:
        make_request(**{"prompt": "a red circle", **fields})
    text = str(exc.value)
    assert message in text
    assert "\n" not in text


def test_request_is_immutable_and_serialisable() -> None:
    r = make_request(prompt="a red circle", seed=5, steps=10)
    with pytest.raises(Exception):
        r.steps = 3  # type: ignore[misc]
    assert GenerationRequest.model_validate_json(r.model_dump_json()) == r
