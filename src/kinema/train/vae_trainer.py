"""Train the causal video VAE on random crops of clips held in RAM.

Why crops from a RAM pool: the VAE is fully convolutional, so small
spatio-temporal crops teach it the same local statistics as whole clips at a
fraction of the cost, and decoding a few hundred clips once removes video
decoding from the inner loop entirely (the Shapes World dataset is small).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kinema.errors import KinemaInputError
from kinema.models.io import config_from_dict, save_pretrained
from kinema.models.vae import vae_loss
from kinema.train.config import TrainConfig
from kinema.train.data import ClipRecord, load_clip, to_model_video
from kinema.train.distributed import DistInfo, wrap_model
from kinema.train.loop import LoopResult, LoopSettings, make_optimizer, run_loop_in_precision
from kinema.train.precision import autocast


def build_vae(model_fields: dict):
    """CausalVideoVAE from the config's `[vae.model]` table (unknown keys refused by name)."""
    from kinema.models.vae import CausalVideoVAE, VAEConfig

    try:
        return CausalVideoVAE(config_from_dict(VAEConfig, dict(model_fields)))
    except (ValueError, TypeError) as exc:
        raise KinemaInputError(f"[vae.model]: {exc}") from None


@dataclass
class CropPool:
    """Decoded clips (uint8 [T,H,W,3] each) and a deterministic crop sampler."""

    clips: list[np.ndarray]
    crop_size: int
    crop_frames: int

    @staticmethod
    def load(records: list[ClipRecord], num_clips: int, fps: float, crop_size: int, crop_frames: int, seed: int) -> "CropPool":
        usable = [r for r in records if r.bucket and r.bucket.num_frames >= crop_frames and min(r.bucket.height, r.bucket.width) >= crop_size]
        if not usable:
            raise KinemaInputError(f"no clip is at least {crop_size}x{crop_size} with {crop_frames} frames for VAE crops")
        rng = np.random.default_rng(seed)
        pick = rng.permutation(len(usable))[: max(1, num_clips)]
        return CropPool([load_clip(usable[i], fps) for i in sorted(pick)], crop_size, crop_frames)

    def batch(self, batch_size: int, rng: np.random.Generator) -> torch.Tensor:
        """[B,3,T,S,S] in [-1,1]; random clip, start frame, position and horizontal flip."""
        s, f = self.crop_size, self.crop_frames
        out = np.empty((batch_size, f, s, s, 3), dtype=np.uint8)
        for b in range(batch_size):
            clip = self.clips[int(rng.integers(len(self.clips)))]
            t0 = int(rng.integers(clip.shape[0] - f + 1))
            y0 = int(rng.integers(clip.shape[1] - s + 1))
            x0 = int(rng.integers(clip.shape[2] - s + 1))
            crop = clip[t0 : t0 + f, y0 : y0 + s, x0 : x0 + s]
            out[b] = crop[:, :, ::-1] if rng.random() < 0.5 else crop
        return to_model_video(out)


def train_vae(cfg: TrainConfig, records: list[ClipRecord], dist: DistInfo, out_dir: Path, checkpoint_dir: Path) -> LoopResult:
    """Train the VAE per `cfg.vae` and save it (fp32) to `out_dir` on rank 0."""
    v = cfg.vae
    torch.manual_seed(cfg.seed)
    model = build_vae(v.model)
    pool = CropPool.load(records, v.pool_clips, cfg.data.fps, v.crop_size, v.crop_frames, cfg.seed)
    net = wrap_model(model, dist)
    optimizer = make_optimizer(model, v.lr, v.weight_decay)

    def forward_backward(step: int, precision: str) -> tuple[float, int]:
        rng = np.random.default_rng([cfg.seed, 1, step, dist.rank])
        video = pool.batch(v.batch_size, rng)
        torch.manual_seed(cfg.seed * 1_000_003 + step * 97 + dist.rank)  # posterior sampling noise
        model.train()
        with autocast(precision):
            recon, mean, logvar = net(video)
        loss, _ = vae_loss(recon.float(), video, mean.float(), logvar.float(), v.kl_weight, salient_weight=v.salient_weight)
        loss.backward()
        return float(loss.detach()), v.batch_size

    settings = LoopSettings.for_stage("vae", v, cfg, checkpoint_dir)
    result = run_loop_in_precision(settings, model, optimizer, forward_backward, v.precision, dist)
    if dist.is_main:
        save_pretrained(model.eval(), out_dir)
    return result
