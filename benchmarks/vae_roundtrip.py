"""VAE reconstruction quality: PSNR and the judge's accuracy on VAE round trips
of renderer ground truth. The judge's score here is the ceiling for any DiT on
top of this VAE.

    python benchmarks/vae_roundtrip.py runs/builtin/model/vae --suite heldout --limit 48

`--size 128` renders the same scenes at twice the suite's usual 64-pixel base
(Shapes World sizes and speeds are fractions of the frame), to see how much of
the ceiling the VAE's ×8 spatial stride costs at 64 pixels.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from kinema.engine.native import frames_to_uint8
from kinema.evaluate.metrics import attribute_accuracy
from kinema.evaluate.run import ground_truth
from kinema.evaluate.suite import build_suite
from kinema.models.io import load_pretrained
from kinema.world.judge import read_clip, score


def roundtrip(vae: torch.nn.Module, frames: np.ndarray) -> np.ndarray:
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
    with torch.inference_mode():
        recon = vae.decode(vae.encode(video))
    return frames_to_uint8(recon[0]).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("vae_dir")
    parser.add_argument("--suite", default="heldout", choices=["seen", "heldout"])
    parser.add_argument("--limit", type=int, default=48)
    parser.add_argument("--size", type=int, default=64, help="the suite's base resolution (a multiple of 16)")
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args()
    vae = load_pretrained(args.vae_dir)
    scores, psnrs = [], []
    for item in build_suite(args.suite, size=args.size)[: args.limit]:
        frames = ground_truth(item)
        recon = roundtrip(vae, frames)
        psnrs.append(psnr(frames, recon))
        scores.append(score(read_clip(recon, item.clip.fps), item.scene))
    # Colour and shape both right: what image-to-video's "objects kept" asks of a clip.
    kept = float(np.mean([bool(s["color"] and s["shape"]) for s in scores]))
    result = {"vae": args.vae_dir, "suite": args.suite, "size": args.size, "clips": len(scores), "psnr_db": round(float(np.mean(psnrs)), 2),
              "judge_accuracy": attribute_accuracy(scores), "color_and_shape": kept}
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
