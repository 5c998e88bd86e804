"""A small video-text matcher: does this latent clip show what this prompt says?

Why: the built-in DiT's clips of one prompt differ a lot from seed to seed; a few of a prompt's
candidates get its count, colours and motion right where the first one does not
(`benchmarks/candidate_spread_probe.py`). Picking the best of several candidates with a learned
scorer is how DALL-E reranked with CLIP; here the scorer is trained by our own recipe on the
same cached latents and captions the DiT trains on, with hard negatives: the caption of the
clip's own scene with one attribute changed (`kinema.train.matcher_data`). It reads latents,
not pixels, so candidates are scored before any is decoded.

The clip's latent patches go through a few transformer layers of their own (once per clip,
however many captions it is scored against); then a class token and the prompt's (frozen
encoder's) token states attend to each other and, by cross-attention, to the clip's features,
and the class token gives the match logit. Words thus meet the video at every fusion layer (a
cross-encoder, which binds "red" to the ball on the left) while training pays for the video
layers once per clip, not once per caption. Positions enter as fixed Fourier features of each
patch's latent frame, row and column (and their fractions of the grid), so any bucket size works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from kinema.models.io import register_model
from kinema.models.layers import count_params


@dataclass
class MatcherConfig:
    latent_channels: int = 8
    text_dim: int = 384
    hidden: int = 128
    video_depth: int = 3  # self-attention layers over the clip's patches
    fusion_depth: int = 2  # layers in which the class token and words attend to each other and to the clip
    heads: int = 4
    patch: tuple[int, int, int] = (1, 2, 2)  # (pt, ph, pw), as the DiT's
    position_frequencies: int = 8

    def __post_init__(self) -> None:
        self.patch = tuple(self.patch)
        if self.hidden % self.heads:
            raise ValueError("hidden must be divisible by heads")
        if len(self.patch) != 3 or min(self.patch) < 1:
            raise ValueError(f"patch must be three positive ints, got {self.patch}")


def _fourier(values: torch.Tensor, frequencies: int) -> torch.Tensor:
    """[N, A] real positions -> [N, A * 2 * frequencies] sin/cos features at octave frequencies."""
    scales = (2.0 ** torch.arange(frequencies, dtype=values.dtype, device=values.device)) * (math.pi / 16.0)
    angles = values[..., None] * scales
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


def grid_features(grid: tuple[int, int, int], frequencies: int, device: torch.device | None = None) -> torch.Tensor:
    """[N, 6 * 2 * frequencies]: indices and fractions (x16) of each token's frame, row and column."""
    axes = torch.meshgrid(*(torch.arange(n, dtype=torch.float32, device=device) for n in grid), indexing="ij")
    index = torch.stack([a.flatten() for a in axes], dim=-1)
    fraction = torch.stack([(a.flatten() + 0.5) / n * 16.0 for a, n in zip(axes, grid)], dim=-1)
    return _fourier(torch.cat([index, fraction], dim=-1), frequencies)


@register_model(MatcherConfig)
class VideoTextMatcher(nn.Module):
    """forward(latents [B, C, T', h, w] normalised, text [B, L, D], text_mask [B, L]) -> logits [B].

    `encode_video` + `score` split the same computation, so one clip's features serve several captions.
    """

    def __init__(self, config: MatcherConfig):
        super().__init__()
        self.config = c = config
        pt, ph, pw = c.patch
        self.video_in = nn.Linear(c.latent_channels * pt * ph * pw, c.hidden)
        self.position_in = nn.Linear(6 * 2 * c.position_frequencies, c.hidden)
        self.text_in = nn.Linear(c.text_dim, c.hidden)
        self.type_embed = nn.Parameter(torch.zeros(2, c.hidden))  # video, text
        self.cls = nn.Parameter(torch.zeros(1, 1, c.hidden))
        video_layer = nn.TransformerEncoderLayer(c.hidden, c.heads, 4 * c.hidden, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.video_blocks = nn.TransformerEncoder(video_layer, c.video_depth, enable_nested_tensor=False, norm=nn.LayerNorm(c.hidden))
        fusion_layer = nn.TransformerDecoderLayer(c.hidden, c.heads, 4 * c.hidden, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.fusion_blocks = nn.TransformerDecoder(fusion_layer, c.fusion_depth)
        self.norm = nn.LayerNorm(c.hidden)
        self.head = nn.Linear(c.hidden, 1)
        nn.init.normal_(self.cls, std=0.02)
        nn.init.normal_(self.type_embed, std=0.02)

    def tokens(self, latents: torch.Tensor) -> torch.Tensor:
        b, ch, t, h, w = latents.shape
        pt, ph, pw = self.config.patch
        if t % pt or h % ph or w % pw:
            raise ValueError(f"latent grid {(t, h, w)} is not a multiple of the patch {self.config.patch}")
        x = latents.reshape(b, ch, t // pt, pt, h // ph, ph, w // pw, pw).permute(0, 2, 4, 6, 1, 3, 5, 7)
        x = self.video_in(x.reshape(b, (t // pt) * (h // ph) * (w // pw), -1))
        pos = grid_features((t // pt, h // ph, w // pw), self.config.position_frequencies, latents.device).to(x.dtype)
        return x + self.position_in(pos)[None] + self.type_embed[0]

    def encode_video(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, C, T', h, w] -> clip features [B, N, hidden]."""
        return self.video_blocks(self.tokens(latents))

    def score(self, video: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Logits [B] for clip features [B, N, hidden] against text [B, L, D]."""
        words = self.text_in(text.to(video.dtype)) + self.type_embed[1]
        b = words.shape[0]
        x = torch.cat([self.cls.expand(b, -1, -1).to(words.dtype), words], dim=1)
        keep = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=x.device), text_mask.bool()], dim=1)
        x = self.fusion_blocks(x, video, tgt_key_padding_mask=~keep)
        return self.head(self.norm(x[:, 0])).squeeze(-1)

    def forward(self, latents: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        return self.score(self.encode_video(latents), text, text_mask)

    def num_params(self) -> dict[str, int]:
        return {"total": count_params(self)}
