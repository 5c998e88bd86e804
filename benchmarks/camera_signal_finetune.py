"""Does training on captions without the camera words make the camera *signal* work?

An experiment, not a recipe: it continues training a finished run's EMA DiT for
a few minutes on that run's latent cache, with `dit.camera_caption_free` of the
clips given the camera signal trained on a caption that leaves the move
unnamed, and writes a model directory to measure with

    python benchmarks/conditioning.py --model OUT --parts camera --rss "" --json OUT/camera.json

Run it twice, `--camera-caption-free 0.5` and `0` (the control: the same extra
minutes with the captions as they were), so the difference is the captions'.

The run's dataset predates `captions_without_camera`, so they are made here the
way the Shapes World writer makes them (its grammar with camera=False, from the
clip's scene) and encoded with the run's text encoder.

    python benchmarks/camera_signal_finetune.py --run runs/builtin --minutes 12 \
        --camera-caption-free 0.5 --out /tmp/cam-ft-0.5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dit_finetune import finetune, write_model_dir  # benchmarks/dit_finetune.py
from kinema.models.io import load_pretrained
from kinema.models.text import load_text_encoder
from kinema.train.config import load_config
from kinema.train.dit_trainer import DiTBatches
from kinema.train.distributed import DistInfo
from kinema.train.latents import TRAIN_MAX_TOKENS, LatentCache, encode_captions
from kinema.train.precision import resolve_precision
from kinema.world.dataset import captions_without_camera
from kinema.world.scene import Scene


def add_signal_captions(cache: LatentCache, run: Path, text_encoder: str, seed: int, precision: str) -> int:
    """Camera-free captions of every moving-camera clip, appended to the cache's text rows."""
    lines = [json.loads(x) for x in (run / "dataset" / "metadata.jsonl").read_text().splitlines() if x.strip()]
    if len(lines) != len(cache.clip_offsets) - 1:
        raise SystemExit(f"the cache has {len(cache.clip_offsets) - 1} clips, the dataset {len(lines)}")
    per_clip = [captions_without_camera(scene, seed, i) if scene.camera != "static" else [] for i, scene in enumerate(Scene.from_dict(e["scene"]) for e in lines)]
    texts = [c for caps in per_clip for c in caps]
    hidden, lengths = encode_captions(load_text_encoder(text_encoder, max_tokens=TRAIN_MAX_TOKENS), texts, precision=precision)
    width = max(cache.text_hidden.shape[1], hidden.shape[1])
    pad = lambda h: torch.nn.functional.pad(h, (0, 0, 0, width - h.shape[1]))  # noqa: E731
    first_new = cache.text_hidden.shape[0]
    cache.text_hidden = torch.cat([pad(cache.text_hidden), pad(hidden)])
    cache.text_lengths = torch.cat([cache.text_lengths, lengths])
    counts = torch.tensor([len(c) for c in per_clip], dtype=torch.int64)
    cache.signal_offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    cache.signal_ids = first_new + torch.arange(len(texts), dtype=torch.int64)
    return len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/builtin"))
    parser.add_argument("--config", default="configs/builtin.toml")
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--camera-caption-free", type=float, required=True)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--ema-decay", type=float, default=0.995)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    cfg = load_config(args.config)
    d = cfg.dit
    d.camera_caption_free = args.camera_caption_free
    torch.manual_seed(cfg.seed + 7)
    cache = LatentCache.load(args.run / "cache")
    added = add_signal_captions(cache, args.run, cfg.text_encoder, cfg.seed, resolve_precision(cfg.cache_precision))
    model = load_pretrained(args.run / "work" / "dit_ema")
    batches = DiTBatches(cache, cfg, DistInfo())

    def batch(step: int):
        x0, text, mask, cond, camera, rng = batches(100_000 + step)  # steps the run itself never drew
        return x0, text, mask, cond, camera, torch.Generator().manual_seed(int(rng.integers(2**62)))

    ema, step, final_loss = finetune(model, d, batch, args.minutes, args.lr, args.ema_decay)
    write_model_dir(args.run / "model", ema.model, args.out)
    stats = {"camera_caption_free": args.camera_caption_free, "steps": step, "minutes": args.minutes, "signal_captions": added,
             "final_loss": final_loss, "lr": args.lr, "ema_decay": args.ema_decay, "from": str(args.run / "work" / "dit_ema")}  # fmt: skip
    (args.out / "finetune.json").write_text(json.dumps(stats, indent=2))
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
