"""Does a model follow its camera signal better than its prompt's camera words? Both judge suites, generated
as `kinema evaluate` does, but with the camera move the prompt names also given as the signal
("the camera pans left" -> pan -1, read by `camera_in_prompt` below; prompts that name no move get no signal,
as before). Compare with `kinema evaluate` at the same guidance (by default the model's own, as here).

    python benchmarks/camera_words_probe.py --model runs/builtin-mixed/model --json docs/results/camera_words_probe_mixed.json
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from kinema.commands.evaluate import format_table
from kinema.conditioning.camera import CameraMotion
from kinema.engine.pipeline import Pipeline
from kinema.evaluate.run import evaluate
from kinema.evaluate.suite import SUITES, build_suite

# The camera moves a prompt names, in words. Pan and tilt need the word "camera" in the same clause; zooming is
# only ever the camera's. Read right on all 48,000 captions of the built-in model's training set (a moving
# camera always, a static one as static or as no move) and on every suite prompt (checked below, per run).
_CLAUSE = r"[^,.;:!?]*?"
_MOVES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), name)
    for pattern, name in (
        (rf"\bcamera\b{_CLAUSE}\bpan(?:s|ning|ned)?\s+(?:to\s+the\s+)?left\b", "pan left"),
        (rf"\bcamera\b{_CLAUSE}\bpan(?:s|ning|ned)?\s+(?:to\s+the\s+)?right\b", "pan right"),
        (rf"\bcamera\b{_CLAUSE}\btilt(?:s|ing|ed)?\s+up(?:wards?)?\b", "tilt up"),
        (rf"\bcamera\b{_CLAUSE}\btilt(?:s|ing|ed)?\s+down(?:wards?)?\b", "tilt down"),
        (r"\bzoom(?:s|ing|ed)?\s+in\b", "zoom in"),
        (r"\bzoom(?:s|ing|ed)?\s+out\b", "zoom out"),
    )
)


def camera_in_prompt(prompt: str) -> CameraMotion | None:
    """The one camera move `prompt` names in words, or None (none, or more than one)."""
    named = [name for pattern, name in _MOVES if pattern.search(prompt)]
    return CameraMotion.named(named[0]) if len(named) == 1 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    parser.add_argument("--guidance", type=float, default=None, help="default: the model's")
    parser.add_argument("--limit", type=int, default=None, help="first N prompts of each suite")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    pipe = Pipeline.from_model(args.model)
    extra = {"guidance": args.guidance} if args.guidance is not None else {}

    def generate(item):
        camera = camera_in_prompt(item.prompt)
        signal = {"camera": {"pan": camera.pan, "tilt": camera.tilt, "zoom": camera.zoom}} if camera is not None else {}
        video = pipe.generate(
            item.prompt, seed=item.seed, width=item.clip.width, height=item.clip.height, seconds=item.clip.seconds, fps=item.clip.fps, **extra, **signal
        )
        return video.frames

    results = {}
    for name in SUITES:
        suite = build_suite(name, size=64)
        for item in suite:  # the words must give exactly the scene's move, or the probe measures the parser
            read = camera_in_prompt(item.prompt)
            if (read.nearest_name() if read else "static") != item.scene.camera:
                raise SystemExit(f"the parser reads {read} in {item.prompt!r}, whose camera is {item.scene.camera}")
        results[name] = evaluate(generate, suite[: args.limit] if args.limit else suite, progress=False)
    print(format_table(results))
    if args.json:
        report = {"model": args.model or "builtin", "guidance": args.guidance, "camera": "the prompt's camera words as the signal", "suites": results}
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
