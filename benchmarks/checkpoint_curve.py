"""How the judge's figure grows over a DiT training run: its EMA (or raw) weights at saved checkpoints.

The trainer keeps only its latest `checkpoints/dit/checkpoint.pt`, so copies of
it taken while a run goes on (e.g. one per `checkpoint_every_minutes`) are the
points of the curve. Each is put into a copy of the finished run's model
directory (its VAE, pipeline.json and DiT config) and scored on the first
`--limit` seen prompts, as `benchmarks/guidance_sweep.py` does; the seen suite
only, so nothing here tunes the model on held-out prompts.

Why: if the figure stops rising long before the budget ends, more DiT minutes
of the same recipe will not close the gap.

    python benchmarks/checkpoint_curve.py --model runs/builtin-shift4/model \
        /tmp/ckpts/ckpt_*.pt --json docs/results/checkpoint_curve_shift4.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from dit_finetune import write_model_dir  # benchmarks/dit_finetune.py
from kinema.commands.evaluate import suite_generator
from kinema.evaluate.run import evaluate
from kinema.evaluate.suite import build_suite
from kinema.models.io import load_pretrained


def checkpoint_model_dir(model_dir: Path, checkpoint: Path, out: Path, weights: str = "ema") -> dict:
    """`model_dir` with its DiT replaced by the checkpoint's EMA (or, with `weights="raw"`, its
    optimizer's own) weights; returns the checkpoint's counters."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    dit = load_pretrained(model_dir / "dit")
    dit.load_state_dict(state["ema"]["model"] if weights == "ema" else state["model"])
    write_model_dir(model_dir, dit, out)
    return {"step": int(state["step"]), "minutes": round(float(state["seconds"]) / 60, 1), "samples": int(state["samples"]), "loss": float(state["loss"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", type=Path, nargs="+", help="copies of checkpoints/dit/checkpoint.pt, in training order")
    parser.add_argument("--model", type=Path, required=True, help="the finished run's model directory")
    parser.add_argument("--limit", type=int, default=24, help="first N seen prompts")
    parser.add_argument("--guidance", type=float, default=None, help="default: the model's own")
    parser.add_argument("--weights", choices=["ema", "raw"], default="ema", help="the EMA weights (as exported) or the raw ones")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    suite = build_suite("seen")[: args.limit]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ckpt in args.checkpoints:
            row = checkpoint_model_dir(args.model, ckpt, Path(tmp) / "model", args.weights)
            result = evaluate(suite_generator(str(Path(tmp) / "model"), None, args.guidance), suite, progress=False)
            row.update({"checkpoint": ckpt.name, "overall": result["overall"], "accuracy": result["accuracy"]})
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(args.model), "weights": args.weights, "suite": "seen", "items": len(suite), "guidance": args.guidance, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
