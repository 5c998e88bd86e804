"""Fixed prompt suites for evaluation: "seen" combinations and "heldout" ones.

A suite is a deterministic list of (prompt, scene, clip, seed): the same code
always asks the same questions, so numbers from different models and runs can
be compared. "heldout" scenes each contain a combination no training clip has
(scene.HELD_OUT); they measure whether a model composes what it learned.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from kinema.errors import KinemaInputError
from kinema.world.captions import canonical_caption
from kinema.world.sampling import sample_scene
from kinema.world.scene import CAMERAS, MOTIONS, ClipSpec, Scene

SUITES: tuple[str, ...] = ("seen", "heldout")
DEFAULT_ITEMS = 48
SUITE_SEED = 20240611  # fixed: suites must not change between runs
_HELDOUT_MODE = {"seen": "exclude", "heldout": "only"}
_TRIES_FOR_COVERAGE = 300  # draws spent looking for the wanted camera and motion


@dataclass(frozen=True)
class SuiteItem:
    """One evaluation question: the prompt, the scene it describes, how to render it, a seed."""

    prompt: str
    scene: Scene
    clip: ClipSpec
    seed: int


def _clip_for(i: int, size: int, num_frames: int, fps: float) -> ClipSpec:
    """Mostly square clips, with every fourth item wide and every fourth tall."""
    long = max(16, int(round(size * 1.75 / 16)) * 16)
    if i % 4 == 1:
        return ClipSpec(height=size, width=long, num_frames=num_frames, fps=fps)
    if i % 4 == 3:
        return ClipSpec(height=long, width=size, num_frames=num_frames, fps=fps)
    return ClipSpec(height=size, width=size, num_frames=num_frames, fps=fps)


def build_suite(
    name: str, size: int = 64, n_items: int = DEFAULT_ITEMS, num_frames: int = 17, fps: float = 8.0
) -> list[SuiteItem]:
    """The suite `name` ("seen" or "heldout") at base resolution `size` (a multiple of 16).

    Item i asks for camera CAMERAS[i % 7] and an object with motion MOTIONS[i % 9]
    (drawn from the world's own sampler until both hold), so a suite of 48 covers
    every camera and every motion; object counts, shapes and colors come from the
    sampler. The prompt is the scene's canonical caption.
    """
    if name not in SUITES:
        raise KinemaInputError(f"unknown suite {name!r}: choose one of {', '.join(SUITES)}")
    if size <= 0 or size % 16:
        raise KinemaInputError(f"suite size must be a positive multiple of 16, got {size}")
    if n_items < 1:
        raise KinemaInputError(f"a suite needs at least 1 item, got {n_items}")
    rng = np.random.default_rng([SUITE_SEED, SUITES.index(name)])
    items = []
    for i in range(n_items):
        clip = _clip_for(i, size, num_frames, fps)
        want_camera, want_motion = CAMERAS[i % len(CAMERAS)], MOTIONS[i % len(MOTIONS)]
        fallback = None
        for _ in range(_TRIES_FOR_COVERAGE):
            scene = sample_scene(rng, clip, heldout=_HELDOUT_MODE[name])
            if scene.camera != want_camera:
                continue
            fallback = fallback or scene
            if any(o.motion == want_motion for o in scene.objects):
                break
        else:
            scene = fallback or scene
        items.append(SuiteItem(prompt=canonical_caption(scene), scene=scene, clip=clip, seed=SUITE_SEED % 10007 + i))
    return items


def seed_for(seed: int, k: int) -> int:
    """The k-th seed of an item asked with several seeds (k = 0 is the item's own)."""
    return (seed + k * 1_000_003) % (2**31)


def with_seeds(suite: list[SuiteItem], seeds: int) -> list[SuiteItem]:
    """Every item asked `seeds` times, item by item: one clip per seed is a noisy figure (docs/benchmarks.md)."""
    if seeds < 1:
        raise KinemaInputError(f"seeds must be at least 1, got {seeds}")
    return [replace(item, seed=seed_for(item.seed, k)) for item in suite for k in range(seeds)]
