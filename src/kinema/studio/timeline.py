"""Where everything sits on the film's timeline: items (intro, shots, outro), overlaps, captions.

Pure arithmetic on the storyboard, no pixels: the validator uses it to check
lengths, the composer to find the frame(s) under each output time, the
subtitle and narration code to place captions. A transition of `d` seconds
overlaps the two items it joins by `d` (a cut overlaps nothing), so

    start[k+1] = start[k] + duration[k] - overlap[k]

and the film lasts `start[last] + duration[last]`.
"""

from __future__ import annotations

from dataclasses import dataclass

from kinema.studio.storyboard import Storyboard, Transition


@dataclass(frozen=True)
class Item:
    kind: str  # "intro", "shot" or "outro"
    index: int  # shot index (0 for cards)
    path: str  # field path for errors: "intro", "shots[2]", "outro"
    start: float
    duration: float
    transition: Transition  # the handover to the next item
    transition_path: str  # where that handover is set: "shots[2].transition" or the default "transition"
    overlap_in: float
    overlap_out: float

    @property
    def end(self) -> float:
        return self.start + self.duration


@dataclass(frozen=True)
class Cue:
    """A caption on the film's timeline (seconds)."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Layout:
    items: tuple[Item, ...]
    duration: float

    def shot_item(self, index: int) -> Item:
        return next(i for i in self.items if i.kind == "shot" and i.index == index)


def layout(board: Storyboard) -> Layout:
    entries: list[tuple[str, int, str, float, Transition, str]] = []
    if board.intro is not None:
        own = board.intro.transition is not None
        entries.append(("intro", 0, "intro", board.intro.duration, board.handover(board.intro.transition), "intro.transition" if own else "transition"))
    for i, shot in enumerate(board.shots):
        own = shot.transition is not None
        entries.append(("shot", i, f"shots[{i}]", shot.duration, board.handover(shot.transition), f"shots[{i}].transition" if own else "transition"))
    if board.outro is not None:
        entries.append(("outro", 0, "outro", board.outro.duration, Transition(), "outro"))

    items: list[Item] = []
    start = 0.0
    prev_overlap = 0.0
    for k, (kind, index, path, duration, transition, tpath) in enumerate(entries):
        overlap_out = transition.overlap if k + 1 < len(entries) else 0.0
        items.append(Item(kind, index, path, start, duration, transition, tpath, prev_overlap, overlap_out))
        start += duration - overlap_out
        prev_overlap = overlap_out
    total = items[-1].end if items else 0.0
    return Layout(tuple(items), total)


def caption_cues(board: Storyboard, film: Layout | None = None) -> list[Cue]:
    """Every caption on the timeline, sorted: the storyboard's timed captions and each shot's caption.

    A shot's caption runs from the middle of its incoming transition to the
    middle of its outgoing one, so neighbouring shot captions never overlap.
    """
    film = film or layout(board)
    cues = [Cue(c.start, min(c.end, film.duration), c.text) for c in board.captions]
    for i, shot in enumerate(board.shots):
        if shot.caption and shot.caption.strip():
            item = film.shot_item(i)
            cues.append(Cue(item.start + item.overlap_in / 2, item.end - item.overlap_out / 2, shot.caption.strip()))
    return sorted(cues, key=lambda c: (c.start, c.end))
