"""Can sampling alone fix what the built-in model draws? Guidance variants on fixed weights.

Why: the DiT's sampled latents are over-strong (docs/benchmarks.md, latent
statistics) and its objects change size over the clip, which is what the judge
reads as growing or shrinking. Two published sampling-side remedies target
exactly that without retraining:
- guidance rescale (Lin et al. 2024, "Common Diffusion Noise Schedules and
  Sample Steps are Flawed"; diffusers' `guidance_rescale`): the guided x0
  prediction is scaled back to the conditional prediction's standard deviation
  and mixed in with weight `rescale`;
- a guidance interval (Kynkäänniemi et al. 2024): guidance only for t in
  [lo, hi], plain conditional velocity elsewhere.

Each variant is `guidance:rescale:lo:hi` and is scored like
`benchmarks/guidance_sweep.py`, on the first `--limit` *seen* prompts only:

    python benchmarks/sampling_variants_probe.py --variants 3:0.7:0:1 6:0.7:0:1 3:0:0:0.8 \
        --json docs/results/sampling_variants_v04.json

This patches the engine's guidance function in this process only; it is a
probe, not a product option (none of the variants beat plain guidance 3).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import torch

import kinema.engine.native as native
from kinema.commands.evaluate import suite_generator
from kinema.diffusion.guidance import cfg_velocity
from kinema.evaluate.run import evaluate
from kinema.evaluate.suite import build_suite


def guided_variant(rescale: float, lo: float, hi: float):
    """A drop-in for `cfg_velocity` with guidance rescale and a guidance interval."""

    def velocity(model, x, t, cond_text, cond_mask, uncond_text, uncond_mask, scale, **kw):
        t_now = float(t.reshape(-1)[0])
        if not lo <= t_now <= hi:
            return cfg_velocity(model, x, t, cond_text, cond_mask, uncond_text, uncond_mask, 1.0, **kw)
        guided = cfg_velocity(model, x, t, cond_text, cond_mask, uncond_text, uncond_mask, scale, **kw)
        if rescale == 0 or scale == 1.0:
            return guided
        plain = cfg_velocity(model, x, t, cond_text, cond_mask, uncond_text, uncond_mask, 1.0, **kw)
        dims = tuple(range(1, guided.ndim))
        x0_plain, x0_guided = x - t_now * plain, x - t_now * guided  # rectified flow: x_t = x0 + t v
        x0_scaled = x0_guided * (x0_plain.std(dims, keepdim=True) / x0_guided.std(dims, keepdim=True))
        x0 = rescale * x0_scaled + (1 - rescale) * x0_guided
        return (x - x0) / max(t_now, 1e-4)

    return velocity


def score_variants(specs: list[str], configure: Callable[[str], tuple[int, float]], model: str | None, limit: int, json_path: Path) -> list[dict]:
    """Score each spec on the first `limit` seen prompts; `configure(spec)` patches the engine and
    returns (steps, guidance). Rows go to `json_path` after each spec, so a stopped run keeps its rows."""
    suite = build_suite("seen")[:limit]
    rows = []
    for spec in specs:
        steps, guidance = configure(spec)
        start = time.perf_counter()
        with torch.inference_mode():
            result = evaluate(suite_generator(model, steps, guidance), suite, progress=False)
        rows.append({"variant": spec, "overall": result["overall"], "accuracy": result["accuracy"], "s": round(time.perf_counter() - start, 1)})
        print(spec, f"{result['overall']:.1%}", {k: round(v, 3) for k, v in result["accuracy"].items()}, flush=True)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    parser.add_argument("--limit", type=int, default=24, help="first N seen prompts")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--variants", nargs="+", required=True, help="guidance:rescale:lo:hi, e.g. 3:0.7:0:1")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()

    def configure(spec: str) -> tuple[int, float]:
        guidance, rescale, lo, hi = (float(s) for s in spec.split(":"))
        native.cfg_velocity = guided_variant(rescale, lo, hi)
        return args.steps, guidance

    score_variants(args.variants, configure, args.model, args.limit, args.json)


if __name__ == "__main__":
    main()
