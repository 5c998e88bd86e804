"""Judge-based evaluation: generate every suite item, read it back, score it, aggregate.

The generator is any callable from a SuiteItem to uint8 frames, so the same loop
scores the built-in model, a trained checkpoint, another backend, or the
renderer itself (`ground_truth`), which is the sanity figure every report
carries: it shows what the judge can read when the video is perfect.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from kinema.evaluate.metrics import attribute_accuracy, temporal_flicker
from kinema.evaluate.suite import SuiteItem, with_seeds
from kinema.world.judge import ATTRIBUTES, read_clip, score
from kinema.world.render import render

GenerateFn = Callable[[SuiteItem], np.ndarray]


def ground_truth(item: SuiteItem) -> np.ndarray:
    """The renderer's own clip for an item: what a perfect model would produce."""
    return render(item.scene, item.clip, item.seed)


def evaluate(generate_fn: GenerateFn, suite: Sequence[SuiteItem], progress: bool = True, fps: float | None = None, seeds: int = 1) -> dict[str, Any]:
    """Score `generate_fn` on `suite`, each item with `seeds` seeds (its own first).

    Returns per-attribute accuracy ("count", "color", "shape", "motion", "camera"),
    "overall" accuracy over all attributes, mean temporal flicker, and per-item
    details (prompt, what the judge read, which attributes were right). `fps`
    overrides the item's frame rate for reading (when a generator delivers another).
    With several seeds the accuracies are means over every clip, and "overall_per_seed"
    and "overall_stderr" (their standard error) say how far one seed's figure moves.
    """
    suite = with_seeds(list(suite), seeds)
    items = []
    scores = []
    flicker_means = []
    for item in tqdm(suite, desc="evaluate", disable=not progress, leave=False):
        frames = np.asarray(generate_fn(item))
        reading = read_clip(frames, fps or item.clip.fps)
        s = score(reading, item.scene)
        mad, _ = temporal_flicker(frames)
        scores.append(s)
        flicker_means.append(mad)
        items.append(
            {
                "prompt": item.prompt,
                "seed": item.seed,
                "size": [item.clip.height, item.clip.width],
                "scene": item.scene.to_dict(),
                "read": {
                    "count": reading.count,
                    "camera": reading.camera,
                    "objects": [{"color": o.color, "shape": o.shape, "motion": o.motion} for o in reading.objects],
                },
                "correct": s,
                "flicker_mad": mad,
            }
        )
    acc = attribute_accuracy(scores)
    mean_mad = float(np.mean(flicker_means)) if flicker_means else 0.0
    per_seed = [attribute_accuracy(scores[k::seeds])["overall"] for k in range(seeds)] if scores else []
    return {
        "n_items": len(items),
        "seeds": seeds,
        "accuracy": {k: acc.get(k, 0.0) for k in ATTRIBUTES},
        "overall": acc["overall"],
        "overall_per_seed": per_seed,
        "overall_stderr": float(np.std(per_seed, ddof=1) / np.sqrt(seeds)) if seeds > 1 else None,
        "flicker": {"mean_abs_diff": mean_mad, "score": (255.0 - mean_mad) / 255.0},
        "items": items,
    }


def write_report(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the result as JSON atomically: a temporary file beside the target, then rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
