"""Probe: image-to-video started from a noised *static* video of the given image instead of pure noise.

Why: in image-to-video the built-in DiT gets the first frame clean and still
changes the object's shape in the very next latent frame (issue 3: the judge
keeps the given objects in 16.7% of clips). ConsistI2V (Ren et al. 2024) starts
sampling from noise that already carries the first frame's layout. The flow-
matching form of that: encode the image repeated over the whole clip (a still
video, which the causal VAE maps to latents of the right statistics for every
latent frame), noise it to time `t0` (x = (1 - t0) z_still + t0 noise), and
run the sampler's schedule scaled from [1, 0] to [t0, 0]. `t0 = 1` is the
engine as shipped. The object moving is still up to the model, so the probe
reads motion (and everything else the judge reads) beside the objects kept,
and the mean frame difference of generated and ground-truth clips: a start that
only freezes the video would keep objects and lose motion.

    python benchmarks/i2v_static_start_probe.py --t0 1 0.95 0.9 0.8 --items 24 --json docs/results/i2v_static_start_probe.json

The engine is patched only inside this script (`kinema.diffusion.flow`'s noise
and schedule functions, which the native backend calls once per window).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from kinema import Pipeline
from kinema.diffusion import flow
from kinema.evaluate.run import ground_truth
from kinema.evaluate.suite import build_suite
from kinema.world.judge import read_clip, score

ATTRIBUTES = ("count", "color", "shape", "motion", "camera")


@contextmanager
def static_start(still_latent: torch.Tensor, t0: float) -> Iterator[None]:
    """Within the block, sampling starts at `t0` from `still_latent` [C, T', h, w] noised to that time."""
    noise_fn, schedule_fn = flow.frame_correlated_noise, flow.sampling_timesteps

    def noise(shape: tuple[int, ...], generator: torch.Generator | None = None, correlation: float = 0.0) -> torch.Tensor:
        n = noise_fn(shape, generator, correlation)
        return (1 - t0) * still_latent[None].to(n.dtype) + t0 * n

    def schedule(steps: int, shift: float) -> torch.Tensor:
        return schedule_fn(steps, shift) * t0

    flow.frame_correlated_noise, flow.sampling_timesteps = noise, schedule
    try:
        yield
    finally:
        flow.frame_correlated_noise, flow.sampling_timesteps = noise_fn, schedule_fn


def still_latent(pipe: Pipeline, image: np.ndarray, frames: int) -> torch.Tensor:
    """Normalised VAE latents [C, T', h, w] of `image` [H, W, 3] held still for `frames` frames.

    Uses the native backend's own pixel encoder (a private method) so the start is normalised exactly as the
    latents the engine samples; a probe only, never the engine's API.
    """
    backend = pipe.backend
    with torch.inference_mode():
        return backend._encode_pixels(np.repeat(image[None], frames, axis=0)).float()


def mean_frame_difference(frames: np.ndarray) -> float:
    return float(np.abs(np.diff(frames.astype(np.float32), axis=0)).mean())


def run(pipe: Pipeline, items, t0: float) -> dict:
    reads = {a: [] for a in ATTRIBUTES}
    kept, moved = [], []
    for it in items:
        gt = ground_truth(it)
        z = still_latent(pipe, gt[0], len(gt))
        with static_start(z, t0):
            v = pipe.generate(it.prompt, seed=it.seed, image=gt[0], width=it.clip.width, height=it.clip.height)
        s = score(read_clip(v.frames, v.fps), it.scene)
        for a in ATTRIBUTES:
            reads[a].append(s[a])
        kept.append(s["color"] and s["shape"])
        moved.append(mean_frame_difference(v.frames))
    out = {a: float(np.mean(r)) for a, r in reads.items()}
    out |= {"overall": float(np.mean([out[a] for a in ATTRIBUTES])), "objects_kept": float(np.mean(kept)), "mean_frame_difference": float(np.mean(moved))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    parser.add_argument("--t0", type=float, nargs="+", default=[1.0, 0.95, 0.9, 0.8])
    parser.add_argument("--items", type=int, default=24, help="square held-out suite items")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not all(0 < t <= 1 for t in args.t0):
        parser.error("every --t0 must be in (0, 1]")

    pipe = Pipeline.from_model(args.model)
    pipe.load()
    items = [it for it in build_suite("heldout", size=64) if it.clip.height == it.clip.width == 64][: args.items]
    truth = {"mean_frame_difference": float(np.mean([mean_frame_difference(ground_truth(it)) for it in items]))}
    print("ground truth", json.dumps(truth), flush=True)
    out: dict = {"model": args.model or "builtin", "items": len(items), "ground_truth": truth, "runs": {}}
    for t0 in args.t0:
        out["runs"][str(t0)] = run(pipe, items, t0)
        print(f"t0 {t0}", json.dumps(out["runs"][str(t0)]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
