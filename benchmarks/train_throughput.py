"""DiT training throughput (samples/s) and achieved GFLOP/s against the matmul peak.

Runs the same step the trainer runs (logit-normal t, flow-matching loss, AdamW,
bf16 autocast on CPU) on random latents of one bucket, so it measures the model
and the optimizer, not the data pipeline.

    python benchmarks/train_throughput.py --steps 20 --batch 32 --precision bf16
    python benchmarks/train_throughput.py --config configs/experiments/builtin-patch1.toml --batch 16 --compile

`--compile` runs the model through torch.compile; the warm-up (where the compile
happens, once per shape) is timed apart, as `warmup_seconds`. Every run reports
whether its losses and gradient norms stayed finite: a fast step that computes
NaNs is not a figure.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from kinema.diffusion.flow import add_noise, flow_loss, sample_logit_normal, velocity_target
from kinema.train.config import load_config
from kinema.train.dit_trainer import build_dit
from kinema.train.precision import autocast

TEXT_DIM = 384  # all-MiniLM-L6-v2's hidden size


def measure(batch: int, steps: int, precision: str, latent: tuple[int, int, int, int], text_len: int, dit_fields: dict, compile: bool = False) -> dict:
    torch.manual_seed(0)
    model = build_dit(dit_fields, latent[0], TEXT_DIM)
    forward = torch.compile(model) if compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x0 = torch.randn(batch, *latent)
    text = torch.randn(batch, text_len, model.config.text_dim)
    mask = torch.ones(batch, text_len, dtype=torch.bool)

    def step() -> torch.Tensor:
        t = sample_logit_normal(batch)
        noise = torch.randn_like(x0)
        with autocast(precision):
            pred = forward(add_noise(x0, noise, t), t, text, mask)
        loss = flow_loss(pred, velocity_target(x0, noise))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.detach() + grad_norm.detach()

    warmup = time.perf_counter()
    for _ in range(3):
        step()
    warmup_seconds = time.perf_counter() - warmup
    start = time.perf_counter()
    checks = [step() for _ in range(steps)]
    seconds = time.perf_counter() - start
    # A fast step that computes garbage is no figure: torch.compile under bf16 autocast gave NaN gradients here.
    finite = bool(torch.isfinite(torch.stack(checks)).all())
    sps = batch * steps / seconds
    fwd = model.flops_per_sample(latent[1], latent[2], latent[3], text_len)
    # Training costs ~3x the forward pass (forward + backward for activations and weights).
    return {
        "precision": precision,
        "compile": compile,
        "warmup_seconds": round(warmup_seconds, 1),
        "batch": batch,
        "latent": list(latent),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "forward_gflop_per_sample": round(fwd / 1e9, 3),
        "samples_per_s": round(sps, 1),
        "steps_per_s": round(steps / seconds, 2),
        "achieved_gflops": round(3 * fwd * sps / 1e9, 1),
        "loss_and_gradients_finite": finite,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--precision", choices=["bf16", "fp32", "both"], default="both")
    parser.add_argument("--text-len", type=int, default=24)
    parser.add_argument("--config", default="configs/builtin.toml", help="training config whose [dit.model] to measure")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (its compile time is reported as warmup_seconds)")
    args = parser.parse_args()
    cfg = load_config(args.config)
    latent_channels = int(cfg.vae.model.get("latent_channels", 16))
    precisions = ["bf16", "fp32"] if args.precision == "both" else [args.precision]
    for precision in precisions:
        # 64x64, 17 frames -> latent C x 5 x 8 x 8 (80 tokens with patch 1x2x2, 320 with 1x1x1).
        print(json.dumps(measure(args.batch, args.steps, precision, (latent_channels, 5, 8, 8), args.text_len, cfg.dit.model, args.compile)))


if __name__ == "__main__":
    main()
