"""Is the VAE's latent hard for the DiT to model? Finetune it for scale equivariance.

Why: Skorokhodov et al., "Improving the Diffusability of Autoencoders" (2025),
find that autoencoder latents carry more high-frequency energy than the images
they encode, and that a diffusion model spends its capacity on it. Their fix is
a scale-equivariance loss: the decoder, given the latent average-pooled by 2,
must reproduce the video average-pooled by 2. That forces the coarse part of the
latent to mean the coarse part of the picture. Our DiT fails at high noise,
where the layout is decided from the coarse part of the latent, so this is a
lever the recipe has not tried.

This finetunes encoder and decoder of an existing VAE (the built-in one by
default) on the VAE stage's crops with L1 + edge + `--weight` x the same loss on
the 2x-pooled pair, for `--minutes`, then saves it and prints the latent's
high-frequency energy share before and after (on the same held-out clips). Use
it as a run's `vae_path` (the cache stage recomputes latent mean/std) and
compare the DiT against the control `configs/experiments/builtin-base.toml`:

    python benchmarks/vae_scale_equivariance_probe.py --minutes 15 --out runs/vae-se/vae
    python benchmarks/vae_roundtrip.py runs/vae-se/vae --suite heldout --limit 48
    kinema train configs/experiments/builtin-se.toml
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kinema.models.io import save_pretrained
from kinema.models.vae import vae_loss
from kinema.train.data import to_model_video
from kinema.train.vae_trainer import CropPool
from vae_finetune_common import add_finetune_args, load_finetune_start  # benchmarks/vae_finetune_common.py


def pool2(x: torch.Tensor) -> torch.Tensor:
    """Average-pool [B, C, T, H, W] by 2 in height and width (time untouched)."""
    return F.avg_pool3d(x, (1, 2, 2))


def _high_share(z: torch.Tensor) -> float:
    """Share of [..., h, w]'s spatial energy (each map's mean removed) above half its Nyquist frequency."""
    z = z - z.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(z).abs().pow(2)
    h, w = z.shape[-2:]
    fy = torch.fft.fftfreq(h).abs().view(-1, 1)
    fx = torch.fft.fftfreq(w).abs().view(1, -1)
    high = (torch.maximum(fy, fx) > 0.25).expand(h, w)
    return float(power[..., high].sum() / power.sum().clamp(min=1e-12))


def high_frequency_share(vae, clips: list[np.ndarray]) -> float:
    """The latent's high-frequency energy share, averaged over clips."""
    with torch.no_grad():
        return float(np.mean([_high_share(vae.encode(to_model_video(c[None]).float())[0]) for c in clips]))


def pixel_high_frequency_share(clips: list[np.ndarray], stride: int = 8) -> float:
    """The same share for the pixels average-pooled to the latent grid: what a latent as smooth as the picture has."""
    return float(np.mean([_high_share(F.avg_pool3d(to_model_video(c[None]).float()[0], (1, stride, stride))) for c in clips]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_finetune_args(parser)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--weight", type=float, default=1.0, help="weight of the pooled-pair loss")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--crop", type=int, default=None, help="crop side in pixels (default: the recipe's VAE crop)")
    parser.add_argument("--batch", type=int, default=None, help="crops per step (default: the recipe's VAE batch)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    cfg, vae, records = load_finetune_start(args)
    crop, batch = args.crop or cfg.vae.crop_size, args.batch or cfg.vae.batch_size
    pool = CropPool.load(records, cfg.vae.pool_clips, cfg.data.fps, crop, cfg.vae.crop_frames, cfg.seed)
    probe_clips = [c[:17] for c in CropPool.load(records, 16, cfg.data.fps, 64, 17, 12345).clips]
    before = high_frequency_share(vae, probe_clips)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    start, step, log = time.time(), 0, []
    while time.time() - start < args.minutes * 60:
        video = pool.batch(batch, np.random.default_rng([0, 11, step]))
        vae.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mean, logvar = vae.encode_dist(video)
            z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
            recon = vae.decoder(z)
            recon_small = vae.decoder(pool2(z))
        loss, parts = vae_loss(recon.float(), video, mean.float(), logvar.float(), cfg.vae.kl_weight)
        small, _ = vae_loss(recon_small.float(), pool2(video), mean.float(), logvar.float(), 0.0)
        total = loss + args.weight * small
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), cfg.vae.grad_clip)
        optimizer.step()
        step += 1
        log.append((parts["l1"], float(small.detach())))
        if step % 100 == 0:
            recent = np.mean(log[-100:], axis=0)
            print(f"step {step} {time.time() - start:.0f}s l1 {recent[0]:.4f} pooled {recent[1]:.4f}", flush=True)
    vae.eval()
    after = high_frequency_share(vae, probe_clips)
    save_pretrained(vae, args.out)
    pixels = pixel_high_frequency_share(probe_clips)
    summary = {"steps": step, "minutes": args.minutes, "weight": args.weight, "crop": crop, "batch": batch, "lr": args.lr, "high_frequency_share": {"before": before, "after": after, "pixels_at_latent_grid": pixels}}
    Path(args.out, "se_probe.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
