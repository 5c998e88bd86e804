"""Small building blocks shared by the models.

Only things with more than one user live here; each model file keeps its own
architecture readable top to bottom.
"""

from __future__ import annotations

import torch
from torch import nn


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def as_channel_tensor(value: list[float] | float, channels: int, like: torch.Tensor) -> torch.Tensor:
    """Per-channel statistics (a scalar or one value per channel) shaped to broadcast over [B, C, T, H, W]."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        return t
    if t.numel() != channels:
        raise ValueError(f"expected {channels} per-channel values, got {t.numel()}")
    return t.view(1, channels, 1, 1, 1)
