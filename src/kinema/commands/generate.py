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
    candidates: Optional[int] = typer.Option(None, "--candidates", help="Clips sampled per window; the model's matcher keeps the best (default: the model's; each costs one more denoising)."),
    image: Optional[str] = typer.Option(None, "--image", help="First frame: an image file (image-to-video)."),
    last_image: Optional[str] = typer.Option(None, "--last-image", help="Last frame: an image file."),
    keyframe: list[str] = typer.Option([], "--keyframe", help="IMAGE@SECONDS: an image the video passes through (repeatable)."),
    video: Optional[str] = typer.Option(None, "--video", help="A video to extend forward by --seconds."),
    loop: bool = typer.Option(False, "--loop", help="Make the last frame return to the first."),
    interpolate: int = typer.Option(1, "--interpolate", help="Raise the frame rate by this integer factor."),
    aspect_ratio: Optional[str] = typer.Option(None, "--aspect-ratio", help="16:9, 9:16, 1:1, 4:3 or 3:4 (snapped to the model's sizes)."),
    camera: Optional[str] = typer.Option(None, "--camera", help="'pan=1,tilt=0,zoom=0.5' (strengths -2..2) or a move: 'pan left', 'zoom in'..."),
    image_fit: str = typer.Option("fill", "--image-fit", help="fill (cover + crop), fit (stretch) or pad (letterbox)."),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP),
    device: str = device_option(),
    dtype: str = dtype_option(),
    offload: str = offload_option(),
    vae_tiling: bool = vae_tiling_option(),
    vae_slicing: bool = vae_slicing_option(),
    attention: str = attention_option(),
    torch_compile: bool = compile_option(),
    timings: bool = typer.Option(False, "--timings", help="Print where the time went."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
) -> None:
    """Generate a video from a text prompt."""
    startup = seconds_since_process_start()
    from kinema.request import make_request

    options = build_options(dtype, offload, vae_tiling, vae_slicing, attention, torch_compile)
    fmt, final_path = check_output(output)
    request = make_request(
        prompt=prompt, negative_prompt=negative, seed=seed, steps=steps, guidance=guidance, sampler=sampler, candidates=candidates,
        width=width, height=height, seconds=seconds, fps=fps, format=fmt,
        image=image, last_image=last_image, keyframes=[parse_keyframe(k) for k in keyframe], video=video, loop=loop,
        interpolate=interpolate, aspect_ratio=aspect_ratio, camera=parse_camera(camera), image_fit=image_fit,
    )  # fmt: skip

    from kinema.engine.timing import Timings, format_timings

    clock = Timings(startup=startup)
    with clock.measure("startup"):  # importing torch and the models is start-up cost, not model loading
        from tqdm import tqdm

        import kinema.engine.native  # noqa: F401
        from kinema.engine.pipeline import Pipeline
    with clock.measure("model_load"):  # config files; the backend reports its own weight loading
        pipe = Pipeline.from_model(model, device=device, options=options)
    resolved = pipe.validate(request)  # loads the tokenizer: the backend counts that in its model_load

    for note in resolved.notes:
        print(f"note: {note}", file=sys.stderr)
    bar = tqdm(total=resolved.steps, desc="denoising", unit="step", file=sys.stderr, disable=not progress, leave=False)

    def on_step(step: int, total: int) -> None:
        if total != bar.total:  # several windows: the bar covers all of them
            bar.total = total
            bar.set_description(f"denoising {total // resolved.steps} windows")
        bar.update(step - bar.n)

    from kinema.video.io import VideoWriter

    frames_written = 0
    gen_timings = Timings()
    writer = VideoWriter(output, resolved.fps, resolved.width, resolved.height)
    try:  # frames are encoded as each window is made: memory stays flat however long the video
        for chunk in pipe.stream(resolved, progress=on_step, timings=gen_timings):
            with clock.measure("file_encoding"):
                writer.write(chunk)
            frames_written += len(chunk)
        with clock.measure("file_encoding"):
            writer.close()
    except BaseException:
        writer.abort()  # no partial file, whatever went wrong (Ctrl-C included)
        raise
    finally:
        bar.close()

    print(f"wrote {final_path} ({frames_written} frames, {resolved.width}x{resolved.height}, {resolved.fps:g} fps)")
    print(f"seed: {resolved.seed}")
    if timings:
        split = {"startup": clock["startup"], "model_load": clock["model_load"] + gen_timings.get("model_load", 0.0)}
        split.update({k: v for k, v in gen_timings.items() if k != "model_load"})
        split["file_encoding"] = clock.get("file_encoding", 0.0)
        print(format_timings(split))


def parse_keyframe(spec: str) -> dict[str, object]:
    """'path/to/image.png@1.5' -> {"image": ..., "seconds": 1.5}."""
    path, sep, when = spec.rpartition("@")
    if not sep or not path:
        raise KinemaInputError(f"--keyframe must be IMAGE@SECONDS, got {spec!r}")
    try:
        return {"image": path, "seconds": float(when)}
    except ValueError:
        raise KinemaInputError(f"--keyframe time must be a number of seconds, got {when!r} in {spec!r}") from None


def parse_camera(spec: str | None) -> dict[str, float] | None:
    """'pan=1,zoom=-0.5' or a named move ('pan left') -> {pan, tilt, zoom}."""
    if spec is None:
        return None
    from kinema.conditioning.camera import CameraMotion

    if "=" not in spec:
        move = CameraMotion.named(spec)
        return {"pan": move.pan, "tilt": move.tilt, "zoom": move.zoom}
    values: dict[str, float] = {}
    for part in spec.split(","):
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep or key not in ("pan", "tilt", "zoom"):
            raise KinemaInputError(f"--camera takes pan=, tilt=, zoom= (comma-separated), got {part!r}")
        try:
            values[key] = float(val)
        except ValueError:
            raise KinemaInputError(f"--camera {key} must be a number, got {val!r}") from None
    return values


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
