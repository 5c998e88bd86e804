"""A contact sheet of image-to-video clips against their ground truth, to look at rather than score.

    python benchmarks/i2v_contact_sheet.py [--model DIR] [--items 6] --out /tmp/i2v_sheet.png

For the first N square clips of the held-out suite: one row of the renderer's ground
truth (every second frame), under it the row the model makes from that clip's first
frame and prompt (the suite's seed, default settings). The judge's figure says how
often the first frame's objects survive; the sheet shows where and how they are lost.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from kinema import Pipeline
from kinema.evaluate.run import ground_truth
from kinema.evaluate.suite import build_suite


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    ap.add_argument("--items", type=int, default=6)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    pipe = Pipeline.from_model(args.model)
    items = [it for it in build_suite("heldout") if it.clip.width == it.clip.height == 64][: args.items]
    rows = []
    for it in items:
        gt = ground_truth(it)
        video = pipe.generate(it.prompt, seed=it.seed, image=gt[0], width=64, height=64)
        frames = video.frames[::2]
        rows += [np.concatenate(list(gt[: len(video.frames)][::2]), axis=1), np.concatenate(list(frames), axis=1)]
        print(it.prompt)
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
