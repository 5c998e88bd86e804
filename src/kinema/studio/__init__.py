"""Storyboards and finished videos: shots, subject consistency, titles, transitions, sound.

    storyboard (YAML/JSON) ─► plan (requests, cache keys, price) ─► generate shots (engine, cached)
        ─► compose (resize, transitions, cards, captions) + audio (soundtrack/narration/music)
        ─► mux (H.264 + AAC + mov_text subtitles) ─► film.mp4 (+ .srt)

Every stage has a plain Python entry point on JSON-friendly data so the CLI,
the HTTP service and a web editor drive the same code: `load_storyboard`,
`plan_storyboard`, `Studio.generate_shots`, `Studio.render`.
"""

from kinema.studio.load import load_storyboard, parse_storyboard, storyboard_json_schema
from kinema.studio.storyboard import Storyboard

__all__ = ["Storyboard", "load_storyboard", "parse_storyboard", "storyboard_json_schema"]
