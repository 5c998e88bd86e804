"""Subject consistency across 5-shot storyboards, read by the Shapes World judge.

    python benchmarks/story_consistency.py [--model DIR] [--boards 8] [--json docs/results/story_consistency.json]

Each storyboard declares one subject (a colour + shape, e.g. "red circle") and
has five shots of it doing different things. Every shot is generated with the
consistency mechanism on (reference-frame conditioning where the model has it,
and the subject's shared seed) and off (independent seeds, text only), and
the judge reads each shot's main object (the longest track). Reported:

- match: the judge reads the declared colour and shape (and each alone);
- agreement: the shot's (colour, shape) equals the storyboard's most common
  reading, i.e. the subject looks the same from shot to shot whatever it is.

Re-run it unchanged after the built-in model is replaced.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

SUBJECTS = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "star"), ("purple", "diamond"), ("cyan", "cross"), ("orange", "circle"), ("white", "square")]
ACTIONS = ["moving left", "moving up", "moving right", "moving down", "still"]


def storyboard(color: str, shape: str, seed: int, consistency: bool) -> dict:
    name = f"{color} {shape}"
    return {
        "seed": seed,
        "fps": 8,
        "consistency": consistency,
        "subjects": [{"name": name, "description": f"a large {name}"}],
        "shots": [{"prompt": f"a large {name} {action}", "duration": 2} for action in ACTIONS],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--boards", type=int, default=len(SUBJECTS))
    ap.add_argument("--json", type=Path, default=Path("docs/results/story_consistency.json"))
    args = ap.parse_args()

    from kinema.engine.pipeline import Pipeline
    from kinema.studio.cache import ShotCache
    from kinema.studio.load import parse_storyboard
    from kinema.studio.render import Studio, model_fingerprint
    from kinema.world.judge import read_clip

    pipe = Pipeline.from_pretrained(args.model) if args.model else Pipeline.from_builtin()
    pipe.load()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        studio = Studio(pipe, ShotCache(tmp))
        for mode in ("consistency", "none"):
            rows = []
            start = time.perf_counter()
            warnings: set[str] = set()
            for b, (color, shape) in enumerate(SUBJECTS[: args.boards]):
                board = parse_storyboard(storyboard(color, shape, seed=b, consistency=mode == "consistency"))
                plan = studio.plan(board)
                warnings.update(plan.warnings)
                shots = studio.generate_shots(plan)
                readings = []
                for shot in shots:
                    reading = read_clip(shot.video.frames, shot.video.fps)
                    main = max(reading.objects, key=lambda o: len(o.track), default=None)
                    readings.append((main.color, main.shape) if main else (None, None))
                modal, _ = Counter(readings).most_common(1)[0]
                for i, (c, s) in enumerate(readings):
                    rows.append({"board": b, "shot": i, "subject": [color, shape], "read": [c, s], "condition": plan.shots[i].condition,
                                 "color": c == color, "shape": s == shape, "agree": (c, s) == modal and c is not None})  # fmt: skip
            n = len(rows)
            results[mode] = {
                "shots": n,
                "color_and_shape": sum(r["color"] and r["shape"] for r in rows) / n,
                "color": sum(r["color"] for r in rows) / n,
                "shape": sum(r["shape"] for r in rows) / n,
                "agreement": sum(r["agree"] for r in rows) / n,
                "image_conditioning": plan.image_conditioning,
                "warnings": sorted(warnings),
                "seconds": time.perf_counter() - start,
                "rows": rows,
            }
    out = {"model": str(args.model or "builtin"), "model_fingerprint": model_fingerprint(pipe)[:16], "results": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))
    for mode, r in results.items():
        print(f"{mode:12s} shots={r['shots']} color+shape={r['color_and_shape']:.1%} color={r['color']:.1%} shape={r['shape']:.1%} "
              f"agreement={r['agreement']:.1%} image_conditioning={r['image_conditioning']}")  # fmt: skip


if __name__ == "__main__":
    main()
