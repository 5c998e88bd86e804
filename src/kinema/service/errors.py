"""Machine-readable API errors: every 4xx carries `{"error": {"code": "a.b.c", "message": "..."}}`."""

from __future__ import annotations

import re
from typing import Any

from kinema.errors import KinemaInputError


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


_MESSAGE_CODES: tuple[tuple[str, str], ...] = (
    # media inputs (kinema.conditioning), checked when a request is validated
    (r"too short to extend", "input.video.too_short"),
    (r"keyframe at .* past the end|two images are given for the same frame", "input.keyframes.invalid"),
    (r"cannot read .* as a video|has no video frames|video to extend not found", "input.video.unreadable"),
    (r"decompression bomb", "input.image.bomb"),
    (r"^image .* megapixels", "input.image.too_large"),
    (r"cannot read .* as an image|^image not found", "input.image.unreadable"),
    (r"negative prompt is \d+ (characters|tokens)", "input.negative_prompt.too_long"),
    (r"prompt is \d+ (characters|tokens)", "input.prompt.too_long"),
    (r"prompt is empty", "input.prompt.empty"),
    (r"^(size|width|height) .*(not supported|multiple of)", "input.size.unsupported"),
    (r"^fps ", "input.fps.unsupported"),
    (r"^seconds ", "input.seconds.unsupported"),
    (r"^candidates ", "input.candidates.unsupported"),
    (r"sampler", "input.sampler.unknown"),
    (r"^unknown option", "input.field.unknown"),
    (r"camera", "input.camera.invalid"),
    (r"does not support", "input.task.unsupported"),
)


def code_for_message(message: str) -> str:
    """The code of a KinemaInputError from the engine, whose messages name the broken limit."""
    for pattern, code in _MESSAGE_CODES:
        if re.search(pattern, message):
            return code
    return "input.invalid"


def from_input_error(exc: KinemaInputError) -> ApiError:
    return ApiError(422, code_for_message(str(exc)), str(exc))


def from_validation_errors(errors: list[dict[str, Any]]) -> ApiError:
    """FastAPI/pydantic request errors -> the first one, as a dotted code."""
    err = errors[0] if errors else {"type": "value_error", "loc": (), "msg": "invalid request"}
    if tuple(err.get("loc", ()))[:2] == ("body", "storyboard") and len(err.get("loc", ())) > 2:
        from kinema.service.storyboards import storyboard_validation_error  # messages name the field path: shots[3].duration

        return storyboard_validation_error(err)
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
    field = ".".join(loc) or "body"
    kind = str(err.get("type", ""))
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if kind == "json_invalid":
        return ApiError(400, "input.json.malformed", "the body is not valid JSON")
    if kind == "extra_forbidden":
        return ApiError(422, "input.field.unknown", f"unknown field {field!r}")
    if kind == "missing":
        return ApiError(422, f"input.{field}.missing", f"{field} is required")
    if kind in ("model_attributes_type", "dict_type") and field == "body":
        return ApiError(400, "input.json.malformed", "the body must be a JSON object")
    if kind == "value_error":
        code = code_for_message(msg)
        return ApiError(422, code if code != "input.invalid" else f"input.{field}.invalid", msg)
    return ApiError(422, f"input.{field}.invalid", f"{field}: {msg}")
