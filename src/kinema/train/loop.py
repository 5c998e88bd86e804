"""The training loop shared by the VAE and DiT trainers.

A trainer supplies `step_fn(step) -> (loss, samples)` (forward + backward for
this rank's batch of optimizer step `step`); the loop owns everything else:
learning-rate schedule, gradient clipping, the optimizer step, EMA, progress,
time budget, periodic atomic checkpoints, resume, and a clean stop on
Ctrl-C. Keeping that in one place means both trainers stop, save and resume
the same way, alone or under DDP.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from kinema.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from kinema.train.distributed import DistInfo, broadcast_values
from kinema.train.precision import PRECISION_RECORD, choose_precision


def lr_at(step: int, base_lr: float, warmup: int, total: int, schedule: str = "cosine", time_frac: float = 0.0, min_ratio: float = 0.1) -> float:
    """Linear warmup, then constant or cosine decay to `min_ratio * base_lr`.

    The cosine follows whichever runs out first, steps or the time budget
    (`time_frac` = share of the budget spent): a budget-limited CPU run still
    ends at a low learning rate, which is where the weights settle.
    """
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    if schedule == "constant":
        return base_lr
    frac = max((step - warmup) / max(1, total - warmup), time_frac)
    frac = min(1.0, max(0.0, frac))
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.99)) -> torch.optim.AdamW:
    """AdamW over all of `model`'s trainable parameters (see `adamw`)."""
    return adamw(model.parameters(), lr, weight_decay, betas)


def adamw(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.99)) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases, norms and embeddings' 1-D gains (they should not shrink)."""
    decay, no_decay = [], []
    for p in params:
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True)


