"""A timed DiT continuation for experiments: the trainer's flow-matching step without its run machinery.

Shared by the probes that continue a finished run's DiT for a few minutes on
batches of their own (`camera_signal_finetune.py`, `overfit_probe.py`) and write
the result as a model directory to measure like the built-in model.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from kinema.diffusion.flow import add_noise, apply_shift, flow_loss, sample_training_t, velocity_target
from kinema.models.io import save_pretrained
from kinema.train.config import DiTStageConfig
from kinema.train.dit_trainer import batch_shift
from kinema.train.loop import EMA
from kinema.train.precision import autocast, resolve_precision

# step -> (x0 normalised [B,C,T',h,w], text, mask, cond or None, camera, generator for t and noise)
BatchFn = Callable[[int], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Generator]]


def finetune(model: torch.nn.Module, d: DiTStageConfig, batch: BatchFn, minutes: float, lr: float, ema_decay: float) -> tuple[EMA, int, float]:
    """Train `model` on `batch(step)` for `minutes` as the DiT stage does (AdamW, clipping, EMA).

    Returns the EMA, the number of steps and the mean loss of the last 100.
    """
    patch = tuple(model.config.patch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=d.weight_decay)
    ema = EMA(model, ema_decay)
    start, step, losses = time.monotonic(), 0, []
    model.train()
    while time.monotonic() - start < minutes * 60:
        x0, text, mask, cond, camera, g = batch(step)
        t = apply_shift(sample_training_t(x0.shape[0], g, d.t_mean, d.t_std, d.t_uniform_fraction), batch_shift(d, patch, tuple(x0.shape)))
        noise = torch.randn(x0.shape, generator=g)
        with autocast(resolve_precision(d.precision)):
            pred = model(add_noise(x0, noise, t), t, text, mask, cond, camera)
        loss = flow_loss(pred, velocity_target(x0, noise))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), d.grad_clip)
        optimizer.step()
        ema.update(model)
        losses.append(float(loss.detach()))
        step += 1
        if step % 100 == 0:
            print(f"step {step} loss {np.mean(losses[-100:]):.4f} {(time.monotonic() - start) / 60:.1f} min", flush=True)
    return ema, step, float(np.mean(losses[-100:]))


def write_model_dir(template: Path, dit: torch.nn.Module, out: Path) -> None:
    """`template` (a model directory: VAE, pipeline.json) copied to `out` with `dit` as its DiT, in fp16 as shipped."""
    shutil.copytree(template, out, dirs_exist_ok=True)
    save_pretrained(dit, out / "dit", dtype=torch.float16)
