"""Do the DiT's training pairs hold what their captions say? Cached latents decoded and judged.

Why: every DiT variant plateaus far below what the same pipeline reads on clips the
DiT has fitted, and that probe encodes its clips afresh, so it would not see a bug
in the cache stage that pairs latents with the wrong clip or caption, or stores a
wide bucket's latents transposed. This decodes the first `--per-bucket` rows of
every cached bucket with the run's VAE, judges them against the scene of the clip
the cache says they are: a misaligned cache reads near chance, an aligned one near
the VAE's ceiling.

    python benchmarks/cache_alignment_probe.py runs/builtin-base --json docs/results/cache_alignment_probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from kinema.models.io import load_pretrained
from kinema.train.latents import LatentCache
from kinema.world.judge import ATTRIBUTES, read_clip, score
from kinema.world.scene import Scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a training run's output_dir (with cache/, dataset/ and work/vae or a --vae)")
    parser.add_argument("--vae", type=Path, default=None, help="VAE directory (default: <run>/work/vae)")
    parser.add_argument("--per-bucket", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cache = LatentCache.load(args.run / "cache")
    records = [json.loads(line) for line in (args.run / "dataset" / "metadata.jsonl").read_text().splitlines() if line.strip()]
    vae = load_pretrained(args.vae or args.run / "work" / "vae").eval()
    per_bucket, totals, clips = {}, dict.fromkeys(ATTRIBUTES, 0), 0
    for key in sorted(cache.latents):
        rows = cache.latents[key][: args.per_bucket].float()
        with torch.no_grad():
            video = vae.decode(rows)
        frames = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).numpy()
        right = dict.fromkeys(ATTRIBUTES, 0)
        for i in range(len(rows)):
            record = records[int(cache.clip_ids[key][i])]
            if (record["num_frames"], record["height"], record["width"]) != frames[i].shape[:3]:
                raise SystemExit(f"{key} row {i}: decoded {frames[i].shape[:3]} but the clip is {record['num_frames']}x{record['height']}x{record['width']}")
            reading = score(read_clip(frames[i], float(record["fps"])), Scene.from_dict(record["scene"]))
            for a in ATTRIBUTES:
                right[a] += int(reading[a])
        per_bucket[key] = {a: round(right[a] / len(rows), 3) for a in ATTRIBUTES}
        totals = {a: totals[a] + right[a] for a in ATTRIBUTES}
        clips += len(rows)
        print(key, per_bucket[key])
    overall = {a: round(totals[a] / clips, 3) for a in ATTRIBUTES}
    overall["all"] = round(float(np.mean(list(overall.values()))), 3)
    print("all buckets", overall)
    if args.json:
        args.json.write_text(json.dumps({"run": str(args.run), "clips": clips, "per_bucket": per_bucket, "overall": overall}, indent=2))


if __name__ == "__main__":
    main()
