"""Would a selector pick better clips? Scores saved candidates offline and reports the judge's reads of its picks.

Reads the candidates `candidate_spread_probe.py --save` wrote (latents and the judge's reads per
candidate), scores every candidate, and reports, for best-of-N with N = 1, 2, 4, ... (the first N
candidates), the judge's accuracy of the selector's pick, beside the mean over candidates and the
judge's own best (the oracle). Selectors, none of which sees the judge:

- `matcher`: a trained video-text matcher's score against the prompt (`--matcher DIR`);
- `medoid`: the candidate closest (L2, latents) to the others, i.e. the most typical clip;
- `dit-gap`: a diffusion classifier from the DiT itself (`--dit DIR`): how much the prompt lowers
  its velocity loss on the candidate against the empty prompt, at t = 0.3, 0.6, 0.9, two noise
  draws each, the same noise for every candidate.

    python benchmarks/matcher_rerank_probe.py --matcher runs/X/matcher \
        --candidates runs/candidates/seen.pt --json docs/results/matcher_rerank_seen.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from kinema.models.io import load_pretrained
from kinema.models.text import load_text_encoder
from kinema.world.judge import ATTRIBUTES


def accuracy(rows: list[dict]) -> dict[str, float]:
    out = {a: float(np.mean([r[a] for r in rows])) for a in ATTRIBUTES}
    out["overall"] = float(np.mean([out[a] for a in ATTRIBUTES]))
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (average ranks for ties); NaN when either side is constant."""

    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for v in np.unique(x):
            r[x == v] = r[x == v].mean()
        return r

    ra, rb = ranks(np.asarray(a, dtype=float)), ranks(np.asarray(b, dtype=float))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


_CACHE: dict = {}


def _encoder():
    if "encoder" not in _CACHE:
        _CACHE["encoder"] = load_text_encoder("all-MiniLM-L6-v2")
    return _CACHE["encoder"]


def _model(path: Path):
    if path not in _CACHE:
        _CACHE[path] = load_pretrained(path).eval()
    return _CACHE[path]


@torch.inference_mode()
def matcher_scores(item: dict, n: int, args: argparse.Namespace) -> np.ndarray:
    text, mask = _encoder().encode([item["prompt"]])
    z = item["latents"][:n].float()
    return _model(args.matcher)(z, text.expand(n, -1, -1), mask.expand(n, -1)).numpy()


def medoid_scores(item: dict, n: int, args: argparse.Namespace) -> np.ndarray:
    z = item["latents"][:n].float().flatten(1)
    return -torch.cdist(z, z).sum(1).numpy()


@torch.inference_mode()
def dit_gap_scores(item: dict, n: int, args: argparse.Namespace) -> np.ndarray:
    from kinema.diffusion import flow

    dit = _model(args.dit)
    z = item["latents"][:n].float()
    text, mask = _encoder().encode([item["prompt"], ""])
    texts = torch.cat([text[:1].expand(n, -1, -1), text[1:].expand(n, -1, -1)])
    masks = torch.cat([mask[:1].expand(n, -1), mask[1:].expand(n, -1)])
    g = torch.Generator().manual_seed(0)
    gap = torch.zeros(n)
    for t_value in (0.3, 0.6, 0.9):
        for _ in range(2):
            noise = torch.randn(z.shape[1:], generator=g).expand_as(z)
            t = torch.full((n,), t_value)
            xt = flow.add_noise(z, noise, t)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                v = dit(torch.cat([xt, xt]), torch.cat([t, t]), texts, masks).float()
            target = noise - z
            gap += ((v[n:] - target) ** 2).mean((1, 2, 3, 4)) - ((v[:n] - target) ** 2).mean((1, 2, 3, 4))
    return gap.numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--selector", choices=("matcher", "medoid", "dit-gap"), default="matcher")
    ap.add_argument("--matcher", type=Path, default=None)
    ap.add_argument("--dit", type=Path, default=None, help="the DiT for --selector dit-gap")
    ap.add_argument("--candidates", type=Path, required=True)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    if args.selector == "matcher" and args.matcher is None or args.selector == "dit-gap" and args.dit is None:
        ap.error(f"--selector {args.selector} needs {'--matcher' if args.selector == 'matcher' else '--dit'}")
    items = torch.load(args.candidates)
    n_max = items[0]["latents"].shape[0]
    score = {"matcher": matcher_scores, "medoid": medoid_scores, "dit-gap": dit_gap_scores}[args.selector]
    result: dict = {"selector": args.selector, "matcher": str(args.matcher), "dit": str(args.dit), "candidates": str(args.candidates), "items": len(items), "best_of": {}}
    full = None if args.selector == "medoid" else [score(item, n_max, args) for item in items]  # a medoid depends on the set
    n = 1
    while n <= n_max:
        scores = [score(item, n, args) for item in items] if full is None else [f[:n] for f in full]
        picks = [int(np.argmax(s)) for s in scores]
        oracle = [int(np.argmax([sum(c.values()) for c in item["correct"][:n]])) for item in items]
        result["best_of"][n] = {
            "selector_pick": accuracy([item["correct"][p] for item, p in zip(items, picks)]),
            "oracle_pick": accuracy([item["correct"][p] for item, p in zip(items, oracle)]),
            "mean": accuracy([c for item in items for c in item["correct"][:n]]),
        }
        n *= 2
    # How well the score tracks the judge within a prompt: Spearman correlation with attributes read right.
    rhos = [spearman(s, np.array([sum(c.values()) for c in item["correct"]], dtype=float)) for s, item in zip(scores, items)]  # over all n_max
    result["mean_within_prompt_spearman"] = float(np.nanmean(rhos))
    for n, row in result["best_of"].items():
        print(f"best of {n}: {args.selector} {row['selector_pick']['overall']:.3f}  oracle {row['oracle_pick']['overall']:.3f}  mean {row['mean']['overall']:.3f}  " + " ".join(f"{a} {row['selector_pick'][a]:.2f}" for a in ATTRIBUTES))
    print("within-prompt spearman", result["mean_within_prompt_spearman"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
