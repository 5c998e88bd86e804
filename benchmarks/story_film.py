"""A 2-minute film: composition overhead per output minute and audio/video drift.

    python benchmarks/story_film.py [--model DIR] [--minutes 2] [--json docs/results/story_film.json]

30 shots of 4 s (crossfades, wipes, fades through black), intro and outro
cards, a caption per shot read aloud, a music bed, 640x360 at 24 fps. The
film is rendered twice in one warm process: the second render finds every
shot in the cache and, with the film's encoded segments deleted in between,
draws and encodes every frame again, so its wall time is the composition
overhead (planning, cache reads, audio, frames, encoding, muxing: everything
but generation). A third render, segments kept, is what a re-render with no
edit costs.
Drift is read back from the muxed file's stream timestamps: the end of the
last audio packet minus the end of the last video frame (pts + duration).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

COLORS = ["red", "blue", "green", "yellow", "purple", "cyan", "orange", "white"]
SHAPES = ["circle", "square", "triangle", "star", "diamond", "cross"]
MOTIONS = ["moving left", "moving right", "moving up", "moving down", "bouncing", "spinning"]
TRANSITIONS = [{"type": "crossfade", "duration": 0.5}, {"type": "wipe", "duration": 0.5}, {"type": "fade-black", "duration": 0.6}, "cut"]


def storyboard(minutes: float) -> dict:
    shots = []
    total = 2.0 + 2.0  # intro + outro
    i = 0
    while total < minutes * 60 - 1e-6:
        name = f"a {COLORS[i % len(COLORS)]} {SHAPES[i % len(SHAPES)]} {MOTIONS[i % len(MOTIONS)]}"
        transition = TRANSITIONS[i % len(TRANSITIONS)]
        shots.append({"prompt": name, "duration": 4, "caption": f"Shot {i + 1}: {name}.", "transition": transition})
        overlap = 0 if transition == "cut" else transition["duration"]
        total += 4 - overlap
        i += 1
    return {
        "title": "Two minutes", "fps": 24, "seed": 1,
        "intro": {"title": "Two minutes of shapes", "subtitle": "図形の二分間", "duration": 2, "transition": "crossfade"},
        "outro": {"title": "The end", "duration": 2},
        "shots": shots,
        "soundtrack": {"narration": {"rate": 190}, "music": {"tempo": 90}},
        "output": {"height": 360},
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--json", type=Path, default=Path("docs/results/story_film.json"))
    args = ap.parse_args()

    from kinema.engine.pipeline import Pipeline
    from kinema.studio.cache import ShotCache
    from kinema.studio.load import parse_storyboard
    from kinema.studio.mux import stream_report
    from kinema.studio.render import Studio

    pipe = Pipeline.from_model(args.model)
    pipe.load()
    board = parse_storyboard(storyboard(args.minutes))
    with tempfile.TemporaryDirectory() as tmp:
        studio = Studio(pipe, ShotCache(Path(tmp) / "cache"))
        _ = studio.fingerprint
        out = Path(tmp) / "film.mp4"
        t0 = time.perf_counter()
        cold = studio.render(board, out)
        cold_s = time.perf_counter() - t0
        shutil.rmtree(Path(tmp) / "cache" / "segments")
        t0 = time.perf_counter()
        warm = studio.render(board, out)
        warm_s = time.perf_counter() - t0
        assert warm.generated == 0 and warm.segments_reused == 0
        t0 = time.perf_counter()
        unchanged = studio.render(board, out)
        unchanged_s = time.perf_counter() - t0
        streams = stream_report(out)
        size = out.stat().st_size
    minutes = warm.plan.film.duration / 60
    drift = streams["audio"]["end"] - streams["video"]["end"]
    result = {
        "film_seconds": warm.plan.film.duration, "shots": len(board.shots), "size": list(board.size()), "fps": board.fps,
        "cold_render_seconds": cold_s, "cold_timings": cold.timings, "generated": cold.generated,
        "overhead_seconds": warm_s, "overhead_timings": warm.timings, "overhead_seconds_per_output_minute": warm_s / minutes,
        "streams": streams, "drift_seconds": drift, "drift_frames": drift * board.fps, "file_bytes": size,
        "unchanged_rerender_seconds": unchanged_s, "unchanged_segments_reused": unchanged.segments_reused,
        "warnings": warm.warnings,
    }  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("streams",)}, indent=2))
    print(f"video end {streams['video']['end']:.4f} s, audio end {streams['audio']['end']:.4f} s, drift {drift * 1000:.2f} ms = {drift * board.fps:.3f} frames")


if __name__ == "__main__":
    main()
