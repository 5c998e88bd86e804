"""Does weighting the VAE's loss towards salient pixels keep small shapes? Finetune and compare.

Why: the VAE's round trips cap every shape figure (held-out 37.5% at 64 pixels: a
small star or cross comes back as a blob), and in Shapes World the objects are 6%
of the pixels, so a plain L1 on random crops spends nearly all of the VAE's
capacity on the background texture. `vae.salient_weight` weights colourful or
bright pixels more (`kinema.models.vae.salient_pixel_weights`).

This finetunes an existing VAE (encoder and decoder) with the recipe's loss and
`--salient-weight` on the VAE stage's crops for `--minutes`, then saves it. Run it
twice side by side, with the weight and with 0 (the control: the same extra
minutes of plain training), and read both with `vae_roundtrip.py`:

    python benchmarks/vae_salient_probe.py --salient-weight 9 --minutes 15 --out runs/vae-salient9/vae
    python benchmarks/vae_salient_probe.py --salient-weight 0 --minutes 15 --out runs/vae-salient0/vae
    python benchmarks/vae_roundtrip.py runs/vae-salient9/vae --suite heldout --limit 48
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from kinema.models.io import save_pretrained
from kinema.models.vae import vae_loss
from kinema.train.vae_trainer import CropPool
from vae_finetune_common import add_finetune_args, load_finetune_start  # benchmarks/vae_finetune_common.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_finetune_args(parser)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--salient-weight", type=float, required=True)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    cfg, vae, records = load_finetune_start(args)
    pool = CropPool.load(records, cfg.vae.pool_clips, cfg.data.fps, cfg.vae.crop_size, cfg.vae.crop_frames, cfg.seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    start, step, log = time.time(), 0, []
    while time.time() - start < args.minutes * 60:
        video = pool.batch(cfg.vae.batch_size, np.random.default_rng([0, 13, step]))
        vae.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            recon, mean, logvar = vae(video)
        loss, parts = vae_loss(recon.float(), video, mean.float(), logvar.float(), cfg.vae.kl_weight, salient_weight=args.salient_weight)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), cfg.vae.grad_clip)
        optimizer.step()
        step += 1
        plain = float((recon.detach().float() - video).abs().mean())
        log.append(plain)
        if step % 100 == 0:
            print(f"step {step} {time.time() - start:.0f}s loss {parts['loss']:.4f} plain l1 {np.mean(log[-100:]):.4f}", flush=True)
    vae.eval()
    save_pretrained(vae, args.out)
    summary = {"steps": step, "minutes": args.minutes, "salient_weight": args.salient_weight, "lr": args.lr,
               "plain_l1_last_100": float(np.mean(log[-100:])) if log else None}
    Path(args.out, "salient_probe.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
