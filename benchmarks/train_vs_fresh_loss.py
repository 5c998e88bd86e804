"""Does the built-in DiT underfit or overfit? Its flow-matching loss on training clips vs fresh ones.

Why: more DiT steps (shapes-v0.3 -> v0.4, +76%) left the loss at every noise level
where it was. If the loss on clips the model trained on equals the loss on fresh
clips from the same distribution (same scene sampler, same held-out exclusion,
new seeds), the model is not memorising: it is capacity- or objective-bound, and
a bigger or finer DiT is the lever. If training clips score much lower, it is
memorising, and more or more varied data is. Both sets are rendered from their
scene and seed (no MP4 round trip) at 64x64, 17 frames, and scored with the same
noise, timesteps and no camera signal.

    python benchmarks/train_vs_fresh_loss.py --dataset runs/builtin/dataset --clips 64
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from kinema.conditioning.camera import camera_tensor
from kinema.diffusion import flow
from kinema.engine.pipeline import Pipeline, builtin_model_dir
from kinema.world.captions import captions
from kinema.world.render import render
from kinema.world.sampling import sample_scene
from kinema.world.scene import ClipSpec, Scene

TIMESTEPS = (0.2, 0.5, 0.8, 1.0)


def training_clips(dataset: Path, n: int) -> list[tuple[np.ndarray, str]]:
    clip = ClipSpec(64, 64, 17, 8.0)
    out = []
    for line in (dataset / "metadata.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if (entry["height"], entry["width"], entry["num_frames"]) != (64, 64, 17):
            continue
        out.append((render(Scene.from_dict(entry["scene"]), clip, entry["seed"]), entry["captions"][0]))
        if len(out) == n:
            break
    return out


def fresh_clips(n: int, seed: int) -> list[tuple[np.ndarray, str]]:
    clip = ClipSpec(64, 64, 17, 8.0)
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        scene = sample_scene(rng, clip, "exclude")
        caption = captions(scene, rng, 3)[0]
        out.append((render(scene, clip, int(rng.integers(2**31 - 1))), caption))
    return out


def clip_loss(dit, z: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor, t: float, clip_index: int) -> float:
    """The DiT's velocity loss on latents z [1, C, T', h, w] at time t, with text only (no frames, no camera).

    The noise is seeded from (clip_index, t), so every caption or model scored on
    the same clip and t sees the same noise.
    """
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(1000 * clip_index + int(t * 100)))
    tt = torch.tensor([t])
    cond = torch.zeros(1, z.shape[1] + 1, *z.shape[2:])
    with torch.no_grad():
        v = dit(flow.add_noise(z, noise, tt), tt, hidden, mask, cond=cond, camera=camera_tensor([None]))
    return float(flow.flow_loss(v, flow.velocity_target(z, noise)))


def losses(backend, clips: list[tuple[np.ndarray, str]]) -> dict[str, float]:
    dit, encoder = backend._dit, backend.text_encoder()
    per_t: dict[float, list[float]] = {t: [] for t in TIMESTEPS}
    with torch.no_grad():
        for i, (frames, caption) in enumerate(clips):
            z = backend._encode_pixels(frames)[None]
            hidden, mask = encoder.encode([caption])
            for t in TIMESTEPS:
                per_t[t].append(clip_loss(dit, z, hidden, mask, t, i))
    return {f"t={t}": round(float(np.mean(v)), 4) for t, v in per_t.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    parser.add_argument("--dataset", type=Path, default=Path("runs/builtin/dataset"), help="the dataset the model trained on")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    pipe = Pipeline.from_pretrained(args.model or builtin_model_dir())
    pipe.load()
    result = {
        "clips": args.clips,
        "training_clips": losses(pipe.backend, training_clips(args.dataset, args.clips)),
        "fresh_clips": losses(pipe.backend, fresh_clips(args.clips, seed=20261128)),
    }
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
