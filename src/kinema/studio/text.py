"""Titles and captions drawn with a real font: wrapping (CJK included) inside the title-safe area.

The default font is Noto Sans CJK (the `noto-cjk-sans-jp-regular` package of
the `studio` extra), which has Latin, kana, hanzi/kanji and hangul glyphs, so
one font covers every caption without a fallback chain. Wrapping breaks
between words in spaced scripts and between characters in CJK text, and keeps
closing punctuation (、。」！…) off the start of a line (kinsoku).
Text blocks are rendered once as RGBA images and alpha-blended onto frames.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from kinema.errors import KinemaInputError

_NO_LINE_START = set("、。，．,.!?！？：；:;」』）)]】〉》〕’”ー〜…‥・ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮ")
_NO_LINE_END = set("「『（([【〈《〔‘“")


def default_font_path() -> Path:
    try:
        import noto_cjk_sans_jp_regular
    except ModuleNotFoundError:
        raise KinemaInputError("no font: install the studio extra (pip install 'kinema[studio]') or set output.font to a .ttf/.otf file") from None
    return Path(str(noto_cjk_sans_jp_regular.FONT_PATH))


@lru_cache(maxsize=32)
def _load(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def load_font(path: str | Path | None, size: int) -> ImageFont.FreeTypeFont:
    """A FreeType font at `size` pixels; an unreadable file is an input error naming it."""
    p = Path(path) if path is not None else default_font_path()
    if not p.is_file():
        raise KinemaInputError(f"font not found: {p}")
    try:
        return _load(str(p), max(1, int(size)))
    except OSError as e:
        raise KinemaInputError(f"cannot read font {p}: {e}") from None


def is_wide(ch: str) -> bool:
    """CJK and other wide characters: a line may break before and after each one."""
    return unicodedata.east_asian_width(ch) in ("W", "F")


def tokens(text: str) -> list[str]:
    """Break opportunities: a token is a word with its trailing spaces, or one wide character
    (with any closing punctuation glued on)."""
    out: list[str] = []
    word = ""
    for ch in text:
        if ch in _NO_LINE_START and (out or word):
            if word:
                word += ch
            else:
                out[-1] += ch
            continue
        if is_wide(ch):
            if word:
                out.append(word)
                word = ""
            if out and out[-1] and out[-1][-1] in _NO_LINE_END:
                out[-1] += ch
            else:
                out.append(ch)
        elif ch.isspace():
            word += ch
            if ch == "\n":
                out.append(word)
                word = ""
        else:
            if word and word[-1].isspace():
                out.append(word)
                word = ""
            word += ch
    if word:
        out.append(word)
    return out


def wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    """Lines no wider than `max_width` pixels (a single overlong word is split by characters)."""
    lines: list[str] = []
    line = ""
    for tok in tokens(text):
        forced = tok.endswith("\n")
        tok = tok.rstrip("\n")
        candidate = line + tok
        if line and font.getlength(candidate.rstrip()) > max_width:
            lines.append(line.rstrip())
            line = tok.lstrip()
        else:
            line = candidate
        while font.getlength(line.rstrip()) > max_width and len(line.rstrip()) > 1:  # one word wider than a line
            cut = len(line)
            while cut > 1 and font.getlength(line[:cut]) > max_width:
                cut -= 1
            lines.append(line[:cut])
            line = line[cut:]
        if forced:
            lines.append(line.rstrip())
            line = ""
    if line.strip():
        lines.append(line.rstrip())
    return lines or [""]


@dataclass(frozen=True)
class Overlay:
    """An RGBA patch to blend at (x, y): premultiplied float colour and alpha for fast blending."""

    x: int
    y: int
    rgb: np.ndarray  # float32 [h, w, 3], already multiplied by alpha
    alpha: np.ndarray  # float32 [h, w, 1]

    @staticmethod
    def from_image(image: Image.Image, x: int, y: int) -> Overlay:
        a = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = a[..., 3:4]
        return Overlay(x, y, a[..., :3] * 255.0 * alpha, alpha)

    def blend(self, frame: np.ndarray, opacity: float = 1.0) -> np.ndarray:
        """Draw onto a uint8 frame [H, W, 3] (a copy); the patch is clipped to the frame."""
        h, w = frame.shape[:2]
        x0, y0 = max(0, self.x), max(0, self.y)
        x1, y1 = min(w, self.x + self.rgb.shape[1]), min(h, self.y + self.rgb.shape[0])
        if x0 >= x1 or y0 >= y1 or opacity <= 0:
            return frame
        out = frame.copy()
        sx, sy = x0 - self.x, y0 - self.y
        rgb = self.rgb[sy : sy + y1 - y0, sx : sx + x1 - x0]
        alpha = self.alpha[sy : sy + y1 - y0, sx : sx + x1 - x0] * opacity
        region = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = np.clip(rgb * opacity + region * (1.0 - alpha), 0, 255).round().astype(np.uint8)
        return out


@dataclass(frozen=True)
class TextStyle:
    font: str | None  # path; None = the bundled CJK font
    safe_area: float  # margin fraction on every side


def _fit(text: str, style: TextStyle, size: int, max_width: float, max_lines: int, min_size: int) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The largest font size <= `size` at which the text wraps into `max_lines`; past `min_size`, the
    last line is cut with an ellipsis rather than leaving the safe area."""
    while True:
        font = load_font(style.font, size)
        lines = wrap(text, font, max_width)
        if len(lines) <= max_lines or size <= min_size:
            break
        size = max(min_size, int(size * 0.9))
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and font.getlength(last + "…") > max_width:
            last = last[:-1]
        lines[-1] = last + "…"
    return font, lines


