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
from pathlib import Path

import torch

from dit_finetune import finetune, write_model_dir  # benchmarks/dit_finetune.py
from kinema.commands.evaluate import suite_generator
from kinema.engine.native import frames_to_uint8
from kinema.evaluate.metrics import attribute_accuracy
from kinema.evaluate.run import evaluate, ground_truth
from kinema.evaluate.suite import build_suite
from kinema.models.io import load_pretrained
from kinema.models.text import load_text_encoder
from kinema.train.config import load_config
from kinema.train.data import to_model_video
from kinema.train.dit_trainer import build_dit
from kinema.train.latents import TRAIN_MAX_TOKENS, encode_captions
from kinema.world.judge import read_clip, score


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
        means = [vae.encode(to_model_video(f)) for f in truths]
        recon = [frames_to_uint8(vae.decode(z)[0]).numpy() for z in means]
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
    rows = torch.arange(1, len(items) + 1)

    def batch(step: int):
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        cap = torch.where(torch.rand(len(items), generator=g) < d.caption_dropout, torch.zeros_like(rows), rows)
        width = int(lengths[cap].max())
        text, mask = hidden[cap, :width], torch.arange(width)[None, :] < lengths[cap, None].long()
        return x0_all, text, mask, None, torch.zeros(len(items), model.config.camera_dim), g

    ema, step, final_loss = finetune(model, d, batch, args.minutes, args.lr, args.ema_decay)
    write_model_dir(args.run / "model", ema.model, args.out)
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
        "final_loss": final_loss,
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
