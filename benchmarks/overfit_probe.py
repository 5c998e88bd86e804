"""Can the DiT, VAE and sampler make judge-readable clips at all, once the DiT has fit its data?

A diagnostic, not a recipe. The built-in model reads ~30% of attributes and its
training loss equals its loss on fresh clips (benchmarks/train_vs_fresh_loss.py),
so it is underfit. This probe asks what the pipeline can do when underfitting is
taken away: it trains a DiT on only the N square clips of the seen suite (the
renderer's ground truth, through the model's own VAE and text encoder), text-only,
no camera signal, caption dropout as in training, until it has seen each clip
hundreds of times; then it generates those same prompts with their suite seeds
and judges them. The VAE round trips of the same clips are the ceiling.

- near the ceiling: the pipeline is sound and the built-in model's gap is what
  its DiT learned in its budget (capacity, objective, data, steps);
- far below it, with a low training loss: sampling or conditioning loses what
  the DiT learned (a bug or a mismatch between training and sampling).

    python benchmarks/overfit_probe.py --run runs/builtin --minutes 10 --out /tmp/overfit \
        --json docs/results/overfit_probe.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from kinema.commands.evaluate import suite_generator
from kinema.diffusion.flow import add_noise, apply_shift, flow_loss, sample_training_t, velocity_target
from kinema.evaluate.metrics import attribute_accuracy
from kinema.evaluate.run import evaluate, ground_truth
from kinema.evaluate.suite import build_suite
from kinema.models.io import load_pretrained, save_pretrained
from kinema.models.text import load_text_encoder
from kinema.train.config import load_config
from kinema.train.dit_trainer import batch_shift, build_dit
from kinema.train.latents import TRAIN_MAX_TOKENS, encode_captions
from kinema.train.loop import EMA
from kinema.train.vae_trainer import autocast
from kinema.world.judge import read_clip, score


def to_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T,H,W,3] -> float [1,3,T,H,W] in [-1, 1], the VAE's input."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0


def to_frames(video: torch.Tensor) -> np.ndarray:
    return ((video[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/builtin"), help="a finished run: its model/ (VAE, encoder) and work/dit_ema")
    parser.add_argument("--config", default="configs/builtin.toml")
    parser.add_argument("--clips", type=int, default=24, help="square seen-suite clips to fit")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fresh", action="store_true", help="start from a freshly initialised DiT instead of the run's EMA weights")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--ema-decay", type=float, default=0.99)
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    cfg = load_config(args.config)
    d = cfg.dit
    torch.manual_seed(cfg.seed + 11)
    items = [it for it in build_suite("seen") if it.clip.width == it.clip.height][: args.clips]
    vae = load_pretrained(args.run / "model" / "vae").eval()
    truths = [ground_truth(it) for it in items]
    with torch.inference_mode():
        means = [vae.encode(to_video(f)) for f in truths]
        recon = [to_frames(vae.decode(z)) for z in means]
        x0_all = torch.cat([vae.normalize(z) for z in means]).float()
    ceiling = attribute_accuracy([score(read_clip(r, it.clip.fps), it.scene) for r, it in zip(recon, items)])
    truth_read = attribute_accuracy([score(read_clip(f, it.clip.fps), it.scene) for f, it in zip(truths, items)])
    print(f"ground truth {truth_read}\nVAE round trip (the ceiling) {ceiling}", flush=True)

    encoder = load_text_encoder(cfg.text_encoder, max_tokens=TRAIN_MAX_TOKENS)
    hidden, lengths = encode_captions(encoder, ["", *[it.prompt for it in items]])
    hidden = hidden.float()

    if args.fresh:
        model = build_dit(d.model, x0_all.shape[1], hidden.shape[-1])
    else:
        model = load_pretrained(args.run / "work" / "dit_ema")
    patch = tuple(model.config.patch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=d.weight_decay)
    ema = EMA(model, args.ema_decay)
    shift = batch_shift(d, patch, tuple(x0_all.shape))
    rows = torch.arange(1, len(items) + 1)
    start, step, losses = time.monotonic(), 0, []
    model.train()
    while time.monotonic() - start < args.minutes * 60:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        cap = torch.where(torch.rand(len(items), generator=g) < d.caption_dropout, torch.zeros_like(rows), rows)
        width = int(lengths[cap].max())
        text, mask = hidden[cap, :width], torch.arange(width)[None, :] < lengths[cap, None].long()
        t = apply_shift(sample_training_t(len(items), g, d.t_mean, d.t_std, d.t_uniform_fraction), shift)
        noise = torch.randn(x0_all.shape, generator=g)
        camera = torch.zeros(len(items), model.config.camera_dim)
        with autocast(d.precision):
            pred = model(add_noise(x0_all, noise, t), t, text, mask, None, camera)
        loss = flow_loss(pred, velocity_target(x0_all, noise))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), d.grad_clip)
        optimizer.step()
        ema.update(model)
        losses.append(float(loss.detach()))
        step += 1
        if step % 100 == 0:
            print(f"step {step} loss {np.mean(losses[-100:]):.4f} {(time.monotonic() - start) / 60:.1f} min", flush=True)

    shutil.copytree(args.run / "model", args.out, dirs_exist_ok=True)
    save_pretrained(ema.model, args.out / "dit", dtype=torch.float16)
    rows_out = []
    for guidance in args.guidance:
        result = evaluate(suite_generator(str(args.out), None, guidance), items, progress=False)
        rows_out.append({"guidance": guidance, "overall": result["overall"], "accuracy": result["accuracy"]})
        print(f"guidance {guidance}: overall {result['overall']:.1%} {result['accuracy']}", flush=True)
    report = {
        "clips": len(items),
        "from": "fresh" if args.fresh else str(args.run / "work" / "dit_ema"),
        "minutes": args.minutes,
        "steps": step,  # each step is one pass over all the clips
        "final_loss": float(np.mean(losses[-100:])),
        "lr": args.lr,
        "ema_decay": args.ema_decay,
        "ground_truth": truth_read,
        "vae_roundtrip": ceiling,
        "generated": rows_out,
    }
    print(json.dumps(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
