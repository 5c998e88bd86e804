"""Captions as subtitles: an .srt file beside the film and a soft mov_text track inside the MP4.

A soft track can be switched on and off in players (and read by search and
accessibility tools), unlike captions drawn onto the picture; the .srt is the
same text for editors and upload forms that want a separate file.
"""

from __future__ import annotations

import os
import struct
import uuid
from pathlib import Path

from kinema.studio.timeline import Cue

# mov_text needs an ASS-style header in the encoder context (FFmpeg parses the default style from it).
MOV_TEXT_HEADER = (
    "[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n"
    "[V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, "
    "Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, "
    "MarginL, MarginR, MarginV, Encoding\n"
    "Style: Default,Sans,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0\n\n"
    "[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
)


def srt_time(seconds: float) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def to_srt(cues: list[Cue]) -> str:
    blocks = [f"{i}\n{srt_time(c.start)} --> {srt_time(c.end)}\n{c.text}\n" for i, c in enumerate(cues, 1)]
    return "\n".join(blocks)


def write_srt(path: str | Path, cues: list[Cue]) -> Path:
    """Write atomically (temp file renamed into place)."""
    p = Path(path)
    tmp = p.parent / f".{p.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_text(to_srt(cues), encoding="utf-8")
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def mov_text_sample(text: str) -> bytes:
    """One mov_text (3GPP timed text) sample: a big-endian 16-bit byte length, then UTF-8 text."""
    data = text.encode("utf-8")[:65535]
    return struct.pack(">H", len(data)) + data
