"""`kinema evaluate --suite heldout --json out.json`: judge-based accuracy of a model.

Generates every prompt of the fixed suites, reads each video back with the Shapes
World judge and reports per-attribute accuracy and temporal flicker. With
`--ground-truth` the renderer itself is scored instead: the sanity figure that
says how far the judge can be trusted. The engine is imported only when a model
is actually evaluated, so the ground-truth mode and `--help` stay light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from kinema.commands.model_options import (
    MODEL_HELP,
    attention_option,
    build_options,
    compile_option,
    device_option,
    dtype_option,
    offload_option,
    vae_slicing_option,
    vae_tiling_option,
)
from kinema.errors import KinemaInputError

SUITE_CHOICES = ("seen", "heldout", "all")


def suite_generator(model: Optional[str], steps: Optional[int], guidance: Optional[float] = None, device: str = "auto", options: Any = None):
    """A SuiteItem -> frames callable backed by the engine's Pipeline (imported lazily)."""
    from kinema.engine.pipeline import Pipeline

    pipe = Pipeline.from_model(model, device=device, options=options)
    options: dict[str, Any] = {k: v for k, v in (("steps", steps), ("guidance", guidance)) if v is not None}

    def generate(item):
        video = pipe.generate(
            item.prompt,
            seed=item.seed,
            width=item.clip.width,
            height=item.clip.height,
            seconds=item.clip.seconds,
            fps=item.clip.fps,
            **options,
        )
        return video.frames

    return generate


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Attributes down, suites across, accuracies in percent, then flicker."""
    from kinema.world.judge import ATTRIBUTES

    names = list(results)
    lines = [f"{'attribute':<10}" + "".join(f"{n:>10}" for n in names)]
    for attr in (*ATTRIBUTES, "overall"):
        row = [results[n]["overall"] if attr == "overall" else results[n]["accuracy"][attr] for n in names]
        lines.append(f"{attr:<10}" + "".join(f"{100 * v:>9.1f}%" for v in row))
    lines.append(f"{'flicker':<10}" + "".join(f"{results[n]['flicker']['score']:>10.4f}" for n in names))
    lines.append(f"{'items':<10}" + "".join(f"{results[n]['n_items']:>10d}" for n in names))
    if any(results[n].get("seeds", 1) > 1 for n in names):
        lines.append(f"{'seeds':<10}" + "".join(f"{results[n]['seeds']:>10d}" for n in names))
        lines.append(f"{'overall SE':<10}" + "".join(f"{100 * results[n]['overall_stderr']:>9.1f}%" for n in names))
    return "\n".join(lines)


def evaluate(
    suite: str = typer.Option("all", "--suite", help="Prompt suite: seen, heldout, or all (both)."),
    json_out: Path = typer.Option(..., "--json", help="Where to write the JSON report."),
    model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    device: str = device_option(),
    dtype: str = dtype_option(),
    offload: str = offload_option(),
    vae_tiling: bool = vae_tiling_option(),
    vae_slicing: bool = vae_slicing_option(),
    attention: str = attention_option(),
    torch_compile: bool = compile_option(),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate only the first N items of each suite."),
    seeds: int = typer.Option(1, "--seeds", help="Clips per prompt, each with its own seed (the suite's first): one seed's figure moves by several points."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps (default: the model's)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="CFG scale (default: the model's); choose it on the seen suite, report held-out."),
    size: int = typer.Option(64, "--size", help="Base resolution of the suite (a multiple of 16)."),
    ground_truth: bool = typer.Option(False, "--ground-truth", help="Score the renderer's own clips (judge sanity check)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Judge-based evaluation on fixed prompt suites (seen and held-out combinations)."""
    from kinema.evaluate.run import evaluate as run_evaluation
    from kinema.evaluate.run import ground_truth as render_item
    from kinema.evaluate.run import write_report
    from kinema.evaluate.suite import DEFAULT_ITEMS, SUITES, build_suite

    if suite not in SUITE_CHOICES:
        raise KinemaInputError(f"unknown suite {suite!r}: choose one of {', '.join(SUITE_CHOICES)}")
    if limit is not None and limit < 1:
        raise KinemaInputError(f"--limit must be at least 1, got {limit}")
    if seeds < 1:
        raise KinemaInputError(f"--seeds must be at least 1, got {seeds}")
    if steps is not None and steps < 1:
        raise KinemaInputError(f"--steps must be at least 1, got {steps}")
    if guidance is not None and not guidance >= 0:
        raise KinemaInputError(f"--guidance must be >= 0, got {guidance}")
    options = build_options(dtype, offload, vae_tiling, vae_slicing, attention, torch_compile)
    if ground_truth and (model is not None or steps is not None or guidance is not None or options.changed()):
        extra = f" ({options.describe()})" if options.changed() else ""
        raise KinemaInputError(f"--ground-truth scores the renderer: it takes no --model, --steps, --guidance or model options{extra}")
    if not json_out.parent.is_dir():
        raise KinemaInputError(f"cannot write {json_out}: directory {json_out.parent} does not exist")
    names = SUITES if suite == "all" else (suite,)
    suites = {n: build_suite(n, size=size, n_items=limit or DEFAULT_ITEMS) for n in names}
    generate = render_item if ground_truth else suite_generator(model, steps, guidance, device, options)
    results = {n: run_evaluation(generate, items, progress=progress, seeds=seeds) for n, items in suites.items()}
    report = {
        "model": "ground-truth" if ground_truth else (str(model) if model else "builtin"),
        "steps": steps,
        "guidance": guidance,
        "model_options": options.changed(),
        "size": size,
        "suites": results,
    }
    write_report(report, json_out)
    typer.echo(format_table(results))
    typer.echo(f"wrote {json_out}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
