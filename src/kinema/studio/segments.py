"""Smart re-rendering: the film is encoded in segments cached by what they show.

Encoding is most of composition (x264 takes the bulk of it), so after an
edit to one shot of five, re-encoding the whole film would cost as much as
generating that shot. Instead the film's frames are cut at every item
boundary and transition edge; a segment's key hashes everything its frames
are made of (the output settings, its frame range, the items and captions
under it, the pixels of the clips they show and the cards they draw). A
segment whose key is in the store is reused as it is; the others are
encoded (without B-frames, so they join by stream copy, see
`mux.SegmentedFilmWriter`). An edited shot re-encodes only its own
segments and the transitions on either side of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kinema.studio.compose import FilmComposer
from kinema.studio.mux import FilmWriter

SEGMENT_FORMAT = 1  # bump when the way frames are drawn or encoded changes: old segments stop matching


@dataclass(frozen=True)
class Segment:
    start: int  # first film frame
    stop: int  # one past the last
    key: str

    @property
    def frames(self) -> int:
        return self.stop - self.start


def cut_points(composer: FilmComposer) -> list[int]:
    """Film frame indices where the set of things on screen can change: item starts, ends and transition edges."""
    fps, n = composer.fps, composer.num_frames
    cuts = {0, n}
    for item in composer.film.items:
        for t in (item.start, item.start + item.overlap_in, item.end - item.overlap_out, item.end):
            cuts.add(min(n, max(0, round(t * fps))))
    return sorted(cuts)


def _settings(composer: FilmComposer) -> dict:
    out = composer.board.output
    return {
        "format": SEGMENT_FORMAT,
        "size": [composer.width, composer.height],
        "fps": composer.fps,
        "output": out.model_dump(mode="json", exclude={"subtitles", "srt", "audio_bitrate"}),
    }


def _clip_digest(composer: FilmComposer, index: int) -> str:
    clip = composer.clips[index]
    h = hashlib.sha256(repr((clip.frames.shape, str(clip.frames.dtype), float(clip.fps))).encode())
    h.update(clip.frames.tobytes())
    return h.hexdigest()


def plan_segments(composer: FilmComposer) -> list[Segment]:
    """The film's segments, each keyed by the hash of everything drawn in its frames."""
    settings = _settings(composer)
    cards = {kind: getattr(composer.board, kind) for kind in ("intro", "outro")}
    digests: dict[int, str] = {}
    cuts = cut_points(composer)
    segments = []
    for start, stop in zip(cuts, cuts[1:]):
        if stop <= start:
            continue
        first, last = start / composer.fps, (stop - 1) / composer.fps
        items = []
        for item in composer.film.items:
            if item.start > last or item.end <= first:
                continue
            if item.kind == "shot":
                content = digests.setdefault(item.index, _clip_digest(composer, item.index))
            else:
                content = cards[item.kind].model_dump(mode="json")
            items.append([item.kind, item.index, item.start, item.duration, item.overlap_in, item.overlap_out, item.transition.model_dump(mode="json"), content])
        cues = [[c.start, c.end, c.text] for c in composer.cues if c.start <= last and c.end > first]
        description = {"settings": settings, "range": [start, stop], "items": items, "cues": cues}
        key = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:32]
        segments.append(Segment(start, stop, key))
    return segments


class SegmentStore:
    """A directory of encoded segments, `<key>.mp4`, each written atomically (FilmWriter's temp-and-rename)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def path(self, segment: Segment) -> Path:
        return self.directory / f"{segment.key}.mp4"

    def __contains__(self, segment: Segment) -> bool:
        return self.path(segment).is_file()

    def encode(self, composer: FilmComposer, segment: Segment, on_frame: Callable[[int], None] | None = None) -> Path:
        """Draw and encode one segment's frames; `on_frame(film_frame_index)` after each."""
        self.directory.mkdir(parents=True, exist_ok=True)
        out = composer.board.output
        with FilmWriter(self.path(segment), composer.width, composer.height, composer.fps, crf=out.crf, preset=out.preset, b_frames=0) as writer:
            for i in range(segment.start, segment.stop):
                writer.write(composer.frame(i))
                if on_frame:
                    on_frame(i)
        return self.path(segment)