def caption_overlay(text: str, width: int, height: int, style: TextStyle, size_frac: float) -> Overlay:
    """A caption: centred at the bottom of the safe area, on a translucent box, at most 3 lines."""
    margin_x, margin_y = int(width * style.safe_area), int(height * style.safe_area)
    size = max(8, round(height * size_frac))
    max_width = width - 2 * margin_x - size  # leave room for the box padding
    font, lines = _fit(text, style, size, max_width, max_lines=3, min_size=max(8, int(size * 0.6)))
    ascent, descent = font.getmetrics()
    line_h = int((ascent + descent) * 1.1)
    pad = max(2, font.size // 3)
    text_w = int(max(font.getlength(line) for line in lines))
    box_w, box_h = text_w + 2 * pad, line_h * len(lines) + 2 * pad
    image = Image.new("RGBA", (box_w, box_h), (0, 0, 0, 150))
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        lw = font.getlength(line)
        draw.text(((box_w - lw) / 2, pad + i * line_h), line, font=font, fill=(255, 255, 255, 255))
    return Overlay.from_image(image, (width - box_w) // 2, height - margin_y - box_h)


def card_frame(title: str, subtitle: str, width: int, height: int, style: TextStyle, background: str, color: str) -> np.ndarray:
    """A full-frame title card (uint8 [H, W, 3]): title and subtitle centred in the safe area."""
    bg = tuple(int(background[i : i + 2], 16) for i in (1, 3, 5))
    fg = tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
    image = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(image)
    margin = int(min(width, height) * style.safe_area) + int(width * 0.05)
    max_width = width - 2 * margin
    blocks = []
    title_font, title_lines = _fit(title, style, max(10, round(height * 0.11)), max_width, 3, max(8, round(height * 0.05)))
    blocks.append((title_font, title_lines))
    if subtitle.strip():
        blocks.append(_fit(subtitle, style, max(8, round(height * 0.055)), max_width, 2, max(8, round(height * 0.035))))
    heights = []
    for font, lines in blocks:
        a, d = font.getmetrics()
        heights.append(int((a + d) * 1.15) * len(lines))
    gap = int(height * 0.04) if len(blocks) > 1 else 0
    y = (height - sum(heights) - gap) / 2
    for (font, lines), block_h in zip(blocks, heights):
        a, d = font.getmetrics()
        line_h = int((a + d) * 1.15)
        for line in lines:
            draw.text(((width - font.getlength(line)) / 2, y), line, font=font, fill=fg)
            y += line_h
        y += gap
    return np.asarray(image, dtype=np.uint8).copy()
