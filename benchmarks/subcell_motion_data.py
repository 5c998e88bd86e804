"""Training data for the sub-cell motion A/B: one object, static camera, moving at one speed.

Why: the DiT copies a still object across latent frames but moves none. One suspect is
that Shapes World's speeds move an object a fraction of a latent cell (8 px) per latent
frame (4 frames), and the VAE's latent of a sub-cell shift is not a shifted latent, so
every moving object is a new code to draw. If that is the obstacle, the same DiT should
learn motion much faster when each latent frame moves it by about one cell than by half.

This writes a dataset in the trainer's format (64x64, 17 frames at 8 fps) whose scenes
all have one object, a static camera, motion still / left / right / up / down, and the
"normal" speed, with that speed set by `--normal-speed` (frame widths per second): 0.22
is Shapes World's own (1.76 px per frame, 7.0 px per latent frame: with the shipped VAE a
one-cell shift of a latent frame explains 95% of its change to the next), 0.125 moves
1 px per frame, 4 px = half a latent cell per latent frame. Captions are the
world's own (the normal speed has no adverb). Train a run on it with
`configs/experiments/subcell-{world,half}.toml` and score it with `benchmarks/motion_probe.py
--normal-speed` at the same speed.

    python benchmarks/subcell_motion_data.py --normal-speed 0.125 --clips 3000 --out runs/subcell-half/dataset
    python benchmarks/subcell_motion_data.py --normal-speed 0.22 --motions all --out runs/narrow-all/dataset   # every motion
    python benchmarks/subcell_motion_data.py --normal-speed 0.22 --shift-check   # how near a one-cell shift each latent frame is
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kinema.video.io import write_video
from kinema.world import scene as world
from kinema.world.captions import captions
from kinema.world.render import render
from kinema.world.sampling import FOCUSES, sample_scene
from kinema.world.scene import ClipSpec

CLIP = ClipSpec(height=64, width=64, num_frames=17, fps=8.0)


def set_normal_speed(speed: float) -> None:
    """Change Shapes World's "normal" speed in this process (sampling, rendering and the judge's reference tracks)."""
    world.SPEEDS["normal"] = float(speed)


def one_object_scene(rng: np.random.Generator, focus: str = "one-object-translation"):
    """A scene from the world's sampler in a slice of kinema.world.sampling.FOCUSES (one object, a static
    camera, the normal speed; a translation or none, or any motion). Drawn here rather than by
    write_dataset(focus=...), which spends its generator differently, so the committed A/B data stays reproducible."""
    while True:
        s = sample_scene(rng, CLIP, heldout="exclude")
        if FOCUSES[focus](s):
            return s


def one_cell_shift_share(vae_dir: str = "src/kinema/assets/builtin/vae") -> float:
    """For a medium red star moving left, the share of each latent frame's change to the next (frames 1-4) that
    shifting it left by one whole latent cell explains, away from the borders (1 = a pure one-cell shift)."""
    import torch

    from kinema.models.io import load_pretrained
    from kinema.train.data import to_model_video
    from kinema.world.scene import ObjectSpec, Scene

    vae = load_pretrained(vae_dir).float().eval()
    scene = Scene(objects=(ObjectSpec(shape="star", color="red", size="medium", motion="left", x=0.7, y=0.5),), background="black", texture="plain", camera="static")
    with torch.no_grad():
        z = vae.encode(to_model_video(render(scene, CLIP, 1)))[0]
    inner = (slice(None), slice(1, -1), slice(1, -2))
    shares = []
    for k in range(1, z.shape[1] - 1):
        residual = (z[:, k + 1] - torch.roll(z[:, k], -1, dims=-1))[inner].pow(2).mean()
        change = (z[:, k + 1] - z[:, k])[inner].pow(2).mean()
        shares.append(1.0 - float(residual / change))
    return float(np.mean(shares))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--normal-speed", type=float, required=True, help="frame widths per second (0.22 = Shapes World, 0.125 = half a latent cell per latent frame)")
    parser.add_argument("--clips", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="dataset directory to write")
    parser.add_argument("--motions", choices=("translations", "all"), default="translations",
                        help="still/left/right/up/down (the A/B), or every Shapes World motion (a narrow first phase for dit.init_from)")  # fmt: skip
    parser.add_argument("--shift-check", action="store_true", help="only print how much of a latent frame's change a one-cell shift explains")
    args = parser.parse_args()

    set_normal_speed(args.normal_speed)
    if args.shift_check:
        print(f"normal speed {args.normal_speed:g}: a one-cell shift explains {one_cell_shift_share():.1%} of a latent frame's change")
        return
    if args.out is None:
        parser.error("--out is required to write a dataset")
    (args.out / "clips").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in tqdm(range(args.clips), desc="rendering clips", unit="clip"):
        rng = np.random.default_rng([args.seed, i])
        s = one_object_scene(rng, "one-object-translation" if args.motions == "translations" else "one-object")
        render_seed = int(rng.integers(2**31 - 1))
        rel = f"clips/{i:06d}.mp4"
        write_video(render(s, CLIP, render_seed), args.out / rel, CLIP.fps, threads=1)
        lines.append(json.dumps({"video": rel, "captions": captions(s, rng, 3), "height": 64, "width": 64, "num_frames": 17, "fps": 8.0,
                                 "scene": s.to_dict(), "seed": render_seed, "split": "train"}))  # fmt: skip
    (args.out / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    settings = {"spec": f"shapes-world-v1 (probe: one object, static camera, {args.motions}, normal speed {args.normal_speed:g})", "seed": args.seed, "heldout": "exclude", "buckets": [asdict(CLIP)], "bucket_weights": [1.0]}
    (args.out / "dataset.json").write_text(json.dumps(settings, indent=2) + "\n")
    print(f"wrote {args.clips} clips to {args.out}")


if __name__ == "__main__":
    main()
