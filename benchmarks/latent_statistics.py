"""The DiT's sampled latents against the encoder's, and what the decoder makes of perturbed latents.

Why: generated objects are blobs that pulse; this asks whether the sampled latents
are blurrier or stronger than real ones (per-channel std, spatial and temporal
differences, RMS per latent frame, all in the DiT's normalised units), and which
perturbation of *real* latents (scaled, noised, blurred in space or time) makes
the decoder draw what the model draws: object area per frame and the judge's
accuracy on 16 square held-out clips.

    python benchmarks/latent_statistics.py [--model DIR]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from kinema.engine.pipeline import Pipeline, builtin_model_dir
from kinema.evaluate.metrics import attribute_accuracy
from kinema.evaluate.suite import build_suite
from kinema.world.judge import read_clip, score
from kinema.world.render import render
from object_presence import presence  # benchmarks/object_presence.py


def describe(x: torch.Tensor, name: str) -> None:
    ch_std, ch_mean = x.std(dim=(0, 2, 3, 4)), x.mean(dim=(0, 2, 3, 4))
    dx = (x[..., 1:] - x[..., :-1]).pow(2).mean().sqrt()
    dt = (x[:, :, 1:] - x[:, :, :-1]).pow(2).mean().sqrt()
    per_t = x.pow(2).mean(dim=(0, 1, 3, 4)).sqrt()
    r = lambda v: [round(float(a), 2) for a in v]  # noqa: E731
    print(f"{name}: std {r(ch_std)} mean {r(ch_mean)} dx {float(dx):.3f} dt {float(dt):.3f} rms per latent frame {r(per_t)}")


def smooth(x: torch.Tensor, dim: int) -> torch.Tensor:
    """A [1, 2, 1] / 4 blur along `dim`; the two edge positions are kept as they are."""
    out = x.clone()
    n = x.shape[dim]
    out.narrow(dim, 1, n - 2).copy_(0.25 * x.narrow(dim, 0, n - 2) + 0.5 * x.narrow(dim, 1, n - 2) + 0.25 * x.narrow(dim, 2, n - 2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    parser.add_argument("--clips", type=int, default=16)
    args = parser.parse_args()
    pipe = Pipeline.from_pretrained(args.model or builtin_model_dir())
    pipe.load()
    backend = pipe.backend
    sampled: list[torch.Tensor] = []
    decode = backend._decode

    def keep_latents(latents: torch.Tensor) -> np.ndarray:
        sampled.append(latents.detach().clone())
        return decode(latents)

    backend._decode = keep_latents
    items = [it for it in build_suite("heldout") if it.clip.height == it.clip.width == 64][: args.clips]
    real_latents, scenes = [], []
    for it in items:
        video = pipe.generate(it.prompt, seed=it.seed, width=64, height=64)
        real = render(it.scene, it.clip, it.seed)[: len(video.frames)]
        with torch.no_grad():  # the VAE takes 1 + 4k frames: repeat the last
            real_latents.append(backend._encode_pixels(np.concatenate([real, real[-1:]])))
        scenes.append(it)
    backend._decode = decode
    generated, real = torch.stack([s[0] for s in sampled]), torch.stack(real_latents)
    describe(generated, "generated")
    describe(real, "encoded ground truth")

    def decode_and_judge(latents: torch.Tensor, name: str) -> None:
        areas, scores = [], []
        for it, lat in zip(scenes, latents):
            with torch.no_grad():
                frames = backend._decode(lat[None])[:16]
            areas.append(presence(frames))
            scores.append(score(read_clip(frames, it.clip.fps), it.scene))
        print(f"{name}: object area per frame {[round(float(v), 2) for v in np.mean(areas, axis=0)]} judge {attribute_accuracy(scores)}")

    decode_and_judge(real, "real")
    decode_and_judge(generated, "generated")
    decode_and_judge(real * 0.8, "real x 0.8")
    decode_and_judge(real + 0.3 * torch.randn(real.shape, generator=torch.Generator().manual_seed(0)), "real + 0.3 noise")
    decode_and_judge(smooth(smooth(real, -2), -1), "real, spatial blur")
    decode_and_judge(smooth(real, 2), "real, temporal blur")


if __name__ == "__main__":
    main()
