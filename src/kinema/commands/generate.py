"""`kinema generate "PROMPT" -o out.mp4`: one video from a prompt.

The order matters for the user's time: the request is validated, the output
path checked and the model's limits applied before any weights load, so a
typo costs milliseconds, not a model load. The file is written atomically,
so a failure or Ctrl-C never leaves a partial video behind.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from kinema.errors import KinemaInputError

_IMPORTED_AT = time.perf_counter()  # fallback start-up reference where /proc is unavailable


def seconds_since_process_start() -> float:
    """Wall time from process creation (interpreter start-up and imports included) to now.

    Linux records the start in /proc/self/stat in clock ticks since boot; that
    is the earliest timestamp there is, earlier than anything Python could take.
    """
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED_AT


def check_output(output: Path) -> tuple[str, Path]:
    """(format, final path), refusing what cannot be written before any model loads.

    A missing parent directory is refused rather than created: a typo in a path
    should not silently make directories.
    """
    from kinema.video.io import check_writable, output_path, video_format

    fmt = video_format(output)
    parent = output_path(output).parent
    if not parent.is_dir():
        raise KinemaInputError(f"cannot write to {output}: directory {parent} does not exist")
    return fmt, check_writable(output)


def generate(
    prompt: str = typer.Argument(..., help="What the video shows, e.g. 'a red circle moving left'."),
    output: Path = typer.Option(Path("out.mp4"), "--output", "-o", help="Output: .mp4, .gif, or a directory for PNG frames."),
    seed: Optional[int] = typer.Option(None, help="Random seed (default: random; the seed used is printed)."),
    steps: Optional[int] = typer.Option(None, help="Sampling steps (default: the model's)."),
    guidance: Optional[float] = typer.Option(None, help="Classifier-free guidance scale (1 = off)."),
    negative: str = typer.Option("", "--negative", help="Negative prompt: what the video should not show."),
    width: Optional[int] = typer.Option(None, help="Width in pixels (one of the model's sizes)."),
    height: Optional[int] = typer.Option(None, help="Height in pixels (one of the model's sizes)."),
    seconds: Optional[float] = typer.Option(None, help="Duration in seconds."),
    fps: Optional[float] = typer.Option(None, help="Frames per second."),
    sampler: Optional[str] = typer.Option(None, help="euler, heun or dpmpp-2m."),
    model: Optional[Path] = typer.Option(None, help="Model directory (default: the built-in model)."),
    timings: bool = typer.Option(False, "--timings", help="Print where the time went."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
) -> None:
    """Generate a video from a text prompt."""
    startup = seconds_since_process_start()
    from kinema.request import make_request

    fmt, final_path = check_output(output)
    request = make_request(
        prompt=prompt, negative_prompt=negative, seed=seed, steps=steps, guidance=guidance, sampler=sampler,
        width=width, height=height, seconds=seconds, fps=fps, format=fmt,
    )  # fmt: skip

    from kinema.engine.timing import Timings, format_timings

    clock = Timings(startup=startup)
    with clock.measure("startup"):  # importing torch and the models is start-up cost, not model loading
        from tqdm import tqdm

        import kinema.engine.native  # noqa: F401
        from kinema.engine.pipeline import Pipeline
    with clock.measure("model_load"):  # config + tokenizer: what validation needs
        pipe = Pipeline.from_pretrained(model) if model is not None else Pipeline.from_builtin()
        resolved = pipe.validate(request)

    bar = tqdm(total=resolved.steps, desc="denoising", unit="step", file=sys.stderr, disable=not progress, leave=False)

    def on_step(step: int, total: int) -> None:
        bar.update(step - bar.n)

    try:
        video = pipe.run(resolved, progress=on_step)
    finally:
        bar.close()
    with clock.measure("file_encoding"):
        video.save(output)

    print(f"wrote {final_path} ({video.num_frames} frames, {video.size[0]}x{video.size[1]}, {video.fps:g} fps)")
    print(f"seed: {video.seed}")
    if timings:
        split = {"startup": clock["startup"], "model_load": clock["model_load"] + video.timings.get("model_load", 0.0)}
        split.update({k: v for k, v in video.timings.items() if k != "model_load"})
        split["file_encoding"] = clock["file_encoding"]
        print(format_timings(split))


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
