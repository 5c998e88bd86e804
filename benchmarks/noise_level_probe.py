"""Where does the built-in model lose the video? Two probes on held-out ground truth, read by the judge.

1. decoder: the VAE round trip with Gaussian noise of std s added to the
   normalised latents. Is the decoder fragile, turning small latent errors
   into pulsing or extra objects?
2. denoise from t0: noise the clip's real latents to t0 (x = (1 - t0) z + t0 e),
   then denoise with its prompt (Euler, 20-step grid, CFG 4) and decode.
   t0 = 1 is generation from pure noise. Where accuracy falls shows which
   noise levels the DiT has not learned. The schedule is the model's own (its shift).
3. velocity loss at fixed t: the DiT's flow-matching MSE on these clips with
   their prompt and with the empty prompt, beside E[x0^2] (the loss of
   predicting the mean latent). Near t = 1 the prompt is all the model has:
   a loss no lower than the empty prompt's means the noisiest steps ignore the text.

    python benchmarks/noise_level_probe.py --items 24 --json docs/results/noise_level_probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from kinema import Pipeline
from kinema.conditioning.camera import camera_tensor
from kinema.diffusion import flow
from kinema.diffusion.guidance import cfg_velocity
from kinema.diffusion.samplers import euler
from kinema.engine.timing import Timings
from kinema.evaluate.metrics import attribute_accuracy
from kinema.evaluate.run import ground_truth
from kinema.evaluate.suite import build_suite
from kinema.request import GenerationRequest
from kinema.world.judge import read_clip, score


def judged(frames, item) -> tuple[dict, int, int]:
    reading = read_clip(frames, item.clip.fps)
    pulsing = sum(o.motion in ("grow", "shrink") for o in reading.objects)
    return score(reading, item.scene), len(reading.objects), pulsing


def summary(name: str, value: float, results: list[tuple[dict, int, int]], items) -> dict:
    acc = attribute_accuracy([r[0] for r in results])
    return {name: value, **{k: round(v, 3) for k, v in acc.items()}, "objects_read": sum(r[1] for r in results),
            "objects_true": sum(len(i.scene.objects) for i in items), "read_as_growing_or_shrinking": sum(r[2] for r in results)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    ap.add_argument("--items", type=int, default=24)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_grad_enabled(False)

    pipe = Pipeline.from_pretrained(args.model) if args.model else Pipeline.from_builtin()
    backend = pipe.backend
    backend.load()  # the probes use the native backend's VAE, DiT and text encoder directly
    items = build_suite("heldout")[: args.items]
    latents = [backend._encode_pixels(ground_truth(item))[None] for item in items]
    report: dict = {"model": args.model or "builtin", "items": len(items), "decoder": [], "denoise_from": [], "velocity_loss": []}

    for std in (0.0, 0.1, 0.2, 0.4):
        g = torch.Generator().manual_seed(0)
        results = [judged(backend._decode(z + std * torch.randn(z.shape, generator=g)), item) for z, item in zip(latents, items)]
        report["decoder"].append(summary("latent_noise_std", std, results, items))
        print(json.dumps(report["decoder"][-1]), flush=True)

    # Per clip, once: its prompt's and the empty prompt's text, its noise, and the conditioning a text-only request gets.
    inputs = []
    for z0, item in zip(latents, items):
        resolved = pipe.validate(GenerationRequest(prompt=item.prompt, seed=item.seed, width=item.clip.width, height=item.clip.height, seconds=item.clip.seconds, fps=item.clip.fps))
        text = backend._text(resolved, Timings())
        noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(item.seed))
        extra = {"cond": torch.zeros(1, z0.shape[1] + 1, *z0.shape[2:]), "camera": camera_tensor([resolved.camera])}
        inputs.append((text, noise, extra))

    for t0 in (0.3, 0.6, 0.8, 1.0):
        results = []
        for z0, item, (text, noise, extra) in zip(latents, items, inputs):
            grid = flow.sampling_timesteps(20, backend.sampling_shift(*z0.shape[2:]))
            timesteps = torch.cat([torch.tensor([t0]), grid[grid < t0]])

            def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return cfg_velocity(backend._dit, x, t, *text, args.guidance, **extra)  # noqa: B023

            results.append(judged(backend._decode(euler(velocity, (1 - t0) * z0 + t0 * noise, timesteps)), item))
        report["denoise_from"].append(summary("t0", t0, results, items))
        print(json.dumps(report["denoise_from"][-1]), flush=True)

    for t in (0.1, 0.3, 0.5, 0.7, 0.9, 1.0):
        losses = {"prompt": 0.0, "empty": 0.0, "mean_latent": 0.0}
        for z0, ((cond_text, cond_mask, uncond_text, uncond_mask), noise, extra) in zip(latents, inputs):
            tt = torch.full((1,), t)
            x_t, target = flow.add_noise(z0, noise, tt), flow.velocity_target(z0, noise)
            losses["prompt"] += float(flow.flow_loss(backend._dit(x_t, tt, cond_text, cond_mask, **extra), target)) / len(items)
            losses["empty"] += float(flow.flow_loss(backend._dit(x_t, tt, uncond_text, uncond_mask, **extra), target)) / len(items)
            losses["mean_latent"] += float((z0**2).mean()) / len(items)
        report["velocity_loss"].append({"t": t, **{k: round(v, 4) for k, v in losses.items()}})
        print(json.dumps(report["velocity_loss"][-1]), flush=True)

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
