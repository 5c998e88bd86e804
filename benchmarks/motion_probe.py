"""Does a model move one object the way its prompt says? The simplest motion question, asked apart.

The full suites mix two objects, seven cameras and nine motions, so a model that cannot yet
translate a single object is hard to tell from one that cannot compose. This probe asks only
the simplest case: one object, static camera, motion left / right / up / down (fresh scenes
from the world's own sampler, no held-out pairs), once from text alone and once with the true
first frame given (image-to-video). Per clip it reports the judge's motion read and, more
leniently, whether the largest object's centroid ends up displaced the asked way by at least
a third of the distance the renderer moves it.

    python benchmarks/motion_probe.py --model runs/X/model --items 24 --json docs/results/motion_probe_X.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from kinema import Pipeline
from kinema.world.captions import canonical_caption
from kinema.world.judge import read_clip, score
from kinema.world.render import render
from kinema.world.sampling import sample_scene
from kinema.world.scene import ClipSpec

PROBE_SEED = 977
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}


def probe_scenes(n: int, clip: ClipSpec, normal_only: bool = False):
    """n one-object, static-camera scenes whose object translates, cycling through the four directions
    (only at the normal speed if `normal_only`)."""
    rng = np.random.default_rng(PROBE_SEED)
    out = []
    while len(out) < n:
        want = list(DIRECTIONS)[len(out) % 4]
        s = sample_scene(rng, clip, heldout="exclude")
        if len(s.objects) == 1 and s.camera == "static" and s.objects[0].motion == want and (not normal_only or s.objects[0].speed == "normal"):
            out.append(s)
    return out


def _object_mask(frames: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Pixels far from the clip's median background colour and saturated enough to be an object."""
    f = frames.astype(np.float32)
    sat = f.max(-1) - f.min(-1)
    bright = f.max(-1)
    return (np.abs(f - background).sum(-1) > 90) & ((sat > 60) | (bright > 200))


def centroid_direction_ok(frames: np.ndarray, motion: str, expected_shift: float) -> bool:
    """The object pixels' centroid moved the asked way by at least a third of the expected shift (in frame fractions)."""
    t, h, w, _ = frames.shape
    background = np.median(frames.reshape(-1, 3), axis=0)
    mask = _object_mask(frames, background)
    ys, xs = np.mgrid[0:h, 0:w]

    def centre(k: int):
        m = mask[k]
        return None if m.sum() < 4 else (float((xs * m).sum() / m.sum()) / w, float((ys * m).sum() / m.sum()) / h)

    first = next((c for c in (centre(k) for k in range(3)) if c), None)
    last = next((c for c in (centre(k) for k in range(t - 1, t - 4, -1)) if c), None)
    if first is None or last is None:
        return False
    dx, dy = DIRECTIONS[motion]
    along = (last[0] - first[0]) * dx + (last[1] - first[1]) * dy
    return along >= expected_shift / 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    ap.add_argument("--items", type=int, default=24)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--normal-speed", type=float, default=None, help="Shapes World's normal speed for these scenes (benchmarks/subcell_motion_data.py)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.normal_speed is not None:
        from subcell_motion_data import set_normal_speed

        set_normal_speed(args.normal_speed)
    normal_only = args.normal_speed is not None

    pipe = Pipeline.from_model(args.model).load()
    clip = ClipSpec(height=64, width=64, num_frames=17, fps=8.0)
    rows = []
    for i, scene in enumerate(probe_scenes(args.items, clip, normal_only)):
        prompt = canonical_caption(scene)
        gt = render(scene, clip, seed=i)
        obj = scene.objects[0]
        truth_track = read_clip(gt, clip.fps).objects[0].track
        dx, dy = DIRECTIONS[obj.motion]
        expected = (truth_track[-1][1] - truth_track[0][1]) * dx + (truth_track[-1][2] - truth_track[0][2]) * dy
        row = {"prompt": prompt, "motion": obj.motion, "expected_shift": expected, "ground_truth_centroid_ok": centroid_direction_ok(gt, obj.motion, expected)}
        for mode, extra in (("t2v", {}), ("i2v", {"image": gt[0]})):
            options = {"seed": 1000 + i, "width": 64, "height": 64, **extra}
            if args.guidance is not None:
                options["guidance"] = args.guidance
            v = pipe.generate(prompt, **options)
            reading = read_clip(v.frames, v.fps)
            s = score(reading, scene)
            row[mode] = {
                "judge_motion": bool(s["motion"]),
                "judge_count": bool(s["count"]),
                "motions_read": [o.motion for o in reading.objects],
                "centroid_ok": centroid_direction_ok(v.frames, obj.motion, expected),
            }
        rows.append(row)
        print(f"{i:3d} {obj.motion:5s} t2v {row['t2v']['motions_read']} i2v {row['i2v']['motions_read']}", flush=True)

    summary = {
        mode: {
            "judge_motion": float(np.mean([r[mode]["judge_motion"] for r in rows])),
            "centroid_direction": float(np.mean([r[mode]["centroid_ok"] for r in rows])),
            "count": float(np.mean([r[mode]["judge_count"] for r in rows])),
        }
        for mode in ("t2v", "i2v")
    }
    truth_ok = float(np.mean([r["ground_truth_centroid_ok"] for r in rows]))
    result = {"model": args.model or "builtin", "items": args.items, "guidance": args.guidance, "normal_speed": args.normal_speed, "summary": summary, "ground_truth_centroid_direction": truth_ok, "rows": rows}
    print(json.dumps({"summary": summary, "ground_truth_centroid_direction": truth_ok}, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
