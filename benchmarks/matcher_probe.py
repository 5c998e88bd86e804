"""Train a video-text matcher on a finished run's cache, then check what it reads on real clips.

The recipe's `matcher` stage does the same training inside `kinema train`; this script runs it on
an existing run (its cache and dataset) so the matcher can be tried without retraining anything,
with two options the stage does not have:

- `--estimates-from DIT`: every other step trains on the DiT's own clean-latent estimates of
  noised training clips (t uniform in `--t-range`) instead of the clips' latents, so the matcher
  also sees latents that look like generated ones (blurred, over-strong) under their true captions.
- `--real-check SUITE`: after training, render the suite's scenes, encode them with the run's VAE,
  and count how often the matcher scores the true prompt above the prompt of the same scene with one
  attribute changed (`kinema.train.matcher_data.perturb_scene`), per attribute.

    python benchmarks/matcher_probe.py --run runs/builtin-salient-recipe --config configs/experiments/builtin-salient-recipe.toml \
        --minutes 8 --out runs/matcher-probe/h128 --real-check seen --json docs/results/matcher_probe_h128.json
then score its picks among saved candidates with `matcher_rerank_probe.py`.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch

from kinema.diffusion import flow
from kinema.models.io import load_pretrained, save_pretrained
from kinema.models.matcher import MatcherConfig, VideoTextMatcher
from kinema.models.text import load_text_encoder
from kinema.train.builtin import _records
from kinema.train.config import MatcherStageConfig, load_config
from kinema.train.distributed import DistInfo
from kinema.train.latents import TRAIN_MAX_TOKENS, LatentCache, cache_negatives
from kinema.train.loop import LoopSettings
from kinema.train.matcher_data import KINDS, perturb_scene
from kinema.train.matcher_trainer import MatcherBatches, load_negatives, train_matcher
from kinema.train.precision import resolve_precision


def dit_estimates(cache: LatentCache, dit_dir: Path, t_range: tuple[float, float], per_bucket: int, seed: int) -> LatentCache:
    """A cache whose latents are the DiT's clean estimates x0 = x_t - t v of noised cached clips (captioned as their clips)."""
    dit = load_pretrained(dit_dir).eval()
    out = copy.copy(cache)
    out.latents, out.clip_ids = {}, {}
    c = cache.latent_mean.numel()
    mean, std = cache.latent_mean.view(1, c, 1, 1, 1), cache.latent_std.view(1, c, 1, 1, 1)
    rng, g = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        for key, lat in cache.latents.items():
            rows = torch.as_tensor(rng.choice(lat.shape[0], size=min(per_bucket, lat.shape[0]), replace=False))
            estimates = []
            for chunk in rows.split(64):
                x0 = (lat[chunk].float() - mean) / std
                clips = cache.clip_ids[key][chunk]
                lo, hi = cache.clip_offsets[clips], cache.clip_offsets[clips + 1]
                caption = cache.caption_ids[lo + (torch.rand(len(chunk), generator=g) * (hi - lo)).long()]
                n = cache.text_lengths[caption].long()
                text, mask = cache.text_hidden[caption, : int(n.max())].float(), torch.arange(int(n.max()))[None] < n[:, None]
                t = t_range[0] + (t_range[1] - t_range[0]) * torch.rand(len(chunk), generator=g)
                xt = flow.add_noise(x0, torch.randn(x0.shape, generator=g), t)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    v = dit(xt, t, text, mask).float()
                estimates.append((flow.clean_estimate(xt, v, t) * std + mean).half())
            out.latents[key], out.clip_ids[key] = torch.cat(estimates), cache.clip_ids[key][rows]
    return out


