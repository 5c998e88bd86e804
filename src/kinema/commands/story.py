"""`kinema story storyboard.yaml -o film.mp4`: a storyboard to a finished film.

    kinema story storyboard.yaml -o film.mp4     plan, generate (cached), compose
    kinema story storyboard.yaml --plan           the plan and price as JSON; nothing generated
    kinema story draft "One paragraph." -o storyboard.yaml
    kinema story schema -o storyboard.schema.json

The storyboard is validated and the output path checked before any model
loads, so a typo costs milliseconds. `story FILE` is short for `story render FILE`.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Optional

import click
import typer
from typer.core import TyperGroup

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


class _RenderByDefault(TyperGroup):
    """`kinema story FILE ...` runs `render`: anything that is not a subcommand name is a storyboard."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["render", *args]
        return super().parse_args(ctx, args)


story_app = typer.Typer(cls=_RenderByDefault, no_args_is_help=True, help="Storyboards to finished films: shots, titles, transitions, sound.")


def _write_text(path: Path, text: str) -> None:
    """Atomic text write (temp file + rename)."""
    if not path.parent.is_dir():
        raise KinemaInputError(f"cannot write to {path}: directory {path.parent} does not exist")
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@story_app.command("render")
def render(
    storyboard: Path = typer.Argument(..., help="A storyboard .yaml/.yml/.json file."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="The film (.mp4); default: the storyboard's name with .mp4."),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP),
    device: str = device_option(),
    dtype: str = dtype_option(),
    offload: str = offload_option(),
    vae_tiling: bool = vae_tiling_option(),
    vae_slicing: bool = vae_slicing_option(),
    attention: str = attention_option(),
    torch_compile: bool = compile_option(),
    cache: Optional[Path] = typer.Option(None, help="Shot cache directory (default: .kinema-cache beside the storyboard)."),
    cache_max_mib: float = typer.Option(2048.0, help="Keep the shot cache under this size: least recently used shots and segments go first (this film's stay)."),
    srt: Optional[Path] = typer.Option(None, help="Where to write the .srt (default: beside the film)."),
    plan_only: bool = typer.Option(False, "--plan", help="Print the plan and price as JSON; generate nothing."),
    timings: bool = typer.Option(False, "--timings", help="Print where the time went."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars on stderr."),
) -> None:
    """Render a storyboard to an MP4 (H.264 + AAC + soft subtitles) and an .srt."""
    from kinema.studio.load import load_storyboard

    options = build_options(dtype, offload, vae_tiling, vae_slicing, attention, torch_compile)
    board = load_storyboard(storyboard)
    out_path = output if output is not None else storyboard.with_suffix(".mp4")
    if not plan_only:
        from kinema.video.io import check_writable

        if out_path.suffix.lower() != ".mp4":
            raise KinemaInputError(f"a film is written as .mp4, got {out_path}")
        if not out_path.parent.is_dir():
            raise KinemaInputError(f"cannot write to {out_path}: directory {out_path.parent} does not exist")
        check_writable(out_path)

    import kinema.engine.native  # noqa: F401
    from kinema.engine.pipeline import Pipeline
    from kinema.studio.cache import ShotCache
    from kinema.studio.render import Studio

    pipe = Pipeline.from_model(model, device=device, options=options)
    if cache_max_mib <= 0:
        raise KinemaInputError(f"--cache-max-mib must be > 0, got {cache_max_mib}")
    studio = Studio(pipe, ShotCache(cache if cache is not None else storyboard.resolve().parent / ".kinema-cache", max_bytes=int(cache_max_mib * 1024 * 1024)))
    plan = studio.plan(board)
    if plan_only:
        print(json.dumps(plan.to_dict(), indent=2, ensure_ascii=False))
        return
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    w, h = board.size()
    est = plan.seconds_estimate
    price = f", about {plan.flops / 1e12:.2f} TFLOP (~{est:.0f} s)" if plan.flops is not None and est is not None else ""
    print(f"{len(plan.shots)} shots, {plan.film.duration:g} s at {w}x{h}, {board.fps:g} fps; shots generated at {plan.generation_size[0]}x{plan.generation_size[1]}{price}", file=sys.stderr)

    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def on_event(event: str, index: int, total: int) -> None:
        if not progress:
            return
        if event in ("shot-start", "shot-cached", "shot-done"):
            bar = bars.setdefault("shots", tqdm(total=total, desc="shots", unit="shot", file=sys.stderr, leave=False))
            if event != "shot-start":
                bar.update(1)
                bar.set_postfix_str("cached" if event == "shot-cached" else "generated")
        elif event == "frames":
            bar = bars.setdefault("frames", tqdm(total=total, desc="composing", unit="frame", file=sys.stderr, leave=False))
            bar.update(index - bar.n)

    try:
        report = studio.render(board, out_path, srt=srt, progress=on_event, plan=plan)
    finally:
        for bar in bars.values():
            bar.close()
    for warning in report.warnings[len(plan.warnings) :]:
        print(f"warning: {warning}", file=sys.stderr)
    cached = len(report.shots) - report.generated
    print(f"wrote {report.output} ({plan.film.duration:g} s, {w}x{h}, {board.fps:g} fps; {report.generated} shots generated, {cached} from cache)")
    if report.srt is not None:
        print(f"wrote {report.srt}")
    if timings:
        from kinema.engine.timing import format_timings

        print(format_timings(report.timings))


@story_app.command("draft")
def draft(
    paragraph: str = typer.Argument(..., help="The story in a few sentences ('-' reads standard input)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the draft here (.yaml or .json); default: print it."),
    title: str = typer.Option("", help="Film title (adds intro and outro cards)."),
    aspect_ratio: str = typer.Option("16:9", help="16:9, 9:16, 1:1, 4:3 or 3:4."),
    llm: Optional[str] = typer.Option(None, help="An LLM hook as module:function(paragraph, schema) -> storyboard."),
) -> None:
    """Draft a storyboard from a paragraph: one shot per sentence, durations from text length."""
    from kinema.studio.draft import (
        DraftOptions,
        draft_storyboard,
        load_drafter,
        to_yaml,
    )

    text = sys.stdin.read() if paragraph == "-" else paragraph
    drafter = load_drafter(llm) if llm else None
    data, _ = draft_storyboard(text, DraftOptions(title=title, aspect_ratio=aspect_ratio), drafter)
    rendered = json.dumps(data, indent=2, ensure_ascii=False) + "\n" if output is not None and output.suffix.lower() == ".json" else to_yaml(data)
    if output is None:
        sys.stdout.write(rendered)
    else:
        _write_text(output, rendered)
        print(f"wrote {output} ({len(data['shots'])} shots)")


@story_app.command("schema")
def schema(output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the JSON Schema here; default: print it.")) -> None:
    """Print the storyboard format's JSON Schema."""
    from kinema.studio.load import storyboard_json_schema

    text = json.dumps(storyboard_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        _write_text(output, text)
        print(f"wrote {output}")


def register(app: typer.Typer) -> None:
    app.add_typer(story_app, name="story")
