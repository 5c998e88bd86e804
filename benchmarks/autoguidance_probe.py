"""Autoguidance (Karras et al. 2024, "Guiding a Diffusion Model with a Bad Version of Itself") on the built-in DiT.

The DiT's clips of one prompt vary a lot from seed to seed (`candidate_spread_probe.py`): some are
right, many have blobs, pulsing objects or an object too many. Autoguidance pushes each step away
from what a weaker model of the same task predicts for the same prompt, `v = v_bad + w (v - v_bad)`,
which in the paper removes such outliers without the loss of variety plain guidance brings. Here the
weaker model is a DiT given by `--bad` (e.g. the recipe's first-phase DiT, trained only on one
object). With `--guidance` > 1 the usual classifier-free guidance is applied on top, to both branches.

Every suite prompt is sampled with `--seeds` seeds (the suite's own, then derived ones) and judged;
the mean over seeds is reported (a one-seed figure moves by several points with the seed).

    python benchmarks/autoguidance_probe.py --bad runs/X/work/dit_first_ema --weight 2 --guidance 4 \
        --suite seen --seeds 4 --json docs/results/autoguidance_seen_w2.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from kinema import Pipeline
from kinema.evaluate.suite import DEFAULT_ITEMS, build_suite, seed_for
from kinema.models.io import load_pretrained
from kinema.world.judge import ATTRIBUTES, read_clip, score


class AutoGuided(torch.nn.Module):
    """A DiT whose velocity is pushed away from a weaker DiT's: bad + w (good - bad)."""

    def __init__(self, good: torch.nn.Module, bad: torch.nn.Module, weight: float):
        super().__init__()
        self.good, self.bad, self.weight = good, bad, weight
        self.config = good.config

    def forward(self, *args, **kw) -> torch.Tensor:
        v_good = self.good(*args, **kw)
        if self.weight == 1.0:
            return v_good
        v_bad = self.bad(*args, **kw)
        return v_bad + self.weight * (v_good - v_bad)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    ap.add_argument("--bad", type=Path, required=True, help="the weaker DiT's directory (config.json + model.safetensors)")
    ap.add_argument("--weight", type=float, default=2.0, help="autoguidance weight w (1 = off)")
    ap.add_argument("--guidance", type=float, default=None, help="classifier-free guidance on top (default: the model's)")
    ap.add_argument("--suite", default="seen", choices=("seen", "heldout"))
    ap.add_argument("--items", type=int, default=DEFAULT_ITEMS)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    pipe = Pipeline.from_model(args.model)
    pipe.backend.load()
    pipe.backend._dit = AutoGuided(pipe.backend._dit, load_pretrained(args.bad).eval(), args.weight)
    options = {} if args.guidance is None else {"guidance": args.guidance}
    reads = []
    for i, item in enumerate(build_suite(args.suite, n_items=args.items)):
        row = []
        for k in range(args.seeds):
            video = pipe.generate(item.prompt, seed=seed_for(item.seed, k), width=item.clip.width, height=item.clip.height, seconds=item.clip.seconds, fps=item.clip.fps, **options)
            row.append(score(read_clip(video.frames, item.clip.fps), item.scene))
        reads.append(row)
        print(f"{i + 1} {[sum(r.values()) for r in row]} {item.prompt}", flush=True)
    flat = [r for row in reads for r in row]
    acc = {a: float(np.mean([r[a] for r in flat])) for a in ATTRIBUTES}
    acc["overall"] = float(np.mean([acc[a] for a in ATTRIBUTES]))
    per_seed = [float(np.mean([np.mean([row[k][a] for a in ATTRIBUTES]) for row in reads])) for k in range(args.seeds)]
    result = {"model": args.model or "builtin", "bad": str(args.bad), "weight": args.weight, "guidance": args.guidance, "suite": args.suite, "items": len(reads), "seeds": args.seeds, "mean_over_seeds": acc, "overall_per_seed": per_seed}
    print(json.dumps({k: v for k, v in result.items()}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
