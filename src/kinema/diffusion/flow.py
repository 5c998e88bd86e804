"""Rectified flow (flow matching) as small pure functions.

Convention: `x_t = (1 - t) * x0 + t * noise`, so `t = 1` is pure noise and the
model predicts the velocity `noise - x0`. Sampling integrates dx/dt = v from
t = 1 down to t = 0.

The shift `t' = s t / (1 + (s - 1) t)` (SD3, Open-Sora) moves timesteps toward
the noisy end; bigger videos (more latent tokens) carry more redundant signal,
so they need more noise to destroy the same information, hence `s` grows with
the token count.
"""

from __future__ import annotations

import math

import torch


def sample_logit_normal(batch: int, generator: torch.Generator | None = None, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """Training timesteps: sigmoid of a normal; concentrates on mid-range t, where the loss is hardest."""
    u = torch.randn(batch, generator=generator) * std + mean
    return torch.sigmoid(u)


def sample_training_t(batch: int, generator: torch.Generator | None = None, mean: float = 0.0, std: float = 1.0, uniform_fraction: float = 0.0) -> torch.Tensor:
    """Logit-normal timesteps with a share drawn uniformly from (0, 1).

    Why the uniform share: a logit-normal(0, 1) almost never draws t > 0.9
    (about 1.4% of samples), yet sampling starts at t = 1, where the first
    steps decide layout, count and motion. A uniform share keeps both ends
    trained. With `uniform_fraction = 0` the draws are exactly `sample_logit_normal`'s.
    """
    t = sample_logit_normal(batch, generator, mean, std)
    if uniform_fraction > 0.0:
        uniform = torch.rand(batch, generator=generator)
        pick = torch.rand(batch, generator=generator) < uniform_fraction
        t = torch.where(pick, uniform, t)
    return t


def shift_for_tokens(num_tokens: int, base_tokens: int = 64, base_shift: float = 1.0, max_tokens: int = 1024, max_shift: float = 3.0) -> float:
    """Resolution- and length-aware shift: linear in log(token count) between two anchor points."""
    if num_tokens <= 0:
        raise ValueError("num_tokens must be positive")
    a = math.log(base_tokens)
    b = math.log(max_tokens)
    frac = (math.log(num_tokens) - a) / (b - a)
    return float(base_shift + frac * (max_shift - base_shift)) if frac > 0 else base_shift


def apply_shift(t: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * t / (1.0 + (shift - 1.0) * t)


def frame_correlated_noise(shape: tuple[int, ...], generator: torch.Generator | None = None, correlation: float = 0.0) -> torch.Tensor:
    """Standard normal noise [B, C, T, H, W] whose latent frames share a part: corr(frame i, frame j) = `correlation`.

    Why: PYoCo's mixed noise prior (Ge et al. 2023). Independent noise per frame
    hides what stays the same across frames as much as what changes; a shared part
    lets the model keep one object one object from the first, noisiest steps and
    spend its capacity on how frames differ. Every entry stays N(0, 1), so a flow
    trained and sampled with the same `correlation` is still an exact flow; 0 gives
    exactly `torch.randn(shape, generator=generator)`. In a 50-minute trial at 0.5
    the objects pulsed as often as without it (docs/benchmarks.md); the built-in
    recipe keeps 0.
    """
    if not 0.0 <= correlation < 1.0:
        raise ValueError(f"frame noise correlation must be in [0, 1), got {correlation}")
    independent = torch.randn(shape, generator=generator)
    if correlation == 0.0:
        return independent
    if len(shape) != 5:
        raise ValueError(f"frame-correlated noise needs a [B, C, T, H, W] shape, got {tuple(shape)}")
    b, c, _, h, w = shape
    shared = torch.randn((b, c, 1, h, w), generator=generator)
    return math.sqrt(correlation) * shared + math.sqrt(1.0 - correlation) * independent


def per_sample(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor | float:
    """Times shaped to broadcast over `like` [B, ...]: one per sample ([B]) gets trailing unit dims; a scalar stays."""
    if isinstance(t, torch.Tensor) and t.ndim == 1:
        return t.view(-1, *([1] * (like.ndim - 1)))
    return t


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    tb = per_sample(t, x0)
    return (1.0 - tb) * x0 + tb * noise


def clean_estimate(x_t: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """x0 = x_t - t v: the clean latents a velocity implies at time t (a scalar, or one per sample).

    The inverse of `add_noise` given the velocity, shared by the sampler that
    extrapolates it and by self-conditioning, which trains and samples on it.
    """
    return x_t - per_sample(t, x_t) * velocity


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def noise_estimate(x_t: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """The noise a velocity implies at time t: x_t + (1 - t) v, the partner of `clean_estimate`."""
    return x_t + (1.0 - per_sample(t, x_t)) * velocity


def rectified_noise(noise: torch.Tensor, estimate: torch.Tensor, t: torch.Tensor, strength: float) -> torch.Tensor:
    """DREAM's training noise (Zhou et al. 2024): the true noise moved towards the model's own estimate of it.

    Why: sampling feeds the model states built from its own noise estimates,
    training from the true noise only, so the model never learns to correct its
    own errors (exposure bias). Training on x_t = (1 - t) x0 + t n' with
    n' = n + strength * t * (estimate - n), and the velocity target n' - x0, keeps
    the clean target x0 while the input carries the model's error, weighted by
    the noise level t (DREAM's adaptive lambda, its sqrt(1 - alpha_bar) here).
    """
    return noise + strength * per_sample(t, noise) * (estimate.to(noise.dtype) - noise)


def flow_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean-squared error between predicted and true velocity; with `weight` (broadcastable), the weighted mean."""
    se = (pred.float() - target.float()) ** 2
    if weight is None:
        return se.mean()
    w = weight.float().expand_as(se)
    return (w * se).sum() / w.sum()


def temporal_difference_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean-squared error of the velocity error's change from one latent frame to the next ([B, C, T, H, W]).

    Why: an error that is the same in every frame (a misplaced or miscoloured
    object) cancels here, while getting the motion wrong (an object that stays
    put, or pulses, where it should move) does not; added to `flow_loss`, it
    weights what changes over time above what does not, which the plain loss
    spends little gradient on. Since the velocity error is the clean-latent
    error divided by t, this is the same as asking for the right frame-to-frame
    change of the predicted clean video.
    """
    if pred.ndim != 5 or pred.shape[2] < 2:
        raise ValueError(f"temporal_difference_loss needs [B, C, T, H, W] with T >= 2, got {tuple(pred.shape)}")
    err = pred.float() - target.float()
    return ((err[:, :, 1:] - err[:, :, :-1]) ** 2).mean()


def sampling_timesteps(steps: int, shift: float) -> torch.Tensor:
    """`steps + 1` decreasing times from 1 to 0, shifted like training."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return apply_shift(t, shift).to(torch.float32)
