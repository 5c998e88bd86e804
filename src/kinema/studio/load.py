"""Storyboard files in: YAML or JSON -> a validated `Storyboard`, every error naming its field path.

Validation runs in three passes, each reporting the first problem as one line
`path: message` (a `KinemaInputError`):

1. structure and value ranges (the pydantic models of `storyboard.py`);
2. each shot's generation fields through `GenerationRequest` itself, so a shot
   is refused exactly as `kinema generate` would refuse the same options;
3. what spans fields: subject names, caption times, media files on disk
   (relative paths are taken from the storyboard's directory and made absolute).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kinema.errors import KinemaInputError
from kinema.request import GenerationRequest
from kinema.studio.storyboard import MAX_FILM_SECONDS, MEDIA_FIELDS, Storyboard

# Storyboard name of a GenerationRequest field, where it differs.
_REQUEST_TO_SHOT = {"seconds": "duration"}


def field_path(loc: tuple[Any, ...]) -> str:
    """('shots', 3, 'duration') -> 'shots[3].duration'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "tagged-union", "json-or-python")):
            continue  # pydantic's internal validator names, not fields
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(err: dict[str, Any], field: str) -> str:
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        return "unknown field"
    if err.get("type") == "missing":
        return "required"
    # Request validators name their field ("seed must be ..."): the path already does.
    for name in (field, *_REQUEST_TO_SHOT):
        if msg.startswith(f"{name} "):
            return msg[len(name) + 1 :]
    return msg


