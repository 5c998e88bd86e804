"""Frames of the finished film, one output frame at a time (a long film never sits in memory).

Output frame i shows time t = i / fps. The item(s) under t come from the
timeline; a shot's frame is its generated frame at that moment (the model's
fps resampled to the film's by holding frames), scaled to the output size
(`cover` crops, `contain` letterboxes); inside a transition the two items are
joined by `transitions.apply`; captions are blended on top.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from kinema.studio import transitions
from kinema.studio.storyboard import Storyboard
from kinema.studio.text import Overlay, TextStyle, caption_overlay, card_frame
from kinema.studio.timeline import Cue, Item, Layout

CAPTION_FADE_S = 0.12


@dataclass(frozen=True)
class Clip:
    """A generated shot: uint8 frames [T, h, w, 3] at `fps`."""

    frames: np.ndarray
    fps: float


def fit_frame(frame: np.ndarray, width: int, height: int, mode: str) -> np.ndarray:
    """Scale a frame to (width, height): `cover` fills and centre-crops, `contain` letterboxes in black."""
    h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return frame
    scale = max(width / w, height / h) if mode == "cover" else min(width / w, height / h)
    sw, sh = max(1, math.ceil(w * scale - 1e-6)), max(1, math.ceil(h * scale - 1e-6))
    scaled = np.asarray(Image.fromarray(frame).resize((sw, sh), Image.BICUBIC))
    if mode == "cover":
        x, y = (sw - width) // 2, (sh - height) // 2
        return np.ascontiguousarray(scaled[y : y + height, x : x + width])
    out = np.zeros((height, width, 3), np.uint8)
    x, y = (width - sw) // 2, (height - sh) // 2
    out[y : y + sh, x : x + sw] = scaled[:height, :width]
    return out


class FilmComposer:
    """Renders output frames of a storyboard from its generated clips."""

    def __init__(self, board: Storyboard, film: Layout, clips: list[Clip], cues: list[Cue]):
        if len(clips) != len(board.shots):
            raise ValueError(f"{len(board.shots)} shots but {len(clips)} clips")
        self.board, self.film, self.clips, self.cues = board, film, clips, cues
        self.width, self.height = board.size()
        self.fps = board.fps
        self.num_frames = max(1, round(film.duration * self.fps))
        self.style = TextStyle(board.output.font, board.output.safe_area)
        self._cards: dict[str, np.ndarray] = {}
        for kind, card in (("intro", board.intro), ("outro", board.outro)):
            if card is not None:
                self._cards[kind] = card_frame(card.title, card.subtitle, self.width, self.height, self.style, card.background, card.color)
        self._captions: dict[int, Overlay] = {}
        self._scaled: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def _item_frame(self, item: Item, t: float) -> np.ndarray:
        if item.kind != "shot":
            return self._cards[item.kind]
        clip = self.clips[item.index]
        src = min(clip.frames.shape[0] - 1, max(0, int((t - item.start) * clip.fps + 1e-6)))
        key = (item.index, src)
        frame = self._scaled.get(key)
        if frame is None:
            frame = fit_frame(clip.frames[src], self.width, self.height, self.board.output.fit)
            self._scaled[key] = frame
            if len(self._scaled) > 8:
                self._scaled.popitem(last=False)
        return frame

    def picture(self, t: float) -> np.ndarray:
        """The picture at time t, before captions."""
        items = self.film.items
        for k, item in enumerate(items):
            # Earlier items returned for any t before their end, so here t >= item.start + overlap_in.
            if t < item.end - item.overlap_out or k == len(items) - 1:
                return self._item_frame(item, t)
            if t < item.end:  # in this item's outgoing overlap = the next item's first overlap_out seconds
                nxt = items[k + 1]
                p = (t - nxt.start) / item.overlap_out
                return transitions.apply(item.transition, self._item_frame(item, t), self._item_frame(nxt, t), p)
        return self._item_frame(items[-1], t)

    def frame(self, i: int) -> np.ndarray:
        t = i / self.fps
        frame = self.picture(t)
        if self.board.output.burn_captions:
            for j, cue in enumerate(self.cues):
                if cue.start <= t < cue.end:
                    overlay = self._captions.get(j)
                    if overlay is None:
                        overlay = caption_overlay(cue.text, self.width, self.height, self.style, self.board.output.caption_size)
                        self._captions[j] = overlay
                    opacity = min(1.0, (t - cue.start) / CAPTION_FADE_S, (cue.end - t) / CAPTION_FADE_S)
                    frame = overlay.blend(frame, max(0.0, opacity))
        return frame

    def frames(self) -> Iterator[np.ndarray]:
        for i in range(self.num_frames):
            yield self.frame(i)
