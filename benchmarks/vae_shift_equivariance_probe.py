"""Can the DiT move an object? Make the VAE's latent move with the picture, a fraction of a cell at a time.

Why: the built-in DiT copies a still object from a given first frame, yet moves none
(`benchmarks/motion_probe.py`: 8% of one-object translations read right, with the true
first frame given). An object moving at Shapes World's speeds shifts 0.3-1.4 latent
cells (8 px each) per latent frame, and the shipped VAE's latent is not equivariant to
such sub-cell shifts: the latent of a picture shifted by 4 px is not the latent shifted
by half a cell, and a blend of neighbouring cells decodes to a blob
(`latent_position_average_probe.py`). Attention moves content by blending neighbouring
tokens, so every step of a moving object is a blend the decoder reads as a blob.

The remedy tried here, in the spirit of EQ-VAE (Kouzelis et al. 2025, which regularises
a latent towards scale and rotation equivariance and reports a DiT training several
times faster), is a translation-equivariance loss at sub-cell offsets. Two crops of one
clip, B offset from A by (dy, dx) pixels with |dy|, |dx| <= 8:
- encoder: E(B) must equal E(A) bilinearly shifted by (dy/8, dx/8) cells, on the cells
  away from the crop border (an MSE over the latent's per-channel variance, so shrinking
  the latent cannot satisfy it);
- decoder: D(shifted E(A)) must reproduce B (L1 + edge, away from the border).

It finetunes an existing VAE (the built-in one by default) on the recipe's clips with the
usual loss plus `--weight` x these two, for `--minutes`, saves it, and prints the share of
a shift that the bilinear shift of the latent fails to explain, before and after, on
held-out pairs, and with `--measure` compares VAEs on the same pairs (reconstruction
PSNR, and the decoded shifted latent against the offset crop). A result worth it would
become a run's `vae_path` (the cache stage recomputes the latent statistics); the 20-minute
finetune lost 5 dB of reconstruction and was not taken further (docs/benchmarks.md):

    python benchmarks/vae_shift_equivariance_probe.py --minutes 20 --out runs/vae-shifteq/vae
    python benchmarks/vae_shift_equivariance_probe.py --measure src/kinema/assets/builtin/vae runs/vae-shifteq/vae
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from kinema.models.io import load_pretrained, save_pretrained
from kinema.models.vae import vae_loss
from kinema.train.data import to_model_video
from kinema.train.vae_trainer import CropPool
from vae_finetune_common import add_finetune_args, load_finetune_start  # benchmarks/vae_finetune_common.py

CELL = 8  # pixels per latent cell (the VAE's spatial stride)
MAX_SHIFT = 8  # pixels: up to one cell either way


def shift_latent(z: torch.Tensor, dy: float, dx: float) -> torch.Tensor:
    """z [C, T, h, w] sampled at (i + dy, j + dx) cells by bilinear interpolation, |dy|, |dx| <= 1.

    The last row / column the shift reaches past is repeated; callers compare only the interior.
    """

    def along(x: torch.Tensor, d: float, dim: int) -> torch.Tensor:
        if d == 0:
            return x
        n = x.shape[dim]
        step = 1 if d > 0 else -1
        idx = torch.clamp(torch.arange(n) + step, 0, n - 1)
        return (1 - abs(d)) * x + abs(d) * x.index_select(dim, idx)

    return along(along(z, dy, -2), dx, -1)


def pair_batch(pool: CropPool, batch: int, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """Crops A and B [B, 3, T, size, size] of the same clips and frames, B offset from A by (dy, dx) pixels."""
    a = np.empty((batch, pool.crop_frames, size, size, 3), dtype=np.uint8)
    b = np.empty_like(a)
    offsets = []
    for i in range(batch):
        clip = pool.clips[int(rng.integers(len(pool.clips)))]
        t0 = int(rng.integers(clip.shape[0] - pool.crop_frames + 1))
        dy, dx = (int(v) for v in rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=2))
        y0 = int(rng.integers(max(0, -dy), clip.shape[1] - size - max(0, dy) + 1))
        x0 = int(rng.integers(max(0, -dx), clip.shape[2] - size - max(0, dx) + 1))
        frames = slice(t0, t0 + pool.crop_frames)
        a[i] = clip[frames, y0 : y0 + size, x0 : x0 + size]
        b[i] = clip[frames, y0 + dy : y0 + dy + size, x0 + dx : x0 + dx + size]
        offsets.append((dy, dx))
    return to_model_video(a), to_model_video(b), offsets


def equivariance_losses(vae, video_a: torch.Tensor, video_b: torch.Tensor, offsets: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(encoder loss, decoder loss, unexplained share): see the module docstring."""
    za, _ = vae.encode_dist(video_a)
    zb, _ = vae.encode_dist(video_b)
    shifted = torch.stack([shift_latent(za[i], dy / CELL, dx / CELL) for i, (dy, dx) in enumerate(offsets)])
    inner = (slice(None), slice(None), slice(None), slice(1, -1), slice(1, -1))
    var = za.detach().float().var(dim=(0, 2, 3, 4), keepdim=True).clamp(min=1e-4)
    enc = ((zb.float() - shifted.float())[inner].pow(2) / var).mean()
    moved = ((zb.float() - za.float())[inner].pow(2) / var).mean().detach()
    recon = vae.decoder(shifted)
    px = (slice(None), slice(None), slice(None), slice(CELL, -CELL), slice(CELL, -CELL))
    dec, _ = vae_loss(recon.float()[px], video_b[px], za.float(), torch.zeros_like(za.float()), 0.0)
    return enc, dec, float(enc.detach() / moved.clamp(min=1e-8))


