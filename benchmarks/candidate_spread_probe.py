"""How much do a model's clips of one prompt differ from seed to seed? The room best-of-N selection has.

For every item of a suite, this samples `--candidates` clips (candidate 0 with the item's own
seed, as `kinema evaluate` does, the others with derived seeds), decodes and judges each, and
reports the mean accuracy, the first candidate's (what the suite reads today) and the oracle's:
the best candidate per item as the judge reads it. The oracle is a diagnostic of the spread
only, never a way to generate: a selector the engine can use must not see the judge. The
candidates' latents, prompts and judge reads are saved (`--save`) so a learned selector can be
scored on them offline without sampling again.

    python benchmarks/candidate_spread_probe.py --suite heldout --candidates 8 \
        --save runs/candidates/heldout.pt --json docs/results/candidate_spread_heldout.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from kinema import Pipeline
from kinema.engine.timing import Timings
from kinema.evaluate.suite import DEFAULT_ITEMS, build_suite, seed_for
from kinema.request import make_request
from kinema.world.judge import ATTRIBUTES, read_clip, score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    ap.add_argument("--suite", default="heldout", choices=("seen", "heldout"))
    ap.add_argument("--items", type=int, default=DEFAULT_ITEMS)
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--save", type=Path, default=None, help="write candidates' latents and reads here (.pt)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    pipe = Pipeline.from_model(args.model)
    backend = pipe.backend
    suite = build_suite(args.suite, n_items=args.items)
    saved, per_item = [], []
    for i, item in enumerate(suite):
        fields = dict(prompt=item.prompt, seed=item.seed, width=item.clip.width, height=item.clip.height, seconds=item.clip.seconds, fps=item.clip.fps)
        if args.guidance is not None:
            fields["guidance"] = args.guidance
        resolved = backend.validate(make_request(**fields))
        backend.load()
        latents, reads = [], []
        with torch.inference_mode():
            text = backend._text(resolved, Timings())
            for k in range(args.candidates):
                generator = torch.Generator().manual_seed(seed_for(item.seed, k))
                z = backend._sample(resolved.generated_frames, {}, None, text, resolved, generator, lambda *_: None, Timings())
                frames = backend._decode(z)
                s = score(read_clip(frames, resolved.fps), item.scene)
                latents.append(z[0].to(torch.float16))
                reads.append(s)
        n_right = [sum(s.values()) for s in reads]
        per_item.append({"prompt": item.prompt, "right_per_candidate": n_right})
        saved.append({"prompt": item.prompt, "scene": item.scene.to_dict(), "size": [item.clip.height, item.clip.width], "latents": torch.stack(latents), "correct": reads})
        print(f"{i + 1}/{len(suite)} {n_right} {item.prompt}", flush=True)

    def accuracy(pick) -> dict[str, float]:
        rows = [saved[i]["correct"][pick(i)] for i in range(len(saved))]
        out = {a: float(np.mean([r[a] for r in rows])) for a in ATTRIBUTES}
        out["overall"] = float(np.mean([out[a] for a in ATTRIBUTES]))
        return out

    n = args.candidates
    mean = {a: float(np.mean([s["correct"][k][a] for s in saved for k in range(n)])) for a in ATTRIBUTES}
    mean["overall"] = float(np.mean([mean[a] for a in ATTRIBUTES]))
    result = {
        "model": args.model or "builtin",
        "suite": args.suite,
        "items": len(saved),
        "candidates": n,
        "first_candidate": accuracy(lambda i: 0),
        "mean_over_candidates": mean,
        "oracle_best": accuracy(lambda i: int(np.argmax(per_item[i]["right_per_candidate"]))),
        "per_item": per_item,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "per_item"}, indent=1))
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        torch.save(saved, args.save)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
