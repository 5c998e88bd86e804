"""`kinema models`: the model families kinema runs and what each can do.

With no argument it lists the built-in model and every diffusers family (read
from the capability maps, nothing loaded); with a model directory it shows
that model's own map: tasks, sizes, frame rule, defaults, and the FLOPs a
default clip costs.
"""

from __future__ import annotations

from typing import Optional

import typer


def _family_lines() -> list[str]:
    from kinema.engine.diffusers.families import FAMILIES

    lines = []
    for f in FAMILIES.values():
        lines.append(f"{f.name:<10} {f.title}")
        lines.append(f"{'':<10} pipelines: {', '.join(f.pipeline_classes)}")
        lines.append(f"{'':<10} defaults: {f.default_steps} steps, guidance {f.default_guidance:g} ({f.guidance_note})")
        lines.append(f"{'':<10} negative prompt: {'yes' if f.supports_negative_prompt else 'no'}")
        lines.append(f"{'':<10} VRAM: {f.vram_note}")
        lines.append(f"{'':<10} e.g. {', '.join(f.examples)}")
    return lines


def _describe(model: str) -> list[str]:
    from kinema.engine.models import resolve_backend

    backend = resolve_backend(model)
    caps = backend.capabilities()
    lines = [f"model: {model}"]
    family = getattr(backend, "family", None)
    if family is not None:
        lines.append(f"family: {family.title} ({backend.info.pipeline_class})")
    lines += [
        f"tasks: {', '.join(sorted(caps.tasks))}",
        f"sizes (width x height): {caps.describe_buckets()}; any multiple of {caps.stride}" if family is not None else f"sizes (width x height): {caps.describe_buckets()}",
        f"frames: 1 + {caps.temporal_stride}k; fps {caps.fps_range[0]:g}" + (f"-{caps.fps_range[1]:g}" if caps.fps_range[1] != caps.fps_range[0] else ""),
        f"length: default {caps.default_seconds:g} s, max {caps.max_seconds:g} s"
        + (f" (windows of {caps.max_window_seconds:g} s)" if caps.max_window_seconds else ""),
        f"defaults: {caps.default_steps} steps, guidance {caps.default_guidance:g}, sampler {caps.default_sampler}",
        f"negative prompt: {'yes' if caps.supports_negative_prompt else 'no'}; prompt tokens: {caps.max_prompt_tokens or '-'}",
    ]
    if family is not None:
        from kinema.engine.diffusers.cost import estimate_cost

        h, w = caps.buckets[0]
        frames = 1 + caps.temporal_stride * round(caps.default_seconds * caps.default_fps / caps.temporal_stride)
        cost = estimate_cost(family, backend.info.configs, frames, h, w, caps.default_steps, caps.default_guidance)
        lines.append(
            f"cost of a default clip ({w}x{h}, {frames} frames): {cost.tokens} tokens, {cost.flops_per_token / 1e9:.2f} GFLOP per token "
            f"per pass, {cost.total_flops / 1e15:.2f} PFLOP in all ({cost.passes_per_step} pass(es) x {cost.steps} steps)"
        )
        lines.append(f"VRAM: {family.vram_note}")
    return lines


def models(model: Optional[str] = typer.Argument(None, help="A model directory or hub id to describe (default: list the families).")) -> None:
    """List the model families kinema can run, or describe one model."""
    if model is not None:
        print("\n".join(_describe(model)))
        return
    print("builtin    kinema's own model (shipped): text-to-video on CPU; `kinema models builtin` for its map")
    print("\n".join(_family_lines()))
    from kinema.engine.diffusers.families import KNOWN_UNSUPPORTED

    print(f"\nnot supported yet: {', '.join(dict.fromkeys(KNOWN_UNSUPPORTED.values()))}")
    print("\nRun one with: kinema generate PROMPT --model DIR_OR_HUB_ID (diffusers families need `pip install 'kinema[diffusers]'`)")


def register(app: typer.Typer) -> None:
    app.command("models")(models)