class EMA:
    """Exponential moving average of a model's weights (the weights we ship).

    The decay warms up as `min(decay, (1 + n) / (10 + n))` so an early EMA is
    not dominated by the random initialisation on short runs.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        ema_p = [p for p in self.model.parameters()]
        src_p = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_p, src_p, 1.0 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_updates = state["num_updates"]
        self.model.load_state_dict(state["model"])


@dataclass
class LoopSettings:
    name: str
    total_steps: int
    checkpoint_dir: Path
    base_lr: float
    warmup_steps: int = 0
    lr_schedule: str = "cosine"
    grad_clip: float = 0.0
    budget_minutes: float = 0.0  # 0 = no time limit
    checkpoint_every_steps: int = 0
    checkpoint_every_minutes: float = 0.0
    progress: bool = True

    @classmethod
    def for_stage(cls, name: str, stage: Any, cfg: Any, checkpoint_dir: Path, budget_minutes: float | None = None) -> "LoopSettings":
        """Settings from a stage config (`cfg.vae` / `cfg.dit`) and the run-wide checkpoint options,
        so every trainer maps the same config fields the same way."""
        return cls(
            name=name,
            total_steps=stage.steps,
            checkpoint_dir=checkpoint_dir,
            base_lr=stage.lr,
            warmup_steps=stage.warmup_steps,
            lr_schedule=stage.lr_schedule,
            grad_clip=stage.grad_clip,
            budget_minutes=stage.time_budget_minutes if budget_minutes is None else budget_minutes,
            checkpoint_every_steps=cfg.checkpoint_every_steps,
            checkpoint_every_minutes=cfg.checkpoint_every_minutes,
            progress=cfg.progress,
        )


@dataclass
class LoopResult:
    steps: int
    seconds: float  # wall time across all runs of this stage (resumes add up)
    samples: int  # samples seen by all ranks
    final_loss: float
    stopped_by: str  # "steps", "budget", "already done"
    precision: str = ""  # what the stage computed in, and why (kinema.train.precision.PrecisionChoice.describe)

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


def run_loop(
    settings: LoopSettings,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step_fn: Callable[[int], tuple[float, int]],
    dist: DistInfo,
    ema: EMA | None = None,
    extra_state: dict[str, Any] | None = None,
) -> LoopResult:
    """Train `model` (the raw module; `step_fn` may run it through DDP) until done.

    Resumes from `settings.checkpoint_dir` when a checkpoint exists; the stage's
    time budget counts time already spent in earlier runs.
    """
    step, prior_seconds, samples, loss_avg = 0, 0.0, 0, float("nan")
    ckpt = load_checkpoint(settings.checkpoint_dir)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.load_state_dict(ckpt["ema"])
        set_rng_state(ckpt["rng"])
        step, prior_seconds, samples = ckpt["step"], ckpt["seconds"], ckpt["samples"]
        loss_avg = ckpt.get("loss", float("nan"))

    start = time.monotonic()
    last_save_time, last_save_step = start, step

    def elapsed() -> float:
        return prior_seconds + time.monotonic() - start

    def save() -> None:
        if dist.is_main:
            save_checkpoint(
                settings.checkpoint_dir,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "rng": rng_state(),
                    "step": step,
                    "seconds": elapsed(),
                    "samples": samples,
                    "loss": loss_avg,
                    **(extra_state or {}),
                },
            )

    budget_s = settings.budget_minutes * 60.0
    if step >= settings.total_steps or (budget_s > 0 and prior_seconds >= budget_s):
        return LoopResult(step, prior_seconds, samples, loss_avg, "already done")

    bar = None
    if settings.progress and dist.is_main:
        from tqdm import tqdm

        bar = tqdm(total=settings.total_steps, initial=step, desc=settings.name, dynamic_ncols=True, smoothing=0.1)
    stopped_by = "steps"
    run_samples, run_start = 0, time.monotonic()
    try:
        while True:
            # Rank 0 decides (time is per-process); every rank acts on the same values.
            now = time.monotonic()
            time_frac = elapsed() / budget_s if budget_s > 0 else 0.0
            due = (settings.checkpoint_every_steps > 0 and step - last_save_step >= settings.checkpoint_every_steps) or (
                settings.checkpoint_every_minutes > 0 and now - last_save_time >= settings.checkpoint_every_minutes * 60
            )
            time_frac, due_f = broadcast_values(dist, time_frac, float(due))
            if step >= settings.total_steps:
                break
            if time_frac >= 1.0:
                stopped_by = "budget"
                break
            if due_f:
                save()
                last_save_time, last_save_step = now, step
            lr = lr_at(step, settings.base_lr, settings.warmup_steps, settings.total_steps, settings.lr_schedule, time_frac)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss, n = step_fn(step)
            if settings.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            if ema is not None:
                ema.update(model)
            step += 1
            samples += n * dist.world_size
            run_samples += n * dist.world_size
            loss_avg = loss if math.isnan(loss_avg) else 0.95 * loss_avg + 0.05 * loss
            if bar is not None:
                bar.update(1)
                rate = run_samples / max(1e-9, time.monotonic() - run_start)
                bar.set_postfix(loss=f"{loss_avg:.4f}", lr=f"{lr:.2e}", sps=f"{rate:.1f}")
    except KeyboardInterrupt:
        save()
        if bar is not None:
            bar.close()
        raise
    save()
    if bar is not None:
        bar.close()
    return LoopResult(step, elapsed(), samples, loss_avg, stopped_by)


def run_loop_in_precision(
    settings: LoopSettings,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    forward_backward: Callable[[int, str], tuple[float, int]],
    requested_precision: str,
    dist: DistInfo,
    ema: EMA | None = None,
) -> LoopResult:
    """`run_loop` in the precision `requested_precision` comes to on this machine; the result says which and why.

    `forward_backward(step, precision)` is the stage's step in a given precision. For "auto" it is
    first timed in both (kinema.train.precision.choose_precision: no optimizer update, the RNG left
    as it was) and the choice is kept beside the stage's checkpoint, so a resume trains on in it.
    """
    choice = choose_precision(
        requested_precision, lambda p, i: forward_backward(i, p), settings.checkpoint_dir / PRECISION_RECORD, dist, announce=settings.name
    )
    optimizer.zero_grad(set_to_none=True)  # the timed steps' gradients
    result = run_loop(settings, model, optimizer, lambda step: forward_backward(step, choice.precision), dist, ema=ema)
    return dataclasses.replace(result, precision=choice.describe())
