"""Probe: guidance on the given frames, on top of the text's classifier-free guidance, for image-to-video.

At every sampling step the DiT also runs without its frame conditioning (the task "text" of its training mix
taught it that case), and the velocity is pushed away from it: `v + s (v - v_without_frames)`, as image-to-video
models that guide on the image do. Measured as `benchmarks/conditioning.py --parts i2v` measures it: the judge
reads the given first frame's objects (colour and shape) over the clip.

    python benchmarks/frame_guidance_probe.py --scales 0 1 3 --items 24 --json docs/results/frame_guidance_probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from conditioning import part_i2v
from kinema import Pipeline
from kinema.evaluate.suite import build_suite


class FrameGuided(torch.nn.Module):
    """The DiT, with its velocity pushed away from the same step's velocity without frame conditioning."""

    def __init__(self, dit: torch.nn.Module, scale: float):
        super().__init__()
        self.dit, self.scale, self.config = dit, scale, dit.config

    def forward(self, x, t, text, mask, cond=None, **kw):
        v = self.dit(x, t, text, mask, cond=cond, **kw)
        if cond is None or self.scale == 0 or not bool(cond[:, -1].any()):
            return v
        return v + self.scale * (v - self.dit(x, t, text, mask, cond=torch.zeros_like(cond), **kw))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.0, 1.0, 3.0])
    parser.add_argument("--items", type=int, default=24, help="square held-out suite items")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    pipe = Pipeline.from_model(args.model)
    pipe.load()
    items = [it for it in build_suite("heldout", size=64) if it.clip.height == it.clip.width == 64][: args.items]
    dit = pipe.backend._dit
    rows = []
    for scale in args.scales:
        pipe.backend._dit = FrameGuided(dit, scale)
        rows.append({"frame_guidance": scale, **part_i2v(pipe, items, None)})
        print(json.dumps(rows[-1]), flush=True)
    pipe.backend._dit = dit
    if args.json:
        args.json.write_text(json.dumps({"model": args.model or "builtin", "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
