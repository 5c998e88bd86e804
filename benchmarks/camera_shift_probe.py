"""Does the background slide when the camera signal asks for a pan or tilt? Measured in pixels, not by the judge.

For scenes of one still object on a textured background (grid, dots, stripes), each asked with a camera
signal of pan right, pan left, tilt up and tilt down and a prompt without camera words, the clip's global
motion is the sum over consecutive frames of their phase-correlation shift (frame to frame, so that the
texture's period rarely aliases it; on the 16-pixel grid it sometimes still does, and the renderer's rows show
where). The renderer's own clips of the same scenes give what the move should be: about 0.22 frame widths per
second, 28-32 px over a 2 s, 64-pixel clip. A model that draws no camera move reads 0.

    python benchmarks/camera_shift_probe.py --model runs/X/model --json docs/results/camera_shift_X.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from kinema import Pipeline
from kinema.conditioning.camera import CameraMotion
from kinema.world.captions import canonical_caption
from kinema.world.render import render
from kinema.world.scene import ClipSpec, ObjectSpec, Scene

MOVES = ("pan right", "pan left", "tilt up", "tilt down")
SCENES = (
    Scene(objects=(ObjectSpec("circle", "red", "small", x=0.3, y=0.4),), background="black", texture="grid"),
    Scene(objects=(ObjectSpec("square", "yellow", x=0.6, y=0.5),), background="navy", texture="stripes"),
    Scene(objects=(ObjectSpec("triangle", "green", x=0.5, y=0.6),), background="charcoal", texture="dots"),
)


def frame_shift(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(dy, dx) in pixels that moves frame `a`'s content to frame `b`'s, by phase correlation of their grey levels."""
    ga, gb = a.mean(-1) - a.mean(), b.mean(-1) - b.mean()
    cross = np.fft.fft2(gb) * np.conj(np.fft.fft2(ga))
    corr = np.fft.ifft2(cross / (np.abs(cross) + 1e-9)).real
    i, j = np.unravel_index(int(corr.argmax()), corr.shape)
    h, w = corr.shape
    return (int(i) if i <= h // 2 else int(i) - h), (int(j) if j <= w // 2 else int(j) - w)


def clip_shift(frames: np.ndarray) -> tuple[int, int]:
    """The clip's total global motion: frame-to-frame shifts summed, (dy, dx) in pixels."""
    f = frames.astype(np.float32)
    steps = [frame_shift(f[k], f[k + 1]) for k in range(len(f) - 1)]
    return int(sum(s[0] for s in steps)), int(sum(s[1] for s in steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    parser.add_argument("--seeds", type=int, default=2, help="clips per scene and move")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    pipe = Pipeline.from_pretrained(args.model) if args.model else Pipeline.from_builtin()
    clip = ClipSpec(height=64, width=64, num_frames=17, fps=8.0)
    rows = []
    for move in MOVES:
        cam = CameraMotion.named(move)
        for scene in SCENES:
            truth = clip_shift(render(dataclasses.replace(scene, camera=move), clip))
            for seed in range(args.seeds):
                v = pipe.generate(canonical_caption(scene), seed=seed, camera={"pan": cam.pan, "tilt": cam.tilt, "zoom": cam.zoom})
                rows.append({"move": move, "texture": scene.texture, "seed": seed, "generated": clip_shift(v.frames), "renderer": truth})
    summary = {}
    for move in MOVES:
        mine = [r for r in rows if r["move"] == move]
        summary[move] = {
            "generated_mean_dy_dx": np.mean([r["generated"] for r in mine], axis=0).round(2).tolist(),
            "renderer_mean_dy_dx": np.mean([r["renderer"] for r in mine], axis=0).round(2).tolist(),
        }
        print(move, summary[move])
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model or "builtin", "summary": summary, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
