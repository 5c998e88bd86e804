"""Pick a model's default guidance scale and step count on the *seen* suite.

The held-out suite must stay a test the model's defaults were never tuned on,
so this sweep reads only seen prompts; the chosen values go into the model's
`pipeline.json` and `kinema evaluate --suite heldout` is run afterwards.

    python benchmarks/guidance_sweep.py --model src/kinema/assets/builtin \
        --guidance 3 4 6 8 10 --steps 20 --json docs/results/guidance_sweep.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from kinema.commands.evaluate import suite_generator
from kinema.evaluate.run import evaluate
from kinema.evaluate.suite import build_suite


def object_reads(items: list[dict]) -> dict[str, object]:
    """Objects asked for and read, and the motions read: a pulsing object is read as growing or shrinking."""
    motions = Counter(o["motion"] for it in items for o in it["read"]["objects"])
    return {
        "objects_asked": sum(len(it["scene"]["objects"]) for it in items),
        "objects_read": sum(it["read"]["count"] for it in items),
        "motions_read": dict(motions.most_common()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    parser.add_argument("--guidance", type=float, nargs="+", default=[3.0, 4.0, 6.0, 8.0])
    parser.add_argument("--steps", type=int, nargs="+", default=[20])
    parser.add_argument("--limit", type=int, default=None, help="first N seen prompts only")
    parser.add_argument("--size", type=int, default=64, help="the suite's base resolution (a model trained at 128 px: 128)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    suite = build_suite("seen", size=args.size)
    suite = suite[: args.limit] if args.limit else suite
    rows = []
    for steps in args.steps:
        for guidance in args.guidance:
            start = time.perf_counter()
            result = evaluate(suite_generator(args.model, steps, guidance), suite, progress=False)
            rows.append(
                {
                    "steps": steps,
                    "guidance": guidance,
                    "overall": result["overall"],
                    "accuracy": result["accuracy"],
                    "flicker": result["flicker"]["score"],
                    "seconds": round(time.perf_counter() - start, 1),
                    **object_reads(result["items"]),
                }
            )
            acc = " ".join(f"{k} {v:.1%}" for k, v in result["accuracy"].items())
            print(f"steps {steps:3d} guidance {guidance:5.1f}: overall {result['overall']:.1%} ({acc})", flush=True)
    best = max(rows, key=lambda r: r["overall"])
    print(f"best on seen: steps {best['steps']} guidance {best['guidance']} ({best['overall']:.1%})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"suite": "seen", "size": args.size, "items": len(suite), "rows": rows, "best": best}, indent=2) + "\n")


if __name__ == "__main__":
    main()
