"""Quotes from compute, before anything runs: credits = ceil(TFLOPs x credits_per_tflop), at least 1.

TFLOPs = denoising steps x forward passes per step (2 with classifier-free
guidance, 1 without, times the candidates sampled for best-of-N) x the model's FLOPs for one forward at the request's
latent size. Each backend kind has its cost function: the native DiT counts
its own matmuls (`DiT.flops_per_sample`, built on the meta device so no
weights load); a backend may also offer `estimate_flops(resolved)`; anything
else is priced per latent token by a conservative rule stated below.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from kinema.engine.backend import Backend, ResolvedRequest

SPATIAL, TEMPORAL = 8, 4  # the VAE's strides: latents are (1 + (T-1)/4) x H/8 x W/8
GENERIC_FLOPS_PER_TOKEN = 2e9  # unknown backends: ~ a 1B-parameter DiT forward per latent token


@dataclass(frozen=True)
class Quote:
    credits: int
    tflops: float
    steps: int
    forward_passes: int
    latent_tokens: int

    def as_dict(self) -> dict[str, Any]:
        return {"credits": self.credits, "tflops": self.tflops, "steps": self.steps, "forward_passes": self.forward_passes, "latent_tokens": self.latent_tokens}


@lru_cache(maxsize=16)
def _meta_dit(config_path: str) -> Any:
    import torch

    from kinema.models.dit import DiT, DiTConfig

    raw = {k: v for k, v in json.loads(Path(config_path).read_text()).items() if not k.startswith("_")}
    if "patch" in raw:
        raw["patch"] = tuple(raw["patch"])
    with torch.device("meta"):
        return DiT(DiTConfig(**raw))


def forward_flops(backend: Backend, resolved: ResolvedRequest) -> tuple[float, int]:
    """(FLOPs of one model forward, latent tokens) for this backend and request."""
    t_lat = 1 + (resolved.generated_frames - 1) // TEMPORAL
    h, w = resolved.height // SPATIAL, resolved.width // SPATIAL
    estimate = getattr(backend, "estimate_flops", None)
    if estimate is not None:
        return float(estimate(resolved)), t_lat * h * w
    model_dir = getattr(backend, "model_dir", None)
    if model_dir is not None and (Path(model_dir) / "dit" / "config.json").is_file():
        dit = _meta_dit(str(Path(model_dir) / "dit" / "config.json"))
        caps = backend.capabilities()
        text_len = caps.max_prompt_tokens or 77
        gt, gh, gw = dit.grid(t_lat, h, w)
        with_cond = bool(resolved.images) or resolved.extend_frames is not None
        return dit.flops_per_sample(t_lat, h, w, text_len, with_cond=with_cond), gt * gh * gw
    tokens = t_lat * h * w
    return tokens * GENERIC_FLOPS_PER_TOKEN, tokens


def quote(backend: Backend, resolved: ResolvedRequest, credits_per_tflop: float) -> Quote:
    per_forward, tokens = forward_flops(backend, resolved)
    passes = (2 if resolved.guidance != 1.0 else 1) * resolved.candidates
    tflops = per_forward * passes * resolved.steps / 1e12
    return Quote(max(1, math.ceil(tflops * credits_per_tflop)), tflops, resolved.steps, passes, tokens)