def real_check(matcher: VideoTextMatcher, vae_dir: Path, suite_name: str, seed: int = 0) -> dict[str, float]:
    """Per attribute, how often the true prompt outscores the same scene with that attribute changed, on rendered clips."""
    from kinema.evaluate.run import ground_truth
    from kinema.evaluate.suite import build_suite
    from kinema.train.data import to_model_video
    from kinema.world.captions import canonical_caption

    vae = load_pretrained(vae_dir).eval()
    encoder = load_text_encoder("all-MiniLM-L6-v2")
    rng = np.random.default_rng(seed)
    wins: dict[str, list[float]] = {k: [] for k in (*KINDS, "other clip")}
    suite = build_suite(suite_name)
    with torch.inference_mode():
        for i, item in enumerate(suite):
            z = vae.normalize(vae.encode(to_model_video(ground_truth(item))))
            prompts, kinds = [item.prompt], []
            for kind in KINDS:
                changed = perturb_scene(item.scene, kind, rng)
                if changed is not None:
                    prompts.append(canonical_caption(changed))
                    kinds.append(kind)
            prompts.append(suite[(i + 7) % len(suite)].prompt)
            kinds.append("other clip")
            text, mask = encoder.encode(prompts)
            scores = matcher(z.expand(len(prompts), -1, -1, -1, -1), text, mask)
            for j, kind in enumerate(kinds):
                wins[kind].append(float(scores[0] > scores[j + 1]))
    return {k: float(np.mean(v)) if v else float("nan") for k, v in wins.items()} | {f"{k} pairs": len(v) for k, v in wins.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a finished run directory (cache/, work/vae)")
    ap.add_argument("--config", type=Path, required=True, help="the run's config (for its dataset and seed)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--video-depth", type=int, default=3)
    ap.add_argument("--fusion-depth", type=int, default=2)
    ap.add_argument("--estimates-from", type=Path, default=None, help="a DiT directory: train every other step on its clean estimates")
    ap.add_argument("--t-range", type=float, nargs=2, default=(0.2, 0.6))
    ap.add_argument("--estimates-per-bucket", type=int, default=4000)
    ap.add_argument("--real-check", choices=("seen", "heldout"), default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    cfg = load_config(args.config, output_dir=str(args.run))
    cache = LatentCache.load(args.run / "cache")
    encoder = load_text_encoder(cfg.text_encoder, max_tokens=TRAIN_MAX_TOKENS)
    negatives = load_negatives(cache_negatives(encoder, cfg.text_encoder, _records(cfg), args.run / "cache", cfg.seed, resolve_precision(cfg.cache_precision), True))
    stage = MatcherStageConfig(time_budget_minutes=args.minutes)  # the recipe's defaults: batch 64, lr 1e-3, noise 0.2, bf16
    model_config = MatcherConfig(latent_channels=cache.latent_mean.numel(), hidden=args.hidden, video_depth=args.video_depth, fusion_depth=args.fusion_depth)
    sources = [MatcherBatches(cache, negatives, stage.batch_size, stage.noise_max, cfg.seed)]
    if args.estimates_from is not None:
        sources.append(MatcherBatches(dit_estimates(cache, args.estimates_from, tuple(args.t_range), args.estimates_per_bucket, cfg.seed), negatives, stage.batch_size, 0.0, cfg.seed + 1))
    settings = LoopSettings(name="matcher", total_steps=stage.steps, checkpoint_dir=args.out / "checkpoint", base_lr=stage.lr, warmup_steps=stage.warmup_steps, grad_clip=stage.grad_clip, budget_minutes=args.minutes, checkpoint_every_minutes=5.0)
    result, matcher = train_matcher(stage, model_config, cfg.seed, sources, settings, DistInfo())
    save_pretrained(matcher, args.out / "matcher")
    report = {"run": str(args.run), "minutes": args.minutes, "steps": result.steps, "final_loss": result.final_loss, "estimates_from": str(args.estimates_from) if args.estimates_from else None, "model": vars(args) | {"out": str(args.out), "run": str(args.run), "config": str(args.config), "estimates_from": str(args.estimates_from), "json": str(args.json)}}
    if args.real_check:
        report["real_check"] = {args.real_check: real_check(matcher, args.run / "work" / "vae", args.real_check)}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
