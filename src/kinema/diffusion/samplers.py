"""ODE samplers for rectified flow, as short functions over a denoiser (the k-diffusion habit).

Every sampler has the same signature::

    sampler(velocity_fn, x, timesteps, progress=None) -> x at t = 0

`velocity_fn(x, t)` returns the velocity `noise - x0` at the 0-d time tensor `t`
(guidance, conditioning and the model all live inside it, so a sampler knows
nothing about them). `timesteps` is the decreasing schedule from
`flow.sampling_timesteps` (`steps + 1` values from 1 to 0); `progress(step,
total)` is called after each step so the caller can draw a bar.

The trade-off between them is model evaluations per step: Euler takes one,
Heun two (but needs far fewer steps for the same error), DPM-Solver++(2M) one
but reuses the previous step's prediction to be second order.
"""

from __future__ import annotations

import math
from typing import Callable, Protocol

import torch

from kinema.diffusion.flow import clean_estimate

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Progress = Callable[[int, int], None]


class Sampler(Protocol):
    def __call__(self, velocity_fn: VelocityFn, x: torch.Tensor, timesteps: torch.Tensor, progress: Progress | None = None) -> torch.Tensor: ...


def _check(timesteps: torch.Tensor) -> int:
    if timesteps.ndim != 1 or timesteps.numel() < 2:
        raise ValueError("timesteps must be a 1-d tensor with at least two values (steps + 1)")
    return timesteps.numel() - 1


def euler(velocity_fn: VelocityFn, x: torch.Tensor, timesteps: torch.Tensor, progress: Progress | None = None) -> torch.Tensor:
    """First order: one model call per step."""
    total = _check(timesteps)
    for i in range(total):
        t, t_next = timesteps[i], timesteps[i + 1]
        x = x + (t_next - t) * velocity_fn(x, t)
        if progress is not None:
            progress(i + 1, total)
    return x


def heun(velocity_fn: VelocityFn, x: torch.Tensor, timesteps: torch.Tensor, progress: Progress | None = None) -> torch.Tensor:
    """Second order (trapezoidal corrector): two calls per step, one on the last step.

    The last step lands on t = 0 where the velocity of a model trained on
    t in (0, 1] is least reliable, so it stays an Euler step (as in k-diffusion / EDM).
    """
    total = _check(timesteps)
    for i in range(total):
        t, t_next = timesteps[i], timesteps[i + 1]
        dt = t_next - t
        v = velocity_fn(x, t)
        x_euler = x + dt * v
        if float(t_next) == 0.0:
            x = x_euler
        else:
            x = x + dt * 0.5 * (v + velocity_fn(x_euler, t_next))
        if progress is not None:
            progress(i + 1, total)
    return x


def _log_snr(t: float) -> float:
    """lambda = log(alpha / sigma) with alpha = 1 - t, sigma = t (infinite at the ends)."""
    if t <= 0.0:
        return math.inf
    if t >= 1.0:
        return -math.inf
    return math.log(1.0 - t) - math.log(t)


def dpmpp_2m(velocity_fn: VelocityFn, x: torch.Tensor, timesteps: torch.Tensor, progress: Progress | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) in the data (x0) parameterisation: one call per step, second order.

    With alpha = 1 - t and sigma = t, the prediction is `x0 = x - t v` and one
    step is `x' = (sigma'/sigma) x + alpha' (1 - e^{-h}) D` where h is the step
    in log-SNR and D extrapolates x0 linearly from the previous step's
    prediction. The first step (from t = 1, where log-SNR is -inf) and the last
    (to t = 0) fall back to first order, exactly like the reference solver.
    """
    total = _check(timesteps)
    ts = [float(v) for v in timesteps]
    x0_prev: torch.Tensor | None = None
    h_prev = math.inf
    for i in range(total):
        t, t_next = ts[i], ts[i + 1]
        x0 = clean_estimate(x, velocity_fn(x, timesteps[i]), timesteps[i])
        if t_next <= 0.0:
            x = x0
        else:
            lam, lam_next = _log_snr(t), _log_snr(t_next)
            h = lam_next - lam
            scale = -math.expm1(-h) if math.isfinite(h) else 1.0  # 1 - e^{-h}
            if x0_prev is None or not math.isfinite(h_prev) or not math.isfinite(h):
                d = x0
            else:
                r = h_prev / h
                d = (1.0 + 1.0 / (2.0 * r)) * x0 - (1.0 / (2.0 * r)) * x0_prev
            x = (t_next / t) * x + (1.0 - t_next) * scale * d
            h_prev = h
        x0_prev = x0
        if progress is not None:
            progress(i + 1, total)
    return x


SAMPLERS: dict[str, Sampler] = {"euler": euler, "heun": heun, "dpmpp-2m": dpmpp_2m}


def model_calls(sampler: str, steps: int) -> int:
    """Velocity evaluations a sampler makes for `steps` steps (for cost estimates and progress)."""
    return 2 * steps - 1 if sampler == "heun" else steps