def unexplained_share(vae, pool: CropPool, size: int, batches: int = 8) -> float:
    """Mean ||E(B) - shift(E(A))||^2 / ||E(B) - E(A)||^2 over fixed held-out pairs: 1 = the shift explains nothing."""
    shares = []
    with torch.no_grad():
        for k in range(batches):
            a, b, offsets = pair_batch(pool, 8, np.random.default_rng([7, k]), size)
            shares.append(equivariance_losses(vae, a, b, offsets)[2])
    return float(np.mean(shares))


def pair_psnr(vae, pool: CropPool, size: int, batches: int = 8) -> dict[str, float]:
    """Away from the crop border, on fixed held-out pairs: PSNR (dB) of D(E(A)) against A, of D(shifted E(A)) against B,
    and of A against B (what not moving at all scores)."""
    px = (slice(None), slice(None), slice(None), slice(CELL, -CELL), slice(CELL, -CELL))

    def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
        return float(10 * torch.log10(4.0 / (x[px] - y[px]).pow(2).mean()))

    out: dict[str, list[float]] = {"recon": [], "shifted_decode": [], "unmoved": []}
    with torch.no_grad():
        for k in range(batches):
            a, b, offsets = pair_batch(pool, 8, np.random.default_rng([7, k]), size)
            za = vae.encode(a)
            shifted = torch.stack([shift_latent(za[i], dy / CELL, dx / CELL) for i, (dy, dx) in enumerate(offsets)])
            out["recon"].append(psnr(vae.decode(za), a))
            out["shifted_decode"].append(psnr(vae.decode(shifted), b))
            out["unmoved"].append(psnr(a, b))
    return {f"{k}_psnr_db": float(np.mean(v)) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_finetune_args(parser, settings="VAE settings")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--weight", type=float, default=1.0, help="weight of the encoder and decoder shift losses")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--crop", type=int, default=48, help="crop side in pixels (a multiple of 8; 48 leaves a 4x4 interior of latent cells)")
    parser.add_argument("--batch", type=int, default=8, help="crop pairs per step")
    parser.add_argument("--out", help="where to save the finetuned VAE")
    parser.add_argument("--measure", nargs="+", metavar="VAE", help="only measure these VAEs on the held-out pairs (no finetune); writes --json")
    parser.add_argument("--json", type=Path, default=None, help="with --measure: where to write the figures")
    args = parser.parse_args()
    if not args.measure and not args.out:
        parser.error("give --out (finetune) or --measure VAE... (measure only)")

    cfg, vae, records = load_finetune_start(args)
    held_out = CropPool.load(records, 64, cfg.data.fps, args.crop + MAX_SHIFT, cfg.vae.crop_frames, 12345)
    if args.measure:
        figures = {}
        for path in args.measure:
            model = load_pretrained(path).float().eval()
            figures[path] = {"unexplained_share": unexplained_share(model, held_out, args.crop), **pair_psnr(model, held_out, args.crop)}
        print(json.dumps(figures, indent=1))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1) + "\n")
        return
    pool = CropPool.load(records, cfg.vae.pool_clips, cfg.data.fps, args.crop + MAX_SHIFT, cfg.vae.crop_frames, cfg.seed)
    before = unexplained_share(vae.eval(), held_out, args.crop)
    print(f"unexplained share of a sub-cell shift before: {before:.3f}", flush=True)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    start, step, log = time.time(), 0, []
    while time.time() - start < args.minutes * 60:
        rng = np.random.default_rng([0, 13, step])
        video_a, video_b, offsets = pair_batch(pool, args.batch, rng, args.crop)
        vae.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mean, logvar = vae.encode_dist(video_a)
            z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
            recon = vae.decoder(z)
            enc, dec, share = equivariance_losses(vae, video_a, video_b, offsets)
        loss, parts = vae_loss(recon.float(), video_a, mean.float(), logvar.float(), cfg.vae.kl_weight)
        total = loss + args.weight * (enc + dec)
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), cfg.vae.grad_clip)
        optimizer.step()
        step += 1
        log.append((parts["l1"], float(enc.detach()), float(dec.detach()), share))
        if step % 50 == 0:
            recent = np.mean(log[-50:], axis=0)
            print(f"step {step} {time.time() - start:.0f}s l1 {recent[0]:.4f} shift-enc {recent[1]:.4f} shift-dec {recent[2]:.4f} unexplained {recent[3]:.3f}", flush=True)
    vae.eval()
    after = unexplained_share(vae, held_out, args.crop)
    save_pretrained(vae, args.out)
    summary = {"steps": step, "minutes": args.minutes, "weight": args.weight, "crop": args.crop, "batch": args.batch, "lr": args.lr, "unexplained_share": {"before": before, "after": after}}
    Path(args.out, "shift_equivariance_probe.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
