"""Caption grammar for Shapes World: several varied captions per scene, one canonical form.

Varied captions (synonyms, templates, case, optional background) teach the text
encoder path that different wordings mean the same clip; the canonical caption is
one fixed template used for evaluation prompts, so a benchmark is reproducible.
Every caption names every object's color, shape and motion (including "still")
and the camera whenever it moves, because the judge scores a clip against the
scene and an omitted attribute would make the caption ambiguous. Colors always use
the canonical palette words.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kinema.world.scene import DEFAULT_SIZE, MOTION_DIRECTIONS, ObjectSpec, Scene

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "ball", "disc"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
    "star": ("star",),
    "cross": ("cross", "plus sign"),
}

# Participle phrases ("a red ball moving left") and finite verb phrases ("a red ball moves left").
MOTION_PARTICIPLES: dict[str, tuple[str, ...]] = {
    "still": ("staying still", "resting", "standing still", "motionless", "not moving"),
    "left": ("moving left", "moving to the left", "moving leftward", "sliding left", "drifting left", "heading left"),
    "right": ("moving right", "moving to the right", "moving rightward", "sliding right", "drifting right", "heading right"),
    "up": ("moving up", "moving upward", "rising", "drifting upward", "floating up"),
    "down": ("moving down", "moving downward", "falling", "sinking", "drifting down"),
    "bounce": ("bouncing", "bouncing up and down"),
    "spin": ("spinning", "rotating", "turning around"),
    "grow": ("growing", "getting bigger", "expanding"),
    "shrink": ("shrinking", "getting smaller"),
}
MOTION_VERBS: dict[str, tuple[str, ...]] = {
    "still": ("stays still", "rests", "does not move", "stays motionless", "stands still"),
    "left": ("moves left", "moves to the left", "slides left", "drifts left", "moves leftward", "heads left"),
    "right": ("moves right", "moves to the right", "slides right", "drifts right", "moves rightward", "heads right"),
    "up": ("moves up", "rises", "drifts upward", "moves upward", "floats up"),
    "down": ("moves down", "falls", "sinks", "moves downward", "drifts down"),
    "bounce": ("bounces", "bounces up and down"),
    "spin": ("spins", "rotates", "turns around"),
    "grow": ("grows", "gets bigger", "expands"),
    "shrink": ("shrinks", "gets smaller"),
}
SPEED_WORDS: dict[str, tuple[str, ...]] = {"slowly": ("slowly",), "normal": ("",), "quickly": ("quickly", "fast")}

# Camera as a clause ("the camera pans left") and as a trailing phrase ("with the camera panning left").
CAMERA_CLAUSES: dict[str, tuple[str, ...]] = {
    "static": ("the camera is static", "the camera stays still"),
    "pan left": ("the camera pans left", "camera pans to the left", "the camera pans to the left"),
    "pan right": ("the camera pans right", "camera pans to the right", "the camera pans to the right"),
    "tilt up": ("the camera tilts up", "camera tilts up", "the camera tilts upward"),
    "tilt down": ("the camera tilts down", "camera tilts down", "the camera tilts downward"),
    "zoom in": ("the camera zooms in", "camera zooms in"),
    "zoom out": ("the camera zooms out", "camera zooms out"),
}
CAMERA_PHRASES: dict[str, tuple[str, ...]] = {
    "static": ("static camera", "fixed camera", "with a static camera"),
    "pan left": ("with the camera panning left", "the camera panning left", "camera panning to the left"),
    "pan right": ("with the camera panning right", "the camera panning right", "camera panning to the right"),
    "tilt up": ("with the camera tilting up", "the camera tilting up", "camera tilting upward"),
    "tilt down": ("with the camera tilting down", "the camera tilting down", "camera tilting downward"),
    "zoom in": ("zooming in", "with the camera zooming in", "camera zooming in"),
    "zoom out": ("zooming out", "with the camera zooming out", "camera zooming out"),
}

TEXTURE_NOUNS: dict[str, tuple[str, ...]] = {
    "plain": ("{bg} background", "plain {bg} background"),
    "grid": ("{bg} grid", "{bg} grid background", "{bg} background with a grid"),
    "dots": ("starry night sky", "{bg} starry sky", "{bg} background with dots", "dotted {bg} background"),
    "stripes": ("{bg} striped background", "{bg} background with diagonal stripes", "striped {bg} background"),
}
BACKGROUND_PREPS = ("on", "over", "against")
RELATION_WORDS: dict[str, tuple[str, ...]] = {
    "left of": ("to the left of", "left of"),
    "right of": ("to the right of", "right of"),
    "above": ("above",),
    "below": ("below", "beneath"),
}

_CANONICAL_MOTION = {m: MOTION_PARTICIPLES[m][0] for m in MOTION_PARTICIPLES}
_CANONICAL_TEXTURE = {"plain": "plain {bg} background", "grid": "{bg} grid background", "dots": "{bg} starry background", "stripes": "{bg} striped background"}


class _Words:
    """Picks synonyms and coin flips from one rng, so a caption set is reproducible from its seed."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return str(options[int(self.rng.integers(len(options)))])

    def coin(self, p: float = 0.5) -> bool:
        return bool(self.rng.random() < p)


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _noun_phrase(w: _Words, obj: ObjectSpec, shape_word: str) -> str:
    size = obj.size if obj.size != DEFAULT_SIZE or w.coin(0.15) else ""
    return _article(" ".join(p for p in (size, obj.color, shape_word) if p))


