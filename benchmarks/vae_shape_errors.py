"""Which shapes a VAE loses: the judge's shape reading per (shape, size) on round trips of held-out clips.

Why: the judge's shape accuracy on VAE round trips caps every model built on that
VAE; this shows where the cap comes from (objects matched by color; a shape the
judge reads right on the ground truth but not on the round trip is the VAE's loss).

    python benchmarks/vae_shape_errors.py src/kinema/assets/builtin/vae
"""

from __future__ import annotations

import argparse
import collections

from kinema.evaluate.run import ground_truth
from kinema.evaluate.suite import build_suite
from kinema.models.io import load_pretrained
from kinema.world.judge import read_clip
from vae_roundtrip import roundtrip  # benchmarks/vae_roundtrip.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vae_dir")
    parser.add_argument("--limit", type=int, default=48)
    args = parser.parse_args()
    vae = load_pretrained(args.vae_dir).float()
    kept: collections.Counter = collections.Counter()
    total: collections.Counter = collections.Counter()
    for item in build_suite("heldout")[: args.limit]:
        frames = ground_truth(item)
        truth, through = read_clip(frames, item.clip.fps), read_clip(roundtrip(vae, frames), item.clip.fps)
        for obj in item.scene.objects:
            if obj.shape not in [r.shape for r in truth.objects if r.color == obj.color]:
                continue  # the judge misreads the ground truth itself: not the VAE's loss
            total[(obj.size, obj.shape)] += 1
            kept[(obj.size, obj.shape)] += obj.shape in [r.shape for r in through.objects if r.color == obj.color]
    for key in sorted(total):
        print(f"{key[0]:>6} {key[1]:>8}: {kept[key]} of {total[key]} read right after the VAE")
    for size in sorted({k[0] for k in total}):
        n, k = sum(v for kk, v in total.items() if kk[0] == size), sum(v for kk, v in kept.items() if kk[0] == size)
        print(f"{size}: {k} of {n} ({k / n:.0%})")


if __name__ == "__main__":
    main()
