"""Time per denoising step through kinema's diffusers backend vs calling the diffusers pipeline directly.

Same tiny pipeline directory, same arguments (built by our request mapping, so
both do identical work), same seed, one torch thread. A step's time is the
interval between consecutive step-end callbacks (diffusers' own
`callback_on_step_end` for the direct call; our progress callback, which fires
from that same hook, for the backend), on two clocks: the CPU time of this
thread (`time.thread_time`: with one torch thread all the work runs here, and
time spent descheduled by other processes does not count, so it holds on a
shared machine) and wall time. Runs alternate direct/backend, and which goes
first, so drift and cache warmth hit both equally; medians are reported.

    nice -n 10 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/diffusers_overhead.py

Writes docs/results/diffusers_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

# (tiny pipeline, size, frames): sized so one step takes 10-30 ms here (the tiny LTX VAE compresses only 4x in space and time).
FAMILIES = {
    "wan": ("wan-t2v", 128, 33),
    "ltx": ("ltx", 64, 17),
    "cogvideox": ("cogvideox-t2v", 128, 33),
    "hunyuan": ("hunyuan-t2v", 64, 33),
}


def step_intervals(stamps: list[tuple[float, float]], clock: int) -> list[float]:
    return [b[clock] - a[clock] for a, b in zip(stamps, stamps[1:])]


def now() -> tuple[float, float]:
    """(thread CPU seconds, wall seconds)."""
    return time.thread_time(), time.perf_counter()


def measure(family: str, tiny: str, root: Path, steps: int, repeats: int, size: int, frames: int) -> dict:
    import diffusers

    from kinema.engine.diffusers.backend import DiffusersBackend
    from kinema.engine.diffusers.request_map import common_kwargs
    from kinema.engine.diffusers.tiny import save_tiny_pipeline
    from kinema.request import make_request

    path = save_tiny_pipeline(tiny, root / tiny)
    backend = DiffusersBackend(path)
    fps = backend.capabilities().default_fps
    request = make_request(prompt="a ball", seed=0, steps=steps, width=size, height=size, seconds=(frames - 1) / fps)
    resolved = backend.validate(request)
    backend.load()

    direct = getattr(diffusers, backend.info.pipeline_class).from_pretrained(str(path), dtype=torch.float32, local_files_only=True)
    direct.set_progress_bar_config(disable=True)
    kwargs = common_kwargs(
        backend.family, backend.info.configs, prompt=resolved.prompt, negative_prompt=resolved.negative_prompt, steps=resolved.steps,
        guidance=resolved.guidance, height=resolved.height, width=resolved.width, num_frames=resolved.generated_frames, fps=resolved.generation_fps,
    )  # fmt: skip

    direct_steps: list[float] = []  # thread CPU time
    ours_steps: list[float] = []
    direct_wall: list[float] = []
    ours_wall: list[float] = []
    direct_calls: list[float] = []
    ours_calls: list[float] = []
    paired: list[float] = []  # per round: our median step / the direct median step (runs side by side, so load cancels)
    def run_direct() -> tuple[float, list[tuple[float, float]]]:
        stamps: list[tuple[float, float]] = []

        def on_step(_pipe, _i, _t, kw):  # noqa: ANN001, ANN202
            stamps.append(now())
            return kw

        t0 = time.perf_counter()
        with torch.inference_mode():
            direct(**kwargs, generator=torch.Generator("cpu").manual_seed(0), output_type="np", callback_on_step_end=on_step)
        return time.perf_counter() - t0, stamps

    wrapper: list[float] = []  # wall time of a generate() spent outside the diffusers call (mapping, conversion, interpolation)

    def run_ours() -> tuple[float, list[tuple[float, float]]]:
        stamps: list[tuple[float, float]] = []
        t0 = time.perf_counter()
        video = backend.generate(resolved, progress=lambda s, n: stamps.append(now()))
        total = time.perf_counter() - t0
        wrapper.append(total - video.timings["generation"])
        return total, stamps

    for round_ in range(repeats + 1):  # the first round warms both up and is dropped
        # Alternate which goes first, so neither always runs on a cache the other just warmed.
        if round_ % 2 == 0:
            (direct_call, d_stamps), (ours_call, o_stamps) = run_direct(), run_ours()
        else:
            (ours_call, o_stamps), (direct_call, d_stamps) = run_ours(), run_direct()
        if round_ == 0:
            continue
        paired.append(statistics.median(step_intervals(o_stamps, 0)) / statistics.median(step_intervals(d_stamps, 0)))
        direct_steps += step_intervals(d_stamps, 0)
        ours_steps += step_intervals(o_stamps, 0)
        direct_wall += step_intervals(d_stamps, 1)
        ours_wall += step_intervals(o_stamps, 1)
        direct_calls.append(direct_call)
        ours_calls.append(ours_call)

    d, o = statistics.median(direct_steps), statistics.median(ours_steps)
    return {
        "family": family,
        "pipeline": backend.info.pipeline_class,
        "size": f"{resolved.width}x{resolved.height}",
        "frames": resolved.generated_frames,
        "steps": steps,
        "repeats": repeats,
        "direct_ms_per_step": round(1000 * d, 3),
        "kinema_ms_per_step": round(1000 * o, 3),
        "step_overhead_percent": round(100 * (o - d) / d, 2),
        "step_overhead_percent_paired": round(100 * (statistics.median(paired) - 1), 2),
        "paired_round_percents": [round(100 * (x - 1), 1) for x in paired],
        "direct_wall_ms_per_step": round(1000 * statistics.median(direct_wall), 3),
        "kinema_wall_ms_per_step": round(1000 * statistics.median(ours_wall), 3),
        "step_overhead_percent_wall": round(100 * (statistics.median(ours_wall) - statistics.median(direct_wall)) / statistics.median(direct_wall), 2),
        "kinema_wrapper_ms_per_call": round(1000 * statistics.median(wrapper[1:]), 3),
        "direct_s_per_call": round(statistics.median(direct_calls), 4),
        "kinema_s_per_call": round(statistics.median(ours_calls), 4),
        "call_overhead_percent": round(100 * (statistics.median(ours_calls) - statistics.median(direct_calls)) / statistics.median(direct_calls), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("docs/results/diffusers_overhead.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for family, (tiny, size, frames) in FAMILIES.items():
            r = measure(family, tiny, Path(tmp), args.steps, args.repeats, size, frames)
            print(json.dumps(r))
            results.append(r)
    report = {
        "what": "median thread CPU time (and wall time) per denoising step, kinema DiffusersBackend vs the diffusers pipeline called directly, same tiny model and arguments",
        "machine": "2-core AMD EPYC, no GPU, torch " + torch.__version__.split("+")[0] + ", 1 torch thread",
        "diffusers": __import__("diffusers").__version__,
        "command": "nice -n 10 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/diffusers_overhead.py",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp_out, args.out)


if __name__ == "__main__":
    main()
