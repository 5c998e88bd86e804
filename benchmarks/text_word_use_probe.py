"""Are motion words harder to tell apart than colour words, for MiniLM and for the built-in DiT?

Why: the built-in model gets colours mostly right and motion almost never
(docs/benchmarks.md). Two measurements, on prompt pairs that differ in one word:

1. MiniLM's states (`--part text`): cosine similarity of the differing word's
   last-layer state, and of the mean-pooled prompt (what the DiT's adaLN gets).
2. The DiT's use of the word (`--part dit`): its velocity loss on fresh one-object
   clips (64x64, 17 frames, a still camera, t = 0.5 and 0.8, the same noise) with
   the true caption, with the motion / colour / shape word swapped, and with the
   empty prompt. Each swap is reported as a share of the empty prompt's extra loss:
   0 = the word is ignored, 1 = as bad as no prompt, > 1 = worse than no prompt.

    python benchmarks/text_word_use_probe.py --json docs/results/text_word_use_probe.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

PAIRS = [
    ("a red ball moving left on a starry night sky", "a red ball moving right on a starry night sky", "motion: left / right"),
    ("a blue square drifting up slowly", "a blue square drifting down slowly", "motion: up / down"),
    ("a green star that grows", "a green star that shrinks", "motion: grows / shrinks"),
    ("a red ball, the camera zooms in", "a red ball, the camera zooms out", "camera: in / out"),
    ("a red ball, the camera pans left", "a red ball, the camera pans right", "camera: pan left / right"),
    ("a red ball moving left", "a blue ball moving left", "colour: red / blue"),
    ("a red ball moving left", "a red square moving left", "shape: ball / square"),
]
MOTION_WORDS = {"left": "moving left", "right": "moving right", "up": "moving up", "down": "moving down", "grow": "growing", "shrink": "shrinking", "still": "standing still"}
SWAPPED_MOTION = {"left": "right", "right": "left", "up": "down", "down": "up", "grow": "shrink", "shrink": "grow", "still": "left"}


def text_part() -> list[dict]:
    from kinema.models.text import MiniLMEncoder

    enc = MiniLMEncoder()
    rows = []
    for a, b, what in PAIRS:
        batch = enc.tokenizer([a, b], padding="longest", return_tensors="pt")
        with torch.no_grad():
            h = enc.model(**batch).last_hidden_state
        ids, m = batch["input_ids"], batch["attention_mask"].bool()
        i = int((ids[0] != ids[1]).nonzero()[0])
        word = torch.cosine_similarity(h[0, i], h[1, i], dim=0).item()
        pooled = torch.cosine_similarity(h[0][m[0]].mean(0), h[1][m[1]].mean(0), dim=0).item()
        rows.append({"pair": what, "word_cosine": round(word, 3), "pooled_cosine": round(pooled, 3)})
        print(rows[-1], flush=True)
    return rows


def dit_part(model: str | None, clips: int) -> dict:
    from train_vs_fresh_loss import clip_loss  # benchmarks/train_vs_fresh_loss.py
    from kinema.engine.pipeline import Pipeline, builtin_model_dir
    from kinema.world.render import render
    from kinema.world.sampling import sample_scene
    from kinema.world.scene import COLORS, SHAPES, ClipSpec

    pipe = Pipeline.from_pretrained(model or builtin_model_dir())
    pipe.load()
    backend = pipe.backend
    dit, enc = backend._dit, backend.text_encoder()
    clip, colors = ClipSpec(64, 64, 17, 8.0), list(COLORS)
    losses: dict[str, list[float]] = {k: [] for k in ("true", "motion", "color", "shape", "empty")}
    with torch.no_grad():
        for i in range(clips):
            rng = np.random.default_rng([7, i])
            scene = sample_scene(rng, clip, "exclude")
            motion = list(SWAPPED_MOTION)[i % len(SWAPPED_MOTION)]
            obj = dataclasses.replace(scene.objects[0], motion=motion, speed="normal")
            scene = dataclasses.replace(scene, objects=(obj,), camera="static", relation=None)
            other_color, other_shape = colors[(colors.index(obj.color) + 4) % 8], SHAPES[(SHAPES.index(obj.shape) + 3) % 6]
            captions = {
                "true": f"a {obj.color} {obj.shape} {MOTION_WORDS[motion]}",
                "motion": f"a {obj.color} {obj.shape} {MOTION_WORDS[SWAPPED_MOTION[motion]]}",
                "color": f"a {other_color} {obj.shape} {MOTION_WORDS[motion]}",
                "shape": f"a {obj.color} {other_shape} {MOTION_WORDS[motion]}",
                "empty": "",
            }
            z = backend._encode_pixels(render(scene, clip, i))[None]
            for kind, caption in captions.items():
                hidden, mask = enc.encode([caption])
                losses[kind].append(float(np.mean([clip_loss(dit, z, hidden, mask, t, i) for t in (0.5, 0.8)])))
    mean = {k: round(float(np.mean(v)), 4) for k, v in losses.items()}
    gap = mean["empty"] - mean["true"]
    result = {"clips": clips, "loss": mean, "share_of_empty_prompt_gap": {k: round((mean[k] - mean["true"]) / gap, 2) for k in ("motion", "color", "shape")}}
    print(result, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    parser.add_argument("--clips", type=int, default=42)
    parser.add_argument("--part", choices=["text", "dit", "both"], default="both")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    out = {}
    if args.part in ("text", "both"):
        out["minilm"] = text_part()
    if args.part in ("dit", "both"):
        out["dit"] = dit_part(args.model, args.clips)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
