"""`kinema train CONFIG`: run a training recipe from a TOML file.

One command builds the built-in model from an empty directory
(`kinema train configs/builtin.toml`); re-running it resumes where it
stopped. The same command trains on a user's own footage when the config
points `data.dataset_dir` at their clips and lists the stages they want.
Under `torchrun --nproc_per_node=N -m kinema.cli train CONFIG` it trains with DDP.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def train(
    config: Path = typer.Argument(..., help="Training config (TOML), e.g. configs/builtin.toml."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Output directory (overrides output_dir in the config)."),
    stages: Optional[str] = typer.Option(None, "--stages", help="Comma-separated stages to run (overrides the config): data,vae,cache,dit,export."),
    show_config: bool = typer.Option(False, "--show-config", help="Print the whole config as the run would use it (its `extends` chain merged, every default filled in) as JSON, and train nothing."),
) -> None:
    """Train the VAE and/or DiT as the config says; resumable, each finished stage is skipped."""
    from kinema.train.config import config_to_dict, load_config, validate

    cfg = load_config(config, output)
    if stages is not None:
        cfg.stages = [s.strip() for s in stages.split(",") if s.strip()]
        validate(cfg)
    if show_config:
        typer.echo(json.dumps(config_to_dict(cfg), indent=2))
        return
    from kinema.train.builtin import run

    stats = run(cfg)
    if "export" in stats["stages"]:
        typer.echo(f"model written to {cfg.output / 'model'}")
    shown = ("steps", "samples_per_second", "wall_seconds", "precision")
    typer.echo(json.dumps({k: {kk: v[kk] for kk in shown if kk in v} for k, v in stats["stages"].items()}))


def register(app: typer.Typer) -> None:
    app.command("train")(train)
