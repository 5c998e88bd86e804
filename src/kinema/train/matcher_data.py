"""Hard negative captions for the video-text matcher: a clip's own scene with one attribute changed.

Why: a matcher trained only against other clips' captions learns the easy part (another clip
almost always differs in colour), while what it must rank is a prompt's candidates, which
differ in one thing at a time: an object too many, the wrong shape, motion or camera. Shapes
World clips carry their scene, so the caption grammar can describe the same clip with exactly
one attribute changed. No negative carries a held-out pair, so the held-out prompts stay
unseen by the matcher too. Clips without a scene (a user's own footage) get no hard
negatives; the trainer then uses other clips' captions only.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from kinema.world.captions import captions
from kinema.world.sampling import _draw_object
from kinema.world.scene import CAMERAS, COLORS, DEFAULT_SPEED, HELD_OUT, MOTION_DIRECTIONS, MOTIONS, SHAPES, Scene

KINDS = ("color", "shape", "motion", "camera", "count")


def _valid(scene: Scene) -> bool:
    return not HELD_OUT.scene_is_heldout(scene)


def _visible_motions(shape: str) -> list[str]:
    """Motions a clip of `shape` can show (a circle's spin is invisible)."""
    return [m for m in MOTIONS if not (shape == "circle" and m == "spin")]


def perturb_scene(scene: Scene, kind: str, rng: np.random.Generator) -> Scene | None:
    """`scene` with one `kind` of attribute changed so a caption of it is false for the clip, or None."""
    objs = list(scene.objects)
    i = int(rng.integers(len(objs)))
    obj = objs[i]
    if kind == "color":
        options = [c for c in COLORS if c != obj.color and not any(c == o.color and o is not obj for o in objs)]
        changed = [replace(obj, color=c) for c in options]
    elif kind == "shape":
        options = [s for s in SHAPES if s != obj.shape and not (obj.motion == "spin" and s == "circle")]
        changed = [replace(obj, shape=s) for s in options]
    elif kind == "motion":
        if obj.motion == "spin" and obj.shape == "circle":
            return None  # the clip shows a still circle: "still" would not be false
        options = [m for m in _visible_motions(obj.shape) if m != obj.motion]
        changed = [replace(obj, motion=m, speed=obj.speed if (m in MOTION_DIRECTIONS and obj.motion in MOTION_DIRECTIONS) else DEFAULT_SPEED) for m in options]
    elif kind == "camera":
        if scene.texture == "plain":
            return None  # a camera move is invisible on a plain background
        # Only to a moving camera: captions of a static camera usually leave it unsaid, so they would not contradict.
        options = [c for c in CAMERAS[1:] if c != scene.camera]
        rng.shuffle(options)
        for c in options:
            candidate = replace(scene, camera=c)
            if _valid(candidate):
                return candidate
        return None
    elif kind == "count":
        if len(objs) == 2:
            return replace(scene, objects=(objs[1 - i],), relation=None)
        extra = _draw_object(rng, "exclude")
        return replace(scene, objects=(objs[0], replace(extra, x=1.0 - objs[0].x, y=1.0 - objs[0].y)), relation=None)
    else:
        raise ValueError(f"unknown perturbation {kind!r}; expected one of {KINDS}")
    order = rng.permutation(len(changed))
    for j in order:
        new_objs = list(objs)
        new_objs[i] = changed[int(j)]
        candidate = replace(scene, objects=tuple(new_objs))
        if _valid(candidate):
            return candidate
    return None


def negative_captions(scene: Scene, rng: np.random.Generator, kinds: tuple[str, ...] = KINDS) -> list[str]:
    """One caption per kind that applies, each describing the scene with that attribute changed."""
    out = []
    for kind in kinds:
        changed = perturb_scene(scene, kind, rng)
        if changed is not None:
            options = captions(changed, rng, n=3)
            out.append(options[int(rng.integers(len(options)))])
    return out


def negative_pool(scenes: list[dict | None], seed: int) -> tuple[list[str], list[int]]:
    """(captions, offsets): clip k's hard negatives are captions[offsets[k]:offsets[k + 1]]."""
    rng = np.random.default_rng([seed, 41])
    texts: list[str] = []
    offsets = [0]
    for scene in scenes:
        if scene is not None:
            texts += negative_captions(Scene.from_dict(scene), rng)
        offsets.append(len(texts))
    return texts, offsets

