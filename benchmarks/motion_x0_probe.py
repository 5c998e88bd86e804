"""What does the DiT predict for a moving object? Its clean-latent estimate, one step at a time.

Two questions about image-to-video, where the first frame is given and only the motion is
left to the prompt:

1. Copying. For a large blue square that stays still (every latent frame equal) and one
   moving left, the squared error of the DiT's clean estimate x0 = x_t - t v per latent
   frame, at t = 0.3 / 0.6 / 0.9 / 1, with the first latent frame given (`cond`) and without;
   four noise draws each. The latent's mean square is printed beside it: an estimate that
   knew nothing but the mean would score about that.
2. Direction. The still square's clip noised to t, the prompt saying "moving left / right /
   up" or "staying still": the decoded clean estimate's blue-pixel centroid (x, in pixels)
   and area every 4 frames. At t = 1 only the prompt and the given frame say where the
   square goes; below that the noisy input (a still square) speaks too.
3. Attention. In that still clip at t = 0.9, per block and head, the mean self-attention
   weight that a token of latent frames 1-4 puts on the token at its place in the given
   frame 0: how much of the copying attention does.

    python benchmarks/motion_x0_probe.py --model runs/X/model --json docs/results/motion_x0_probe_X.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import kinema.models.dit as dit_module
from kinema import Pipeline
from kinema.conditioning.tasks import build_cond
from kinema.train.data import to_model_video
from kinema.world.captions import canonical_caption
from kinema.world.render import render
from kinema.world.scene import ClipSpec, ObjectSpec, Scene

CLIP = ClipSpec(height=64, width=64, num_frames=17, fps=8.0)


def square(motion: str, x: float) -> Scene:
    return Scene(objects=(ObjectSpec(shape="square", color="blue", size="large", motion=motion, x=x, y=0.5),), background="black", texture="plain", camera="static")


def first_frame_cond(x0: torch.Tensor) -> torch.Tensor:
    """The DiT's frame condition with latent frame 0 given, as training builds it for the "first" task."""
    return build_cond(x0, ["first"], None, np.random.default_rng(0))


def blue_centroids(frames: np.ndarray) -> tuple[list[float], list[int]]:
    f = frames.astype(np.float32)
    mask = f[..., 2] - f[..., 0] > 60
    xs = np.arange(f.shape[2])[None, :]
    return [float((m * xs).sum() / max(m.sum(), 1)) for m in mask], [int(m.sum()) for m in mask]


def attention_to_first_frame(dit, xt: torch.Tensor, t: float, text, mask, cond, camera) -> list[list[float]]:
    """Per block, per head: mean weight from tokens of latent frames >= 1 onto the same place in latent frame 0."""
    weights: list[torch.Tensor] = []
    plain = dit_module.attend

    def spy(q, k, v, m=None):
        if m is None or m.dtype != torch.bool:  # self-attention (cross-attention has a boolean text mask)
            weights.append(((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(-1)[0])
        return plain(q, k, v, m)

    dit_module.attend = spy
    try:
        dit(xt, torch.tensor([t]), text, mask, cond, camera)
    finally:
        dit_module.attend = plain
    pt, ph, pw = dit.config.patch
    frames, per_frame = xt.shape[2] // pt, (xt.shape[3] // ph) * (xt.shape[4] // pw)
    rows = torch.arange(per_frame, frames * per_frame)
    return [[round(float(w[h, rows, rows % per_frame].mean()), 3) for h in range(w.shape[0])] for w in weights]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    backend = Pipeline.from_model(args.model).load().backend
    vae, dit, encoder = backend._vae, backend._dit, backend._text_encoder
    no_camera = torch.zeros(1, dit.config.camera_dim) if dit.config.camera_dim else None
    result: dict = {"model": args.model or "builtin", "copying": {}, "direction": {}}
    with torch.no_grad():
        for motion, x in (("still", 0.5), ("left", 0.7)):
            scene = square(motion, x)
            x0 = vae.normalize(vae.encode(to_model_video(render(scene, CLIP, seed=1))))
            text, mask = encoder.encode([canonical_caption(scene)])
            cond = first_frame_cond(x0)
            rows = {"latent_mean_square": [round(float(v), 3) for v in x0.pow(2).mean(dim=(0, 1, 3, 4))]}
            for t in (0.3, 0.6, 0.9, 1.0):
                errors: dict[str, list[torch.Tensor]] = {"given": [], "not_given": []}
                for rep in range(4):
                    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(rep))
                    xt = (1 - t) * x0 + t * noise
                    for key, c in (("given", cond), ("not_given", None)):
                        v = dit(xt, torch.tensor([t]), text, mask, c, no_camera).float()
                        errors[key].append((xt - t * v - x0).pow(2).mean(dim=(0, 1, 3, 4)))
                rows[f"t={t}"] = {k: [round(float(e), 3) for e in torch.stack(v).mean(0)] for k, v in errors.items()}
            result["copying"][motion] = rows
            print(motion, json.dumps(rows), flush=True)

        scene = square("still", 0.5)
        x0 = vae.normalize(vae.encode(to_model_video(render(scene, CLIP, seed=1))))
        cond = first_frame_cond(x0)
        text, mask = encoder.encode([canonical_caption(scene)])
        xt = 0.1 * x0 + 0.9 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
        result["attention_to_first_frame"] = attention_to_first_frame(dit, xt, 0.9, text, mask, cond, no_camera)
        print("attention to the same place in frame 0, per block and head:", result["attention_to_first_frame"], flush=True)
        for t in (1.0, 0.8, 0.6):
            noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
            xt = (1 - t) * x0 + t * noise
            for word in ("left", "right", "up", "still"):
                prompt = "a large blue square staying still on a plain black background" if word == "still" else f"a large blue square moving {word} on a plain black background"
                text, mask = encoder.encode([prompt])
                v = dit(xt, torch.tensor([t]), text, mask, cond, no_camera).float()
                frames = ((vae.decode(vae.denormalize(xt - t * v))[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()
                xs, areas = blue_centroids(frames)
                row = {"centroid_x": [round(xs[k], 1) for k in range(0, 17, 4)], "area": [areas[k] for k in range(0, 17, 4)]}
                result["direction"][f"t={t} {word}"] = row
                print(f"t={t} {word:5s}", row, flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
