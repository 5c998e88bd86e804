"""Training the video-text matcher (`kinema.models.matcher`) on the DiT's latent cache.

Each step takes a batch of cached clips and pairs each with three captions: one of its own
(label 1), a hard negative (its own scene with one attribute changed, `matcher_data`; another
clip's caption when it has none) and another clip's caption (both label 0). The latents get a
little noise, as a sampler's last steps leave. Binary cross-entropy keeps the scores
comparable across clips, which is what ranking a prompt's candidates needs. The loop is the
VAE's and DiT's (`kinema.train.loop`): time budget, checkpoints, resume, EMA, progress bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kinema.models.matcher import MatcherConfig, VideoTextMatcher
from kinema.train.config import MatcherStageConfig
from kinema.train.distributed import DistInfo
from kinema.train.latents import LatentCache, pick_in_ranges, text_rows
from kinema.train.loop import EMA, LoopResult, LoopSettings, make_optimizer, run_loop_in_precision
from kinema.train.precision import autocast


@dataclass
class NegativeText:
    """Encoded hard-negative captions: clip k's are rows offsets[k]:offsets[k+1] of hidden."""

    hidden: torch.Tensor  # fp16 [V, L, D]
    lengths: torch.Tensor  # int [V]
    offsets: torch.Tensor  # int64 [clips + 1]


class MatcherBatches:
    """Step -> (latents [B, C, T', h, w] normalised and noised, text [3B, L, D], mask, labels [3B]):
    rows b, B + b and 2B + b of the text are clip b's own caption, hard negative and easy negative."""

    def __init__(self, cache: LatentCache, negatives: NegativeText | None, batch_size: int, noise_max: float, seed: int):
        self.cache, self.negatives = cache, negatives
        self.batch_size, self.noise_max, self.seed = batch_size, noise_max, seed
        self.keys = sorted(cache.latents)
        sizes = np.array([cache.latents[k].shape[0] for k in self.keys], dtype=np.float64)
        self.bucket_p = sizes / sizes.sum()
        c = cache.latent_mean.numel()
        self.mean, self.std = cache.latent_mean.view(1, c, 1, 1, 1), cache.latent_std.view(1, c, 1, 1, 1)
        self.num_clips = int(cache.clip_offsets.numel() - 1)

    def _own_caption(self, clips: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.cache.caption_ids[torch.as_tensor(pick_in_ranges(self.cache.clip_offsets, clips, rng))].numpy()

    def _other_clips(self, clips: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        other = rng.integers(self.num_clips - 1, size=len(clips))
        return other + (other >= clips)  # never the clip itself

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 7, step])
        key = self.keys[int(rng.choice(len(self.keys), p=self.bucket_p))]
        n = self.cache.latents[key].shape[0]
        rows = torch.as_tensor(rng.choice(n, size=min(self.batch_size, n), replace=False))
        clips = self.cache.clip_ids[key][rows].numpy()
        x0 = (self.cache.latents[key][rows].float() - self.mean) / self.std
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        s = torch.rand(x0.shape[0], generator=g).view(-1, 1, 1, 1, 1) * self.noise_max
        x = (1 - s) * x0 + s * torch.randn(x0.shape, generator=g)
        cached = (self.cache.text_hidden, self.cache.text_lengths)
        own = text_rows(*cached, self._own_caption(clips, rng))
        easy = text_rows(*cached, self._own_caption(self._other_clips(clips, rng), rng))
        hard = self._hard(clips, easy, rng)
        width = max(own[0].shape[1], easy[0].shape[1], hard[0].shape[1])
        texts = torch.cat([F.pad(t, (0, 0, 0, width - t.shape[1])) for t, _ in (own, hard, easy)])
        lengths = torch.cat([n for _, n in (own, hard, easy)])
        b = x.shape[0]
        labels = torch.cat([torch.ones(b), torch.zeros(2 * b)])
        return x, texts, torch.arange(width)[None, :] < lengths[:, None], labels

    def _hard(self, clips: np.ndarray, easy: tuple[torch.Tensor, torch.Tensor], rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Each clip's hard negative; a clip without one (no scene) keeps its easy negative."""
        neg = self.negatives
        has = None if neg is None else neg.offsets[clips + 1] > neg.offsets[clips]
        if has is None or not bool(has.any()):
            return easy
        pick = np.minimum(pick_in_ranges(neg.offsets, clips, rng), neg.hidden.shape[0] - 1)  # an empty range's start may be past the end
        hard = text_rows(neg.hidden, neg.lengths, pick)
        width = max(hard[0].shape[1], easy[0].shape[1])
        text = torch.where(has.view(-1, 1, 1), F.pad(hard[0], (0, 0, 0, width - hard[0].shape[1])), F.pad(easy[0], (0, 0, 0, width - easy[0].shape[1])))
        return text, torch.where(has, hard[1], easy[1])


def train_matcher(
    stage: MatcherStageConfig, model_config: MatcherConfig, seed: int, sources: Sequence[MatcherBatches], settings: LoopSettings, dist: DistInfo
) -> tuple[LoopResult, VideoTextMatcher]:
    """Train per `stage` (optimizer, EMA, precision); returns (LoopResult, EMA matcher).

    Step k takes its batch from `sources[k % len(sources)]` (the recipe passes one; a probe may
    alternate real latents with other ones). Binary cross-entropy, positives weighted 2 (1 per 2 negatives).
    """
    torch.manual_seed(seed)
    model = VideoTextMatcher(model_config)
    optimizer = make_optimizer(model, stage.lr, stage.weight_decay)
    ema = EMA(model, stage.ema_decay)
    pos_weight = torch.tensor(2.0)

    def forward_backward(step: int, precision: str) -> tuple[float, int]:
        x, text, mask, labels = sources[step % len(sources)](step)
        model.train()
        with autocast(precision):
            video = model.encode_video(x)  # once per clip, shared by its three captions
            logits = model.score(video.repeat(3, 1, 1), text, mask)
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels, pos_weight=pos_weight)
        loss.backward()
        return float(loss.item()), x.shape[0]

    result = run_loop_in_precision(settings, model, optimizer, forward_backward, stage.precision, dist, ema=ema)
    return result, ema.model


def load_negatives(path: Path) -> NegativeText:
    from safetensors.torch import load_file

    t = load_file(str(path))
    return NegativeText(t["hidden"], t["lengths"], t["offsets"])
