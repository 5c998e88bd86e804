"""Classifier-free guidance (with negative prompts).

`v = v_uncond + scale * (v_cond - v_uncond)`. The "unconditional" branch is
whatever text the caller passes as `uncond_*`: the empty prompt's embedding by
default, or the negative prompt's, which then pushes the sample away from it.
Both branches run in one batched forward (batch 2B) because on every backend
one big matmul beats two small ones; scale 1 is plain conditional sampling
and skips the second branch entirely.
"""

from __future__ import annotations

from typing import Any

import torch


def _pad_tokens(hidden: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad text to `length` tokens (padding is masked out, so it changes nothing)."""
    extra = length - hidden.shape[1]
    if extra == 0:
        return hidden, mask
    hidden = torch.cat([hidden, hidden.new_zeros(hidden.shape[0], extra, hidden.shape[2])], dim=1)
    mask = torch.cat([mask, mask.new_zeros(mask.shape[0], extra)], dim=1)
    return hidden, mask


def _double(value: Any) -> Any:
    """Repeat a per-sample tensor for the two branches; leave everything else alone."""
    return torch.cat([value, value], dim=0) if isinstance(value, torch.Tensor) else value


def cfg_velocity(
    model: Any,
    x: torch.Tensor,
    t: torch.Tensor,
    cond_text: torch.Tensor,
    cond_mask: torch.Tensor,
    uncond_text: torch.Tensor,
    uncond_mask: torch.Tensor,
    scale: float,
    **kw: Any,
) -> torch.Tensor:
    """Guided velocity from `model(x, t, text, text_mask, **kw)`.

    `t` may be a 0-d tensor (as samplers pass it) or a `[B]` tensor; extra
    keyword tensors (`cond`, `camera`) are batch-first and shared by both branches.
    """
    batch = x.shape[0]
    t = t.reshape(-1).to(x.dtype).expand(batch) if t.numel() == 1 else t.to(x.dtype)
    if scale == 1.0:
        return model(x, t, cond_text, cond_mask, **kw)
    length = max(cond_text.shape[1], uncond_text.shape[1])
    cond_text, cond_mask = _pad_tokens(cond_text, cond_mask, length)
    uncond_text, uncond_mask = _pad_tokens(uncond_text, uncond_mask, length)
    v = model(
        torch.cat([x, x], dim=0),
        torch.cat([t, t], dim=0),
        torch.cat([cond_text, uncond_text], dim=0),
        torch.cat([cond_mask, uncond_mask], dim=0),
        **{k: _double(v) for k, v in kw.items()},
    )
    v_cond, v_uncond = v[:batch], v[batch:]
    return v_uncond + scale * (v_cond - v_uncond)
