"""Composition: fonts (CJK included), wrapping in the safe area, transitions, cards, the frame composer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kinema.errors import KinemaInputError
from kinema.studio import transitions
from kinema.studio.compose import Clip, FilmComposer, fit_frame
from kinema.studio.load import parse_storyboard
from kinema.studio.storyboard import Transition
from kinema.studio.text import (
    TextStyle,
    caption_overlay,
    card_frame,
    load_font,
    tokens,
    wrap,
)
from kinema.studio.timeline import caption_cues, layout

STYLE = TextStyle(font=None, safe_area=0.05)


def _ink(font: object, ch: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    image = Image.new("L", (48, 48))
    ImageDraw.Draw(image).text((4, 0), ch, font=font, fill=255)
    return np.asarray(image)


def test_default_font_has_cjk_glyphs() -> None:
    """Real glyphs, not tofu: different characters ink differently (missing glyphs all draw the same box)."""
    font = load_font(None, 32)
    glyphs = {ch: _ink(font, ch) for ch in ("日", "本", "본", "ボ", "A")}
    assert all(g.sum() > 0 for g in glyphs.values())
    arrays = list(glyphs.values())
    assert all(not np.array_equal(arrays[i], arrays[j]) for i in range(len(arrays)) for j in range(i + 1, len(arrays)))


def test_unreadable_font_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.ttf"
    bad.write_bytes(b"not a font")
    with pytest.raises(KinemaInputError, match=f"cannot read font {bad}"):
        load_font(bad, 20)
    with pytest.raises(KinemaInputError, match="font not found: .*missing.otf"):
        load_font(tmp_path / "missing.otf", 20)


def test_cjk_breaks_between_characters_and_keeps_punctuation_attached() -> None:
    assert tokens("赤いボール。") == ["赤", "い", "ボー", "ル。"]  # ー and 。 never start a line
    assert tokens("the red ball") == ["the ", "red ", "ball"]
    font = load_font(None, 20)
    lines = wrap("赤いボールが左に動く。長い旅が始まる、とても長い旅。", font, 120)
    assert len(lines) > 1
    assert all(font.getlength(line) <= 120 for line in lines)
    assert not any(line.startswith(("。", "、")) for line in lines)
    assert "".join(lines) == "赤いボールが左に動く。長い旅が始まる、とても長い旅。"


def test_latin_wraps_at_words_inside_the_width() -> None:
    font = load_font(None, 20)
    text = "The red ball sets off on a long journey across the grid"
    lines = wrap(text, font, 200)
    assert " ".join(lines) == text
    assert all(font.getlength(line) <= 200 for line in lines)
    assert len(wrap("Supercalifragilisticexpialidocious", font, 60)) > 1  # an overlong word is split


def test_caption_stays_inside_the_safe_area() -> None:
    w, h = 320, 180
    ov = caption_overlay("A very long caption " * 12, w, h, STYLE, 0.08)
    margin_x, margin_y = int(w * 0.05), int(h * 0.05)
    assert ov.x >= margin_x and ov.x + ov.rgb.shape[1] <= w - margin_x
    assert ov.y + ov.rgb.shape[0] <= h - margin_y and ov.y >= 0


def test_card_draws_title_text() -> None:
    frame = card_frame("映画 The Film", "subtitle", 160, 90, STYLE, "#000000", "#ffffff")
    assert frame.shape == (90, 160, 3) and frame.dtype == np.uint8
    assert frame.max() > 200  # white text on black
    assert frame[:5].max() == 0  # nothing in the top margin


def test_transitions() -> None:
    a = np.zeros((4, 8, 3), np.uint8)
    b = np.full((4, 8, 3), 200, np.uint8)
    assert transitions.apply(Transition(type="crossfade"), a, b, 0.5).mean() == pytest.approx(100, abs=1)
    assert transitions.apply(Transition(type="fade-black"), b, b, 0.5).max() == 0
    assert transitions.apply(Transition(type="fade-black"), b, b, 0.75).mean() == pytest.approx(100, abs=1)
    wiped = transitions.apply(Transition(type="wipe", direction="left"), a, b, 0.25)
    assert wiped[:, :6].max() == 0 and wiped[:, 6:].min() == 200
    down = transitions.apply(Transition(type="wipe", direction="down"), a, b, 0.5)
    assert down[:2].min() == 200 and down[2:].max() == 0
    assert Transition.model_validate("fade through black").type == "fade-black"


def test_fit_frame_cover_and_contain() -> None:
    src = np.full((32, 32, 3), 255, np.uint8)
    cover = fit_frame(src, 64, 36, "cover")
    assert cover.shape == (36, 64, 3) and cover.min() > 200
    contain = fit_frame(src, 64, 36, "contain")
    assert contain.shape == (36, 64, 3) and contain[:, :5].max() == 0 and contain[:, 30].min() > 200


def test_composer_places_items_on_the_timeline() -> None:
    b = parse_storyboard({
        "fps": 10, "output": {"width": 64, "height": 36, "burn_captions": True},
        "intro": {"title": "T", "duration": 1, "background": "#0000ff"},
        "shots": [
            {"prompt": "a", "duration": 1, "transition": {"type": "crossfade", "duration": 0.4}},
            {"prompt": "b", "duration": 1, "caption": "hi"},
        ],
    })  # fmt: skip
    film = layout(b)
    red = Clip(np.tile(np.array([255, 0, 0], np.uint8), (8, 32, 32, 1)), 8.0)
    green = Clip(np.tile(np.array([0, 255, 0], np.uint8), (8, 32, 32, 1)), 8.0)
    comp = FilmComposer(b, film, [red, green], caption_cues(b, film))
    assert comp.num_frames == round(film.duration * 10) == 26
    assert tuple(comp.frame(0)[2, 2]) == (0, 0, 255)  # intro card background
    assert tuple(comp.frame(12)[2, 2]) == (255, 0, 0)  # first shot
    mid = comp.picture(1.8)  # halfway through the 0.4 s crossfade starting at 1.6
    assert int(mid[2, 2, 0]) == pytest.approx(127, abs=3) and int(mid[2, 2, 1]) == pytest.approx(127, abs=3)
    plain = comp.picture(2.3)
    captioned = comp.frame(23)
    assert tuple(plain[2, 2]) == (0, 255, 0)
    assert not np.array_equal(plain, captioned)  # the caption is drawn
