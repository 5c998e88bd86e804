"""Storyboard format: validation names the bad field's path, media files are checked, the schema is published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kinema.errors import KinemaInputError
from kinema.request import GenerationRequest
from kinema.studio.load import load_storyboard, parse_storyboard, storyboard_json_schema
from kinema.studio.storyboard import SHOT_REQUEST_FIELDS, Shot
from kinema.studio.timeline import caption_cues, layout

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "src" / "kinema" / "studio" / "storyboard.schema.json"


def board(**extra: object) -> dict:
    data: dict = {"shots": [{"prompt": "a red ball", "duration": 2}, {"prompt": "a blue box", "duration": 1.5}]}
    data.update(extra)
    return data


def error_of(data: dict, **kw: object) -> str:
    with pytest.raises(KinemaInputError) as e:
        parse_storyboard(data, **kw)  # type: ignore[arg-type]
    return str(e.value)


def test_minimal_storyboard_has_defaults() -> None:
    b = parse_storyboard(board())
    assert b.fps == 24 and b.aspect_ratio == "16:9" and b.size() == (640, 360)
    assert [s.duration for s in b.shots] == [2, 1.5]


@pytest.mark.parametrize(
    "shots, expected",
    [
        ([{"prompt": "a", "duration": 1}] * 3 + [{"prompt": "b", "duration": -1}], "shots[3].duration: must be > 0, got -1"),
        ([{"prompt": "a", "duration": 0}], "shots[0].duration: must be > 0"),
        ([{"prompt": "a"}], "shots[0].duration: required"),
        ([{"prompt": "a", "duration": 1, "colour": "red"}], "shots[0].colour: unknown field"),
        ([{"prompt": "a", "duration": 1}, {"prompt": "a", "duration": 1, "seed": -3}], "shots[1].seed: must be between 0 and"),
        ([{"prompt": "   ", "duration": 1}], "shots[0].prompt: the prompt is empty"),
        ([{"prompt": "a", "duration": 1, "steps": 0}], "shots[0].steps: must be between 1 and"),
        ([{"prompt": "a", "duration": 1, "camera": {"pan": 5}}], "shots[0].camera.pan: camera pan must be between -2 and 2"),
        ([{"prompt": "a", "duration": 1, "transition": {"type": "spin"}}], "shots[0].transition.type"),
    ],
)
def test_errors_name_the_field_path(shots: list, expected: str) -> None:
    assert expected in error_of({"shots": shots})


def test_structure_errors() -> None:
    assert error_of({"shots": []}).startswith("shots:")
    assert error_of(board(fps=0)) .startswith("fps: must be > 0")
    assert "output.width: must be an even number" in error_of(board(output={"width": 101}))
    assert "captions[0]: end (1) must be after start (2)" in error_of(board(captions=[{"text": "x", "start": 2, "end": 1}]))
    assert "intro.background: must be a #rrggbb" in error_of(board(intro={"title": "T", "background": "red"}))
    assert "soundtrack: give a soundtrack file or a generated music bed" in error_of(board(soundtrack={"file": "a.wav", "music": True}), check_files=False)


def test_cross_field_errors() -> None:
    assert "shots[1].subject: unknown subject 'cat'" in error_of(board(shots=[{"prompt": "a", "duration": 1}, {"prompt": "b", "duration": 1, "subject": "cat"}]))
    assert "subjects[1].name: 'ball' is declared twice" in error_of(board(subjects=[{"name": "ball"}, {"name": "ball"}]))
    assert "shots[0].continuous" in error_of({"shots": [{"prompt": "a", "duration": 1, "continuous": True}]})
    long_fade = {"shots": [{"prompt": "a", "duration": 1, "transition": {"type": "crossfade", "duration": 2}}, {"prompt": "b", "duration": 3}]}
    assert error_of(long_fade).startswith("shots[0].transition.duration:")
    assert "outro.transition" in error_of(board(outro={"title": "End", "transition": "crossfade"}))
    assert "captions[0].start" in error_of(board(captions=[{"text": "late", "start": 100, "end": 101}]))


def test_missing_media_names_the_file(tmp_path: Path) -> None:
    msg = error_of(board(subjects=[{"name": "ball", "image": "refs/ball.png"}]), base_dir=tmp_path)
    assert msg == f"subjects[0].image: file not found: {tmp_path / 'refs' / 'ball.png'}"
    msg = error_of({"shots": [{"prompt": "a", "duration": 1, "image": "first.png"}]}, base_dir=tmp_path)
    assert msg == f"shots[0].image: file not found: {tmp_path / 'first.png'}"
    assert "output.font: file not found" in error_of(board(output={"font": "nope.ttf"}), base_dir=tmp_path)
    assert "soundtrack.file: file not found" in error_of(board(soundtrack={"file": "music.ogg"}), base_dir=tmp_path)


def test_media_paths_are_relative_to_the_storyboard(tmp_path: Path) -> None:
    (tmp_path / "ref.png").write_bytes(b"png")
    f = tmp_path / "film.yaml"
    f.write_text("subjects:\n  - name: ball\n    image: ref.png\nshots:\n  - prompt: the ball rolls\n    duration: 1\n    camera: pan left\n")
    b = load_storyboard(f)
    assert b.subjects[0].image == str(tmp_path / "ref.png")
    assert b.shots[0].camera is not None and b.shots[0].camera.pan == -1.0


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("shots:\n  - prompt: a\n    duration: [1\n")
    with pytest.raises(KinemaInputError, match=r"bad.yaml: invalid YAML at line \d+"):
        load_storyboard(f)
    with pytest.raises(KinemaInputError, match="storyboard not found"):
        load_storyboard(tmp_path / "none.yaml")


def test_shot_fields_are_generation_request_fields() -> None:
    """No parallel vocabulary: every request field a shot takes has GenerationRequest's type and default."""
    for name in SHOT_REQUEST_FIELDS:
        if name in GenerationRequest.model_fields:
            assert name in Shot.model_fields
            assert Shot.model_fields[name].annotation == GenerationRequest.model_fields[name].annotation
            assert Shot.model_fields[name].default == GenerationRequest.model_fields[name].default
    shot = parse_storyboard({"shots": [{"prompt": "a", "duration": 1, "guidance": 2.5, "negative_prompt": "blur"}]}).shots[0]
    req = GenerationRequest(**shot.request_fields(), seconds=shot.duration)
    assert (req.guidance, req.negative_prompt, req.seconds) == (2.5, "blur", 1)