def _with_speed(w: _Words, obj: ObjectSpec, phrase: str) -> str:
    if obj.motion not in MOTION_DIRECTIONS or obj.speed == "normal":
        return phrase
    adverb = w.pick(SPEED_WORDS[obj.speed])
    if adverb == "slowly" and w.coin(0.3):
        return f"slowly {phrase}"
    return f"{phrase} {adverb}"


def _participle(w: _Words, obj: ObjectSpec) -> str:
    return _with_speed(w, obj, w.pick(MOTION_PARTICIPLES[obj.motion]))


def _verb(w: _Words, obj: ObjectSpec) -> str:
    return _with_speed(w, obj, w.pick(MOTION_VERBS[obj.motion]))


def _background(w: _Words, scene: Scene) -> str:
    noun = w.pick(TEXTURE_NOUNS[scene.texture]).format(bg=scene.background)
    return f"{w.pick(BACKGROUND_PREPS)} {_article(noun)}"


def _back_reference(obj: ObjectSpec, shape_word: str, other: ObjectSpec | None) -> str:
    """'the box', or 'the red box' when the other object has the same shape."""
    if other is not None and other.shape == obj.shape:
        return f"the {obj.color} {shape_word}"
    return f"the {shape_word}"


def _one_caption(scene: Scene, w: _Words, camera: bool = True) -> str:
    objs = scene.objects
    shape_words = [w.pick(SHAPE_WORDS[o.shape]) for o in objs]
    nps = [_noun_phrase(w, o, s) for o, s in zip(objs, shape_words)]
    show_bg = w.coin(0.6)
    bg = _background(w, scene) if show_bg else ""
    if len(objs) == 1:
        template = int(w.rng.integers(4))
        if template == 0:
            body = f"{nps[0]} {_participle(w, objs[0])}"
        elif template == 1:
            body = f"{nps[0]} {_verb(w, objs[0])}"
        elif template == 2:
            body = f"{nps[0]}, {_participle(w, objs[0])}"
        else:
            body = f"{nps[0]} that {_verb(w, objs[0])}"
        if bg:
            body = f"{body} {bg}"
    else:
        refs = [_back_reference(objs[i], shape_words[i], objs[1 - i]) for i in range(2)]
        rel = w.pick(RELATION_WORDS[scene.relation]) if scene.relation else ""
        template = int(w.rng.integers(3))
        if template == 0:
            head = f"{nps[0]} {rel} {nps[1]}" if rel else f"{nps[0]} and {nps[1]}"
            if bg:
                head = f"{head} {bg}"
            body = f"{head}; {refs[0]} {_verb(w, objs[0])} and {refs[1]} {_verb(w, objs[1])}"
        elif template == 1:
            body = f"{nps[0]} {_participle(w, objs[0])} and {nps[1]} {_participle(w, objs[1])}"
            if bg:
                body = f"{body} {bg}"
            if rel:
                body = f"{body}, {refs[0]} {rel} {refs[1]}"
        else:
            body = f"{nps[0]} {_verb(w, objs[0])} while {nps[1]} {_verb(w, objs[1])}"
            if rel:
                body = f"{body}, {refs[0]} starting {rel} {refs[1]}"
            if bg:
                body = f"{body}, {bg}"
    if camera and (scene.camera != "static" or w.coin(0.25)):
        if w.coin(0.5):
            body = f"{body}, {w.pick(CAMERA_CLAUSES[scene.camera])}"
        else:
            body = f"{body}, {w.pick(CAMERA_PHRASES[scene.camera])}"
    if w.coin(0.5):
        body = body[0].upper() + body[1:] + "."
    return body


def captions(scene: Scene, rng: np.random.Generator, n: int = 3, camera: bool = True) -> list[str]:
    """`n` (at least 3) distinct varied captions of `scene`.

    camera=False leaves the camera unnamed, moving or not: captions for training
    the camera *signal*, which must then carry the move on its own.
    """
    n = max(n, 3)
    w = _Words(rng)
    out: list[str] = []
    for _ in range(50 * n):
        c = _one_caption(scene, w, camera)
        if c not in out:
            out.append(c)
            if len(out) == n:
                return out
    # The grammar has far more than n variants per scene; this only guards the loop.
    canonical = canonical_caption(scene if camera else dataclasses.replace(scene, camera="static"))
    if canonical not in out:
        out.append(canonical)
    return out


def _canonical_object(obj: ObjectSpec) -> str:
    size = "" if obj.size == DEFAULT_SIZE else obj.size
    motion = _CANONICAL_MOTION[obj.motion]
    if obj.motion in MOTION_DIRECTIONS and obj.speed != "normal":
        motion = f"{motion} {obj.speed}"
    return f"{_article(' '.join(p for p in (size, obj.color, obj.shape) if p))} {motion}"


def canonical_caption(scene: Scene) -> str:
    """The one fixed-template caption of a scene (deterministic; used for evaluation prompts)."""
    text = " and ".join(_canonical_object(o) for o in scene.objects)
    if scene.relation:
        a, b = scene.objects
        text = f"{text}, the {a.color} {a.shape} {RELATION_WORDS[scene.relation][0]} the {b.color} {b.shape}"
    text = f"{text} on {_article(_CANONICAL_TEXTURE[scene.texture].format(bg=scene.background))}"
    if scene.camera != "static":
        text = f"{text}, {CAMERA_CLAUSES[scene.camera][0]}"
    return text
