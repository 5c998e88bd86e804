"""What `precision = "auto"` chooses on this CPU, and the step times it chooses by.

Each training stage of the recipe times its own step in fp32 and in bf16 autocast
when it starts (`kinema.train.precision.choose_precision`) and trains in the
faster. This script runs the same timing on the recipe's models and batch shapes,
on random inputs (the cost does not depend on the pixels; one batch per part, where
the trainers take each call from their next step), so the choice and the margin can
be read without training anything:

  vae    one forward + backward of the VAE on a batch of `[vae]` crops
  dit    one forward + backward of the DiT on a batch of 64x64, 17-frame latents
         with 24 text tokens (the commonest bucket)
  cache  encoding a batch of 64x64, 17-frame clips with the VAE and 256 captions
         with the recipe's text encoder (all-MiniLM-L6-v2)

    python benchmarks/precision_choice.py --json docs/results/precision_choice.json
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from kinema.diffusion.flow import add_noise, flow_loss, sample_logit_normal, velocity_target
from kinema.models.vae import vae_loss
from kinema.train.config import load_config
from kinema.train.dit_trainer import build_dit
from kinema.train.precision import autocast, native_cpu_bf16, time_precisions
from kinema.train.vae_trainer import build_vae

TEXT_TOKENS = 24
LATENT = (5, 8, 8)  # 17 frames of 64x64 through the VAE's x4 time and x8 space compression


def vae_probe(cfg):
    v = cfg.vae
    model = build_vae(v.model).train()
    video = torch.rand(v.batch_size, 3, v.crop_frames, v.crop_size, v.crop_size) * 2 - 1

    def step(precision: str, _call: int) -> None:
        model.zero_grad(set_to_none=True)
        with autocast(precision):
            recon, mean, logvar = model(video)
        loss, _ = vae_loss(recon.float(), video, mean.float(), logvar.float(), v.kl_weight, salient_weight=v.salient_weight)
        loss.backward()

    return step, v.batch_size


def dit_probe(cfg, channels: int):
    d = cfg.dit
    model = build_dit(d.model, channels, 384).train()
    x0 = torch.randn(d.batch_size, channels, *LATENT)
    text = torch.randn(d.batch_size, TEXT_TOKENS, 384)
    mask = torch.ones(d.batch_size, TEXT_TOKENS, dtype=torch.bool)

    def step(precision: str, _call: int) -> None:
        model.zero_grad(set_to_none=True)
        t = sample_logit_normal(d.batch_size)
        noise = torch.randn_like(x0)
        with autocast(precision):
            pred = model(add_noise(x0, noise, t), t, text, mask)
        flow_loss(pred, velocity_target(x0, noise)).backward()

    return step, d.batch_size


def cache_probe(cfg):
    from kinema.models.text import load_text_encoder
    from kinema.train.latents import TRAIN_MAX_TOKENS

    vae = build_vae(cfg.vae.model).eval()
    encoder = load_text_encoder(cfg.text_encoder, max_tokens=TRAIN_MAX_TOKENS)
    video = torch.rand(cfg.vae.encode_batch_size, 3, 17, 64, 64) * 2 - 1
    from kinema.evaluate.suite import build_suite

    prompts = [it.prompt for it in build_suite("seen") + build_suite("heldout")]
    captions = (prompts * (256 // len(prompts) + 1))[:256]

    def step(precision: str, _call: int) -> None:
        with torch.no_grad(), autocast(precision):
            vae.encode(video)
            encoder.encode(captions)

    return step, cfg.vae.encode_batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/builtin.toml")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per precision, taking turns, after one warm-up (the trainers use 6)")
    parser.add_argument("--parts", default="vae,dit,cache")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    cfg = load_config(args.config)
    channels = int(cfg.vae.model.get("latent_channels", 8))
    builders = {"vae": lambda: vae_probe(cfg), "dit": lambda: dit_probe(cfg, channels), "cache": lambda: cache_probe(cfg)}
    out = {
        "cpu": platform.processor() or platform.machine(),
        "native_bf16": native_cpu_bf16(),
        "amx": bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()),
        "threads": torch.get_num_threads(),
        "parts": {},
    }
    for part in args.parts.split(","):
        step, batch = builders[part]()
        seconds = time_precisions(step, args.repeats)
        faster = min(seconds, key=seconds.__getitem__)
        row = {
            "seconds_per_step": {p: round(s, 4) for p, s in seconds.items()},
            "samples_per_s": {p: round(batch / s, 1) for p, s in seconds.items()},
            "auto_chooses": faster if out["native_bf16"] else "fp32",
            "fp32_over_bf16_speed": round(seconds["bf16"] / seconds["fp32"], 3),
        }
        out["parts"][part] = row
        print(part, json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