def test_layout_overlaps_and_caption_cues() -> None:
    b = parse_storyboard(board(
        intro={"title": "T", "duration": 2, "transition": {"type": "crossfade", "duration": 0.5}},
        outro={"title": "End", "duration": 1},
        shots=[{"prompt": "a", "duration": 2, "transition": "wipe", "caption": "one"}, {"prompt": "b", "duration": 3, "caption": "two"}],
    ))  # fmt: skip
    film = layout(b)
    assert [round(i.start, 3) for i in film.items] == [0, 1.5, 3.0, 6.0]
    assert film.duration == pytest.approx(7.0)
    cues = caption_cues(b, film)
    assert [(c.start, c.end, c.text) for c in cues] == [(1.75, 3.25, "one"), (3.25, 6.0, "two")]


def test_sizes_for_aspect_ratios() -> None:
    assert parse_storyboard(board(aspect_ratio="9:16")).size() == (360, 640)
    assert parse_storyboard(board(aspect_ratio="1:1")).size() == (360, 360)
    assert parse_storyboard(board(aspect_ratio="4:3", output={"height": 240})).size() == (320, 240)
    assert parse_storyboard(board(output={"width": 1280, "height": 720})).size() == (1280, 720)


def test_published_schema_is_current() -> None:
    """src/kinema/studio/storyboard.schema.json is what `kinema story schema` prints (regenerate it if this fails)."""
    schema = storyboard_json_schema()
    assert json.loads(SCHEMA_FILE.read_text()) == schema
    assert "shots" in schema["required"] and "duration" in schema["$defs"]["Shot"]["required"]


def test_schema_validates_examples() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    examples = sorted((Path(__file__).resolve().parents[1] / "examples" / "storyboards").glob("*.yaml"))
    assert examples
    for path in examples:
        data = yaml.safe_load(path.read_text())
        jsonschema.validate(data, storyboard_json_schema())
        load_storyboard(path, check_files=False)
