"""Train the DiT with rectified flow on cached latents and caption embeddings.

Each step: a bucket-uniform batch of normalised latents x0, one random caption
per clip (replaced by the empty prompt with probability `caption_dropout`, so
the same model also predicts the unconditional velocity CFG needs),
t ~ logit-normal (with a uniform share) then shifted for the batch's token count, x_t = (1-t) x0 + t ε,
and an MSE on the velocity ε - x0.

Each sample also gets a frame-conditioning task (kinema.conditioning.tasks:
text only, first/last frame, both, continuation, keyframes) mixed by weight,
and its clip's known camera motion as a signal, dropped for a share of
samples so the prompt alone still steers the camera.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from kinema.conditioning.camera import CAMERA_DIM
from kinema.conditioning.tasks import FrameLatents, build_cond, sample_tasks
from kinema.diffusion.camera_noise import camera_warped_noise
from kinema.diffusion.flow import (
    add_noise,
    apply_shift,
    clean_estimate,
    flow_loss,
    frame_correlated_noise,
    noise_estimate,
    rectified_noise,
    sample_training_t,
    shift_for_tokens,
    temporal_difference_loss,
    velocity_target,
)
from kinema.errors import KinemaInputError
from kinema.models.io import config_from_dict
from kinema.models.vae import CausalVideoVAE
from kinema.train.buckets import BucketSampler
from kinema.train.config import DiTStageConfig, TrainConfig
from kinema.train.curriculum import easy_step
from kinema.train.distributed import DistInfo, wrap_model
from kinema.train.latents import LatentCache, pick_in_ranges, text_rows
from kinema.train.loop import EMA, LoopSettings, make_optimizer, run_loop_in_precision
from kinema.train.muon import MuonWithAdamW, dit_hidden_matrix
from kinema.train.precision import autocast
from kinema.train.scene_labels import NUM_CLASSES, object_weights, scene_loss


def build_dit(model_fields: dict, latent_channels: int, text_dim: int):
    """DiT from `[dit.model]`; latent channels and text width come from the VAE and encoder."""
    from kinema.models.dit import DiT, DiTConfig

    fields = {"camera_dim": CAMERA_DIM, **model_fields, "latent_channels": latent_channels, "text_dim": text_dim}
    try:
        return DiT(config_from_dict(DiTConfig, fields))
    except (ValueError, TypeError) as exc:
        raise KinemaInputError(f"[dit.model]: {exc}") from None


def check_init_from(directory: str | Path) -> Path:
    """`dit.init_from` as a path, or a clear error when it holds no saved model."""
    path = Path(directory)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise KinemaInputError(f"dit.init_from: {path} is not a saved DiT (it needs config.json and model.safetensors)")
    return path


def warm_start(model: torch.nn.Module, directory: str | Path) -> None:
    """Load a saved DiT's weights into `model` (`dit.init_from`), refusing one of another shape.

    Why: finetuning (the built-in model on your own footage, or a narrow first phase before the whole
    dataset) needs the weights and nothing else of the earlier run: optimizer, schedule and step restart.
    A DiT may switch on an input the saved one lacks (`ADDED_INPUT_FIELDS`): its weights start at zero,
    so the warm-started model computes exactly what the saved one did until training moves them.
    """
    from kinema.models.dit import ADDED_INPUT_FIELDS, POSITION_ONLY_FIELDS
    from kinema.models.io import load_pretrained

    path = check_init_from(directory)
    source = load_pretrained(path)
    if type(source) is not type(model):
        raise KinemaInputError(f"dit.init_from: {path} holds a {type(source).__name__}, not a {type(model).__name__}")
    ours, theirs = vars(model.config), vars(source.config)
    added = [k for k in ADDED_INPUT_FIELDS if ours.get(k) and not theirs.get(k)]  # new zero-initialised inputs
    differ = [f"{k} {theirs.get(k)!r} != {v!r}" for k, v in ours.items() if theirs.get(k) != v and k not in POSITION_ONLY_FIELDS and k not in added]
    if differ:
        raise KinemaInputError(f"dit.init_from: {path} does not match [dit.model] and the data: " + "; ".join(differ))
    result = model.load_state_dict(source.state_dict(), strict=not added)
    if added:  # only the added inputs' weights may be missing; they keep their zero initialisation
        prefixes = tuple(p for k in added for p in ADDED_INPUT_FIELDS[k])
        stray = [k for k in result.missing_keys if not k.startswith(prefixes)] + list(result.unexpected_keys)
        if stray:
            raise KinemaInputError(f"dit.init_from: {path}'s weights do not fit this DiT: " + ", ".join(stray))


def batch_shift(d: DiTStageConfig, patch: tuple[int, int, int], latent_shape: tuple[int, ...]) -> float:
    """The timestep shift for this latent size (same formula the sampler uses)."""
    _, t, h, w = latent_shape[-4:]
    tokens = (t // patch[0]) * (h // patch[1]) * (w // patch[2])
    return shift_for_tokens(tokens, d.shift_base_tokens, d.shift_base_shift, d.shift_max_tokens, d.shift_max_shift)


class DiTBatches:
    """Turns (step, rank) into a training batch drawn from the RAM cache."""

    def __init__(
        self, cache: LatentCache, cfg: TrainConfig, dist: DistInfo, scene_labels: dict[str, torch.Tensor] | None = None, easy: dict[str, np.ndarray] | None = None
    ):
        """`easy`: per bucket, the cache rows of the curriculum's easy clips (kinema.train.curriculum.easy_items)."""
        self.cache = cache
        self.scene_labels = scene_labels
        self.cfg = cfg
        self.rank = dist.rank
        keys = sorted(cache.latents)
        self.offsets, bucket_of, start = {}, [], 0
        for k in keys:
            self.offsets[k] = start
            n = cache.latents[k].shape[0]
            bucket_of += [k] * n
            start += n
        self.sampler = BucketSampler(bucket_of, cfg.dit.batch_size, cfg.seed, dist.rank, dist.world_size, cfg.data.bucket_weights or None)
        self.easy_sampler, self.easy_index = None, None
        if easy is not None:
            self.easy_index = np.concatenate([self.offsets[k] + easy[k] for k in keys if len(easy.get(k, ()))])
            easy_buckets = [k for k in keys for _ in range(len(easy.get(k, ())))]
            weights = {k: w for k, w in (cfg.data.bucket_weights or {}).items() if k in easy_buckets} or None
            self.easy_sampler = BucketSampler(easy_buckets, cfg.dit.batch_size, cfg.seed, dist.rank, dist.world_size, weights)
        c = cache.latent_mean.numel()
        self.mean = cache.latent_mean.view(1, c, 1, 1, 1)
        self.std = cache.latent_std.view(1, c, 1, 1, 1)

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, np.random.Generator]:
        """(x0 normalised [B,C,T',h,w], text [B,L,D], mask [B,L], cond [B,C+1,T',h,w] or None,
        camera [B,4], rng for the rest of the step)."""
        key, rows = self.rows(step)
        x0 = (self.cache.latents[key][rows].float() - self.mean) / self.std
        rng = np.random.default_rng([self.cfg.seed, 2, step, self.rank])
        clips = self.cache.clip_ids[key][rows].numpy()
        cap, drop = self._captions(clips, rng)
        d = self.cfg.dit
        cond = None
        if d.uses_frame_tasks:
            images = FrameLatents((self.cache.frame_latents[key][rows].float() - self.mean[:, :, 0]) / self.std[:, :, 0], self.cache.frame_index[key][rows])
            cond = build_cond(x0, sample_tasks(d.tasks, len(rows), rng), images, rng)
        camera = self.cache.camera[key][rows].clone()
        camera[torch.as_tensor(rng.random(len(rows)) < d.camera_dropout)] = 0.0
        if d.camera_caption_free > 0 and self.cache.signal_ids is not None:
            cap = self._captions_without_camera(cap, clips, drop, camera, rng)
        text, mask = self._text(cap)
        return x0, text, mask, cond, camera, rng

    def _captions(self, clips: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(one random caption row per clip, which were dropped to the empty prompt)."""
        cap = self.cache.caption_ids[torch.as_tensor(pick_in_ranges(self.cache.clip_offsets, clips, rng))]
        drop = torch.as_tensor(rng.random(len(clips)) < self.cfg.dit.caption_dropout)
        return torch.where(drop, torch.zeros_like(cap), cap), drop  # row 0 = the empty prompt

    def _text(self, cap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Caption rows -> (hidden [B,L,D] cut to the longest, mask [B,L])."""
        text, lengths = text_rows(self.cache.text_hidden, self.cache.text_lengths, cap)
        return text, torch.arange(text.shape[1])[None, :] < lengths[:, None]

    def is_image_step(self, step: int) -> bool:
        """Whether step `step` trains on single frames (`dit.image_fraction`); the same on every rank."""
        f = self.cfg.dit.image_fraction
        return f > 0 and np.random.default_rng([self.cfg.seed, 3, step]).random() < f

    def image_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, np.random.Generator]:
        """Like `__call__`, for an image step: `image_batch_multiplier` × the batch of one-frame latents [B,C,1,h,w].

        Each image is one of its clip's frames encoded alone (frame 0, or the
        cached inner or last frame), which is how the engine encodes a given
        image; the caption is one of the clip's, the task text-only, no camera.
        """
        d = self.cfg.dit
        key, idx = self.sampler.batch(step)
        rng = np.random.default_rng([self.cfg.seed, 4, step, self.rank])
        members = self.sampler.members[key]
        extra = members[rng.integers(0, len(members), size=len(idx) * (d.image_batch_multiplier - 1))]
        rows = torch.as_tensor(np.concatenate([idx, extra]) - self.offsets[key])
        which = torch.as_tensor(rng.integers(0, 3, size=len(rows)))  # 0: frame 0, 1: last, 2: inner
        first = self.cache.latents[key][rows, :, 0]
        alone = self.cache.frame_latents[key][rows, (which - 1).clamp(min=0)]
        frames = torch.where((which == 0).view(-1, 1, 1, 1), first, alone).float()
        x0 = ((frames - self.mean[:, :, 0]) / self.std[:, :, 0]).unsqueeze(2)
        cap, _ = self._captions(self.cache.clip_ids[key][rows].numpy(), rng)
        text, mask = self._text(cap)
        b, c = x0.shape[:2]
        cond = x0.new_zeros(b, c + 1, *x0.shape[2:]) if d.uses_frame_tasks else None
        return x0, text, mask, cond, torch.zeros(b, CAMERA_DIM), rng

    def scene_targets(self, step: int) -> torch.Tensor | None:
        """Scene labels [B, 4, T', gh, gw] of the batch `__call__(step)` returns (the sampler is stateless)."""
        if self.scene_labels is None:
            return None
        key, rows = self.rows(step)
        return self.scene_labels[key][rows]

    def rows(self, step: int) -> tuple[str, torch.Tensor]:
        """(bucket key, cache rows) of step `step`'s batch: from the curriculum's easy clips on an easy step."""
        if self.easy_sampler is not None and easy_step(step, self.cfg.dit.curriculum_steps, self.cfg.seed):
            key, picks = self.easy_sampler.batch(step)
            idx = self.easy_index[picks]
        else:
            key, idx = self.sampler.batch(step)
        return key, torch.as_tensor(idx - self.offsets[key])

    def _captions_without_camera(self, cap: torch.Tensor, clips: np.ndarray, dropped: torch.Tensor, camera: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Swap in a caption that leaves the camera unnamed, for a share of the clips whose camera is given.

        Why: when every caption of a moving-camera clip names the move, the camera
        signal is redundant and the model learns to ignore it; a request that gives
        only the signal then gets a static camera.
        """
        offsets, ids = self.cache.signal_offsets, self.cache.signal_ids
        assert offsets is not None and ids is not None
        has = (offsets[clips + 1] > offsets[clips]).numpy()
        swap = (rng.random(len(clips)) < self.cfg.dit.camera_caption_free) & has & (camera[:, -1] > 0).numpy() & ~dropped.numpy()
        pick = np.where(swap, pick_in_ranges(offsets, clips, rng), 0)
        return torch.where(torch.as_tensor(swap), ids[torch.as_tensor(pick)], cap)


def self_condition_input(model, xt: torch.Tensor, t: torch.Tensor, text: torch.Tensor, mask: torch.Tensor, cond: torch.Tensor | None, camera: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The clean-latent estimate a self-conditioned DiT reads while training (Chen et al. 2022).

    Half the samples get the model's own estimate x_t - t v from a gradient-free
    forward pass without one (as sampling's first step), the rest zeros, so the
    model learns both to start and to refine. Only the chosen half runs the extra pass.
    """
    pick = torch.rand(xt.shape[0], generator=g) < 0.5
    estimate = torch.zeros_like(xt)
    if pick.any():
        i = pick.nonzero().squeeze(1)
        with torch.no_grad():
            v = model(xt[i], t[i], text[i], mask[i], None if cond is None else cond[i], camera[i]).float()
        estimate[i] = clean_estimate(xt[i], v, t[i])
    return estimate


def own_noise_estimate(model, xt: torch.Tensor, t: torch.Tensor, text: torch.Tensor, mask: torch.Tensor, cond: torch.Tensor | None, camera: torch.Tensor, precision: str) -> torch.Tensor:
    """The noise the model itself reads in x_t (gradient-free, eval mode), for `dit.rectify`."""
    model.eval()
    with torch.no_grad(), autocast(precision):
        v = model(xt, t, text, mask, cond, camera).float()
    return noise_estimate(xt, v, t)


def masked_step_keep(d: DiTStageConfig, model, latent_shape: tuple[int, ...], rng: np.random.Generator, g: torch.Generator) -> torch.Tensor | None:
    """The tokens this step's DiT keeps (masked training), or None for an ordinary step."""
    if d.mask_ratio == 0 or rng.random() >= d.mask_step_fraction:
        return None
    from kinema.models.dit import keep_indices

    tokens = math.prod(model.grid(*latent_shape[2:]))
    return keep_indices(latent_shape[0], tokens, d.mask_ratio, g)


def train_dit(
    cfg: TrainConfig,
    cache: LatentCache,
    text_dim: int,
    dist: DistInfo,
    checkpoint_dir: Path,
    budget_minutes: float | None = None,
    scene_labels: dict[str, torch.Tensor] | None = None,
    easy: dict[str, np.ndarray] | None = None,
):
    """Train per `cfg.dit`; returns (LoopResult, EMA model) — the EMA weights are what ships.

    With `dit.scene_loss_weight` > 0 or `dit.object_loss_weight` != 1, `scene_labels`
    (kinema.train.scene_labels.label_table) adds the scene loss and/or weights the velocity loss
    on objects; `dit.temporal_loss_weight` > 0 adds the loss on the velocity error's change between
    latent frames. The loss the loop reports stays the plain velocity loss, so runs compare.
    """
    d = cfg.dit
    torch.manual_seed(cfg.seed)
    latent_channels = cache.latent_mean.numel()
    if d.uses_scene_labels and scene_labels is None:
        raise KinemaInputError("dit.scene_loss_weight > 0 or dit.object_loss_weight != 1 needs scene labels (a dataset whose clips carry a 'scene')")
    scene_fields = {"scene_classes": NUM_CLASSES, "scene_layer": d.scene_loss_layer} if d.scene_loss_weight > 0 else {}
    model = build_dit({**d.model, **scene_fields}, latent_channels, text_dim)
    if d.init_from:
        warm_start(model, d.init_from)
    patch = tuple(model.config.patch)
    net = wrap_model(model, dist)
    optimizer = make_optimizer(model, d.lr, d.weight_decay) if d.optimizer == "adamw" else MuonWithAdamW(model, d.lr, d.weight_decay, dit_hidden_matrix)
    ema = EMA(model, d.ema_decay)
    batches = DiTBatches(cache, cfg, dist, scene_labels if d.uses_scene_labels else None, easy if d.curriculum_steps > 0 else None)

    def forward_backward(step: int, precision: str) -> tuple[float, int]:
        x0, text, mask, cond, camera, rng = batches.image_batch(step) if batches.is_image_step(step) else batches(step)
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        b = x0.shape[0]
        t = apply_shift(sample_training_t(b, g, d.t_mean, d.t_std, d.t_uniform_fraction), batch_shift(d, patch, tuple(x0.shape)))
        if d.camera_noise_warp > 0:
            noise = camera_warped_noise(tuple(x0.shape), camera, g, d.camera_noise_warp, cfg.data.fps, CausalVideoVAE.temporal_stride)
        else:
            noise = frame_correlated_noise(tuple(x0.shape), g, d.noise_frame_correlation)
        if d.rectify > 0:
            noise = rectified_noise(noise, own_noise_estimate(model, add_noise(x0, noise, t), t, text, mask, cond, camera, precision), t, d.rectify)
        model_noise = noise if d.input_perturbation == 0 else noise + d.input_perturbation * torch.randn(noise.shape, generator=g)
        xt = add_noise(x0, model_noise, t)
        model.train()
        labels = batches.scene_targets(step)
        keep = masked_step_keep(d, model, tuple(x0.shape), rng, g)
        with autocast(precision):
            x0_estimate = self_condition_input(model, xt, t, text, mask, cond, camera, g) if model.config.self_condition else None
            if scene_fields:
                pred, logits = net(xt, t, text, mask, cond, camera, return_scene=True, x0_estimate=x0_estimate)
            else:
                pred = net(xt, t, text, mask, cond, camera, x0_estimate=x0_estimate, keep=keep)
        target = velocity_target(x0, noise)
        weights = None if d.object_loss_weight == 1 else object_weights(labels, patch[1:], d.object_loss_weight)
        total = flow_loss(pred, target, weights)
        loss = total.detach() if weights is None else flow_loss(pred.detach(), target)
        if scene_fields:
            total = total + d.scene_loss_weight * scene_loss(logits, labels)
        if d.temporal_loss_weight > 0:
            total = total + d.temporal_loss_weight * temporal_difference_loss(pred, target)
        total.backward()
        return float(loss.detach()), b

    settings = LoopSettings.for_stage("dit", d, cfg, checkpoint_dir, budget_minutes)
    result = run_loop_in_precision(settings, model, optimizer, forward_backward, d.precision, dist, ema=ema)
    return result, ema.model, model
