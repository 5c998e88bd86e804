"""Re-render after editing one shot of five vs the full render (target: at most a quarter).

    python benchmarks/story_rerender.py [--model DIR] [--json docs/results/story_rerender.json]

Warm process (model loaded once, as in a server or an editor session), empty
shot cache: render a 5-shot storyboard with titles, captions, narration and
music (all five shots generated), edit the third shot's prompt, render again
(one shot generated, four from the cache; only the film segments that show
the edited shot are encoded again). Both times include planning,
composition, audio and encoding.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

BOARD = {
    "title": "Rerender",
    "fps": 24,
    "intro": {"title": "The red ball", "duration": 1.5},
    "transition": {"type": "crossfade", "duration": 0.5},
    "subjects": [{"name": "red circle", "description": "a large red circle"}],
    "shots": [
        {"prompt": "a large red circle moving left", "duration": 4, "caption": "It sets off."},
        {"prompt": "a large red circle moving up", "duration": 4, "caption": "It climbs."},
        {"prompt": "a large red circle moving right", "duration": 4, "caption": "It turns."},
        {"prompt": "a large red circle moving down", "duration": 4, "caption": "It drops."},
        {"prompt": "a large red circle spinning", "duration": 4, "caption": "It spins."},
    ],
    "soundtrack": {"narration": True, "music": True},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--preset", default=None, help="x264 preset (default: the storyboard default)")
    ap.add_argument("--json", type=Path, default=Path("docs/results/story_rerender.json"))
    args = ap.parse_args()
    board = copy.deepcopy(BOARD)
    if args.preset:
        board["output"] = {"preset": args.preset}

    from kinema.engine.pipeline import Pipeline
    from kinema.studio.cache import ShotCache
    from kinema.studio.load import parse_storyboard
    from kinema.studio.render import Studio

    pipe = Pipeline.from_model(args.model)
    pipe.load()
    runs = []
    for _ in range(args.repeats):  # the machine is shared: pairs of (full, edit) renders, median ratio
        with tempfile.TemporaryDirectory() as tmp:
            studio = Studio(pipe, ShotCache(Path(tmp) / "cache"))
            _ = studio.fingerprint  # hashing the weights once is start-up, not rendering
            out = Path(tmp) / "film.mp4"
            t0 = time.perf_counter()
            full = studio.render(parse_storyboard(board), out)
            full_s = time.perf_counter() - t0
            edited = copy.deepcopy(board)
            edited["shots"][2]["prompt"] = "a large red circle bouncing"
            t0 = time.perf_counter()
            again = studio.render(parse_storyboard(edited), out)
            again_s = time.perf_counter() - t0
        runs.append({
            "full_seconds": full_s, "full_generated": full.generated, "full_timings": full.timings,
            "edit_seconds": again_s, "edit_generated": again.generated, "edit_timings": again.timings,
            "edit_segments_encoded": again.segments_encoded, "edit_segments_reused": again.segments_reused,
            "ratio": again_s / full_s,
        })  # fmt: skip
    result = {
        "median_ratio": statistics.median(r["ratio"] for r in runs),
        "median_full_seconds": statistics.median(r["full_seconds"] for r in runs),
        "median_edit_seconds": statistics.median(r["edit_seconds"] for r in runs),
        "film_seconds": full.plan.film.duration, "preset": full.plan.board.output.preset, "runs": runs,
    }  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    for r in runs:
        print(f"full {r['full_seconds']:.1f} s ({r['full_timings']})\nedit {r['edit_seconds']:.1f} s ({r['edit_timings']}) ratio {r['ratio']:.3f}")
    print(f"median ratio {result['median_ratio']:.3f} (full {result['median_full_seconds']:.1f} s, edit {result['median_edit_seconds']:.1f} s)")


if __name__ == "__main__":
    main()