def validation_error(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> KinemaInputError:
    err = exc.errors()[0]
    loc = tuple(prefix) + tuple(_REQUEST_TO_SHOT.get(p, p) if isinstance(p, str) else p for p in err.get("loc", ()))
    path = field_path(loc)
    last = next((p for p in reversed(loc) if isinstance(p, str)), "")
    msg = _message(err, str(last))
    return KinemaInputError(f"{path}: {msg}" if path else msg)


def parse_storyboard(data: Any, base_dir: str | Path | None = None, *, check_files: bool = True) -> Storyboard:
    """A validated Storyboard from plain data (what a JSON API receives).

    `base_dir` anchors relative media paths (the storyboard file's directory);
    None means the current directory.
    """
    if not isinstance(data, dict):
        raise KinemaInputError(f"a storyboard is a mapping (title, shots, ...), got {type(data).__name__}")
    try:
        board = Storyboard.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
    for i, shot in enumerate(board.shots):
        try:
            GenerationRequest(**shot.request_fields(), seconds=shot.duration)
        except ValidationError as exc:
            raise validation_error(exc, ("shots", i)) from None
    _check_references(board)
    return _resolve_media(board, Path(base_dir) if base_dir is not None else Path.cwd(), check_files)


def load_storyboard(path: str | Path, *, check_files: bool = True) -> Storyboard:
    """Read a .yaml/.yml/.json storyboard file; media paths are relative to the file."""
    p = Path(path)
    if not p.is_file():
        raise KinemaInputError(f"storyboard not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise KinemaInputError(f"cannot read storyboard {p}: {e}") from None
    return parse_storyboard(parse_text(text, p.name), p.resolve().parent, check_files=check_files)


def parse_text(text: str, name: str = "storyboard") -> Any:
    """YAML (a superset of JSON) or JSON text -> data; syntax errors name the file and line."""
    if name.lower().endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise KinemaInputError(f"{name}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    try:
        import yaml
    except ModuleNotFoundError:  # pragma: no cover - yaml comes with the studio extra
        raise KinemaInputError("YAML storyboards need PyYAML: pip install 'kinema[studio]' (or write JSON)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise KinemaInputError(f"{name}: invalid YAML{where}: {problem}") from None


def _check_references(board: Storyboard) -> None:
    names = [s.name for s in board.subjects]
    for i, s in enumerate(board.subjects):
        if s.name in names[:i]:
            raise KinemaInputError(f"subjects[{i}].name: {s.name!r} is declared twice")
    for i, shot in enumerate(board.shots):
        for name in shot.subject_names():
            if name not in names:
                known = ", ".join(names) if names else "none are declared"
                raise KinemaInputError(f"shots[{i}].subject: unknown subject {name!r} (declared: {known})")
        if shot.continuous and i == 0:
            raise KinemaInputError("shots[0].continuous: the first shot has no previous shot to continue")
    ids = [shot.id for shot in board.shots if shot.id is not None]
    for i, shot in enumerate(board.shots):
        if shot.id is not None and ids.count(shot.id) > 1:
            raise KinemaInputError(f"shots[{i}].id: {shot.id!r} is used by more than one shot")
    if board.outro is not None and board.outro.transition is not None:
        raise KinemaInputError("outro.transition: the outro comes last; set the last shot's transition instead")
    from kinema.studio.timeline import layout  # the timeline knows how long the film is

    film = layout(board)
    if film.duration > MAX_FILM_SECONDS:
        raise KinemaInputError(f"shots: the film would last {film.duration:g} s; the limit is {MAX_FILM_SECONDS:g} s")
    for k, item in enumerate(film.items):
        if item.overlap_in + item.overlap_out > item.duration + 1e-9:
            blame = item.transition_path if item.overlap_out > 0 else film.items[k - 1].transition_path
            raise KinemaInputError(
                f"{blame}.duration: transitions into and out of {item.path} overlap "
                f"{item.overlap_in + item.overlap_out:g} s but it lasts only {item.duration:g} s"
            )
    total = film.duration
    for i, cap in enumerate(board.captions):
        if cap.start >= total:
            raise KinemaInputError(f"captions[{i}].start: {cap.start:g} s is after the end of the film ({total:g} s)")


def _resolve_media(board: Storyboard, base: Path, check_files: bool) -> Storyboard:
    """Absolute media paths (relative ones from `base`); with `check_files`, missing files are errors."""

    def resolve(path: str, where: str) -> str:
        p = Path(path).expanduser()
        p = p if p.is_absolute() else base / p
        if check_files and not p.is_file():
            raise KinemaInputError(f"{where}: file not found: {p}")
        return str(p)

    shots = []
    for i, shot in enumerate(board.shots):
        update: dict[str, Any] = {}
        for name in MEDIA_FIELDS:
            value = getattr(shot, name, None)
            if value is not None:
                update[name] = resolve(value, f"shots[{i}].{name}")
        keyframes = getattr(shot, "keyframes", ())
        if keyframes:
            update["keyframes"] = tuple(k.model_copy(update={"image": resolve(k.image, f"shots[{i}].keyframes[{j}].image")}) for j, k in enumerate(keyframes))
        shots.append(shot.model_copy(update=update) if update else shot)
    subjects = [s.model_copy(update={"image": resolve(s.image, f"subjects[{i}].image")}) if s.image else s for i, s in enumerate(board.subjects)]
    update = {"shots": shots, "subjects": subjects}
    if board.soundtrack is not None and board.soundtrack.file is not None:
        update["soundtrack"] = board.soundtrack.model_copy(update={"file": resolve(board.soundtrack.file, "soundtrack.file")})
    if board.output.font is not None:
        update["output"] = board.output.model_copy(update={"font": resolve(board.output.font, "output.font")})
    return board.model_copy(update=update)


def storyboard_json_schema() -> dict[str, Any]:
    """The published JSON Schema of the storyboard format (what `kinema story schema` prints)."""
    schema = Storyboard.model_json_schema()
    _add_shorthands(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://kinema.dev/schemas/storyboard-v1.json"
    schema["title"] = "kinema storyboard"
    return schema


def _add_shorthands(schema: dict[str, Any]) -> None:
    """Declare the shorthands the models accept before validation: `camera: pan left`,
    `transition: crossfade`, `narration: true`."""
    from kinema.studio.storyboard import (
        _CAMERA_MOVES,
        _TRANSITION_ALIASES,
        TransitionType,
    )

    defs = schema["$defs"]
    camera = defs["Shot"]["properties"]["camera"]
    camera["anyOf"] = [*camera.get("anyOf", [camera]), {"type": "string", "enum": sorted(_CAMERA_MOVES)}]
    names = sorted(set(TransitionType.__args__) | set(_TRANSITION_ALIASES))
    ref = {"$ref": "#/$defs/Transition"}

    def with_string(prop: dict[str, Any]) -> dict[str, Any]:
        options = prop.pop("anyOf", None) or [{k: prop.pop(k) for k in list(prop) if k in ("$ref", "type")}]
        prop["anyOf"] = [*options, {"type": "string", "enum": names}]
        return prop

    for model in ("Storyboard", "Shot", "Card"):
        props = defs[model]["properties"] if model != "Storyboard" else schema["properties"]
        if ref in props["transition"].get("anyOf", []) or props["transition"].get("$ref") == ref["$ref"]:
            with_string(props["transition"])
    for key in ("narration", "music"):
        prop = defs["Soundtrack"]["properties"][key]
        prop["anyOf"] = [*prop.get("anyOf", []), {"type": "boolean"}]
