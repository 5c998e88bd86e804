"""Where torch.compile breaks the patch-1x1x1 DiT under bf16 autocast on the CPU.

Why: `benchmarks/train_throughput.py --compile` found the compiled bf16 step of
the patch-1x1x1 DiT (320 tokens per 64x64, 2 s clip) fast but with non-finite
gradients, while the built-in patch-1x2x2 DiT (80 tokens) compiles cleanly.
This probe compiles only the self-attention of each block (regional
compilation), with and without its rotary positions, and reports whether the
forward matches eager and whether the gradients stay finite. Weights are drawn
at random (std 0.02), so the zero-initialised gates do not hide anything.

    python benchmarks/compile_nan_probe.py [--config configs/experiments/builtin-patch1.toml]
"""

from __future__ import annotations

import argparse
import json
import math

import torch

from kinema.models import dit as dit_module
from kinema.train.config import load_config
from kinema.train.dit_trainer import build_dit
from kinema.train.precision import autocast
from train_throughput import TEXT_DIM  # benchmarks/train_throughput.py


def probe(config: str, rope: bool, batch: int = 16) -> dict:
    cfg = load_config(config)
    torch.manual_seed(0)
    model = build_dit(cfg.dit.model, int(cfg.vae.model.get("latent_channels", 16)), TEXT_DIM)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    x = torch.randn(batch, model.config.latent_channels, 5, 8, 8)
    t, text, mask = torch.rand(batch), torch.randn(batch, 24, TEXT_DIM), torch.ones(batch, 24, dtype=torch.bool)
    original = dit_module.apply_rope
    if not rope:
        dit_module.apply_rope = lambda q, cos, sin: q  # noqa: ARG005 - positions off, everything else the same
    try:
        with autocast("bf16"):
            eager = model(x, t, text, mask)
        for block in model.blocks:
            block.attn.compile()
        with autocast("bf16"):
            compiled = model(x, t, text, mask)
        compiled.float().pow(2).mean().backward()
    finally:
        dit_module.apply_rope = original
    return {
        "config": config,
        "tokens": math.prod(model.grid(*x.shape[2:])),
        "rope": rope,
        "forward_max_abs_diff_vs_eager": round(float((eager.float() - compiled.float()).abs().max()), 4),
        "gradients_finite": all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/experiments/builtin-patch1.toml")
    args = parser.parse_args()
    for rope in (True, False):
        print(json.dumps(probe(args.config, rope)), flush=True)


if __name__ == "__main__":
    main()
