"""Does re-injected noise (a DDIM-eta / ancestral-style sampler) help an underfit DiT? Fixed weights.

Why: an imperfect model's deterministic ODE sample keeps its early errors; stochastic
samplers re-noise each step's x0 prediction so later steps can correct them, and
sometimes sharpen samples of weak models. One step from t to s < t:

    x0 = x - t v,   eps = x + (1 - t) v,   x_s = (1 - s) x0 + s (sqrt(1 - eta^2) eps + eta z)

eta = 0 is DDIM (deterministic, first order: Euler for rectified flow); eta = 1
throws the predicted noise away. Scored like `benchmarks/guidance_sweep.py` on
the first `--limit` seen prompts; each spec is `eta:steps:guidance`.

    python benchmarks/stochastic_sampler_probe.py --specs 0:20:3 0.5:20:3 1:20:3 \
        --json docs/results/stochastic_sampler_probe.json

This replaces the engine's default sampler in this process only; it is a probe, not a product option.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

import kinema.engine.native as native
from sampling_variants_probe import score_variants  # benchmarks/sampling_variants_probe.py


def stochastic_sampler(eta: float):
    """A sampler with the engine's signature; its noise is seeded from the starting latent, so runs repeat."""

    def sample(velocity_fn, x, timesteps, progress=None):
        g = torch.Generator().manual_seed(int(x.flatten()[:4].abs().sum().item() * 1e6) % (2**31))
        total = timesteps.numel() - 1
        for i in range(total):
            t, s = float(timesteps[i]), float(timesteps[i + 1])
            v = velocity_fn(x, timesteps[i])
            x0, eps = x - t * v, x + (1 - t) * v
            if s <= 0:
                x = x0
            else:
                z = torch.randn(x.shape, generator=g, dtype=x.dtype)
                x = (1 - s) * x0 + s * (math.sqrt(1 - eta * eta) * eps + eta * z)
            if progress:
                progress(i + 1, total)
        return x

    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    parser.add_argument("--limit", type=int, default=24, help="first N seen prompts")
    parser.add_argument("--specs", nargs="+", required=True, help="eta:steps:guidance, e.g. 0.5:20:3")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()

    def configure(spec: str) -> tuple[int, float]:
        eta, steps, guidance = spec.split(":")
        native.SAMPLERS["dpmpp-2m"] = stochastic_sampler(float(eta))  # the model's default sampler name
        return int(steps), float(guidance)

    score_variants(args.specs, configure, args.model, args.limit, args.json)


if __name__ == "__main__":
    main()
