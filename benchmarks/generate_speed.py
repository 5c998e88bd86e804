"""Wall time of one default clip: cold from the CLI (a fresh process, start-up
included) with the split kinema prints, and warm from one Python process.

    python benchmarks/generate_speed.py --runs 3 [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a red ball moving left"


def cold_runs(runs: int, model: str | None) -> list[dict[str, float]]:
    results = []
    kinema = str(Path(sys.executable).with_name("kinema"))
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            cmd = [kinema, "generate", PROMPT, "-o", f"{tmp}/out{i}.mp4", "--seed", str(i), "--timings", "--no-progress"]
            if model:
                cmd += ["--model", model]
            start = time.perf_counter()
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            wall = time.perf_counter() - start
            split = {m.group(1).strip().replace(" ", "_"): float(m.group(2)) for m in re.finditer(r"^([a-z ]+?)\s+([0-9.]+) s$", out, re.M)}
            split["wall"] = wall
            results.append(split)
    return results


def warm_runs(runs: int, model: str | None) -> dict[str, float]:
    from kinema import Pipeline

    pipe = Pipeline.from_pretrained(model) if model else Pipeline.from_builtin()
    pipe.generate(PROMPT, seed=0)  # load weights, warm caches
    walls, clip_seconds = [], 0.0
    for i in range(runs):
        start = time.perf_counter()
        video = pipe.generate(PROMPT, seed=i)
        walls.append(time.perf_counter() - start)
        clip_seconds = video.num_frames / video.fps
    median = statistics.median(walls)
    return {"median_wall_s": round(median, 3), "clip_seconds": clip_seconds, "realtime_factor": round(clip_seconds / median, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    args = parser.parse_args()
    cold = cold_runs(args.runs, args.model)
    keys = cold[0].keys()
    print(json.dumps({"cold_median": {k: round(statistics.median(r[k] for r in cold), 3) for k in keys}, "cold_runs": cold}))
    print(json.dumps({"warm": warm_runs(args.runs, args.model)}))


if __name__ == "__main__":
    main()
