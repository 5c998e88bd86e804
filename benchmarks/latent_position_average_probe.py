"""What a latent averaged between two object positions decodes to (diagnostic).

Why: the built-in model's objects are read as "diamond" (an elongated blob) far more
often than any other shape. A denoiser unsure where an object is predicts the
average of the latents of its possible places; this probe shows what the VAE makes
of such an average. For each shape, an image of a medium object is encoded at x,
at x + d and at the midpoint x + d/2 (d = 8 px, one latent cell, and 16 px); the
average of the two end latents is decoded and judged beside the midpoint's own
round trip. The judge reads a one-frame image held for three frames.

    python benchmarks/latent_position_average_probe.py --json docs/results/latent_position_average_probe.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from kinema.engine.native import frames_to_uint8
from kinema.models.io import load_pretrained
from kinema.train.data import to_model_video
from kinema.world.judge import read_clip
from kinema.world.render import render
from kinema.world.scene import SHAPES, ClipSpec, ObjectSpec, Scene


def image(shape: str, x: float, y: float, size: int, seed: int) -> np.ndarray:
    """One rendered frame [1, H, W, 3]: a medium red object at (x, y) on a plain black background."""
    scene = Scene(objects=(ObjectSpec(shape=shape, color="red", size="medium", x=x, y=y),))
    return render(scene, ClipSpec(size, size, 1, 8.0), seed=seed)


def read(frames: np.ndarray) -> str:
    """The judge's reading of one frame: the shape of its one object, else how many it saw."""
    reading = read_clip(np.repeat(frames, 3, axis=0), 8.0)
    return reading.objects[0].shape if reading.count == 1 else f"{reading.count} objects"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", default="src/kinema/assets/builtin/vae")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--offsets", type=int, nargs="+", default=[8, 16], help="pixels between the two positions")
    parser.add_argument("--starts", type=int, default=4, help="start positions per shape and offset")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    vae = load_pretrained(args.vae).float().eval()

    def encode(frames: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return vae.encode(to_model_video(frames))

    def decode(z: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return frames_to_uint8(vae.decode(z)[0]).numpy()

    rng = np.random.default_rng(0)
    rows = []
    for offset in args.offsets:
        step = offset / args.size
        for shape in SHAPES:
            for _ in range(args.starts):
                x, y = float(rng.uniform(0.3, 0.7 - step)), float(rng.uniform(0.35, 0.65))
                seed = int(rng.integers(2**31))
                a, mid, b = (image(shape, x + f * step, y, args.size, seed) for f in (0.0, 0.5, 1.0))
                average = 0.5 * (encode(a) + encode(b))
                rows.append({"offset": offset, "shape": shape, "midpoint": read(decode(encode(mid))), "average": read(decode(average))})
    summary = {}
    for offset in args.offsets:
        mine = [r for r in rows if r["offset"] == offset]
        summary[str(offset)] = {
            "items": len(mine),
            "midpoint_shape_right": sum(r["midpoint"] == r["shape"] for r in mine) / len(mine),
            "average_shape_right": sum(r["average"] == r["shape"] for r in mine) / len(mine),
            "average_reads": dict(Counter(r["average"] for r in mine).most_common()),
        }
        s = summary[str(offset)]
        print(
            f"{offset:>2} px apart: midpoint round trip reads its shape {100 * s['midpoint_shape_right']:.0f}%, "
            f"the averaged latent {100 * s['average_shape_right']:.0f}%; the average reads {s['average_reads']}"
        )
    if args.json:
        args.json.write_text(json.dumps({"vae": args.vae, "size": args.size, "summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
