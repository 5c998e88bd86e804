"""The whole training recipe behind `kinema train CONFIG`.

Stages, each resumable and skipped once done (a marker with its stats is
written under `<output>/work/`):

    data    render the Shapes World dataset (train split, held-out pairs excluded)
    vae     train the causal video VAE on random crops
    cache   encode every clip to latents and every caption to embeddings once
    dit     train the DiT on the cache (flow matching, CFG dropout, EMA)
    matcher (opt-in) train the video-text matcher that picks the best of several candidates
    export  fp16 `<output>/model/{vae,dit[,matcher]}` + pipeline.json, and train_stats.json

A user training on their own footage lists only the stages they need, e.g.
`stages = ["cache", "dit", "export"]` with `vae_path` pointing at a VAE.
Under torchrun, data/cache/export run on rank 0 while the other ranks wait;
the training stages run on every rank.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinema.errors import KinemaInputError
from kinema.train.checkpoint import write_json_atomic
from kinema.train.config import STAGES, TrainConfig, config_to_dict
from kinema.train.distributed import DistInfo, barrier, cleanup, init_distributed

DIT_EXPORT_RESERVE_MINUTES = 1.0  # left for export when a total budget caps the DiT
MATCHER_RESERVE_MINUTES = 0.5  # beyond the matcher's own budget: loading the cache, saving


@dataclass(frozen=True)
class RunPaths:
    """Every file a run writes, in one place."""

    root: Path

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def vae_trained(self) -> Path:
        return self.work / "vae_trained"

    @property
    def vae_final(self) -> Path:  # trained VAE + latent mean/std, used by the DiT and exported
        return self.work / "vae"

    @property
    def dit_ema(self) -> Path:
        return self.work / "dit_ema"

    @property
    def matcher(self) -> Path:
        return self.work / "matcher"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def dataset_first(self) -> Path:  # the DiT's narrow first phase (dit.first_phase): its clips, cache, weights
        return self.root / "dataset_first"

    @property
    def cache_first(self) -> Path:
        return self.root / "cache_first"

    @property
    def dit_first_ema(self) -> Path:
        return self.work / "dit_first_ema"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def stats(self) -> Path:
        return self.root / "train_stats.json"

    def checkpoints(self, stage: str) -> Path:
        return self.root / "checkpoints" / stage

    def marker(self, stage: str) -> Path:
        return self.work / f"{stage}.done.json"


def _done(paths: RunPaths, stage: str) -> dict[str, Any] | None:
    m = paths.marker(stage)
    return json.loads(m.read_text()) if m.is_file() else None


def _log(dist: DistInfo, msg: str) -> None:
    if dist.is_main:
        print(f"[kinema train] {msg}", flush=True)


def _loop_stats(res: Any) -> dict[str, Any]:
    """What train_stats.json records of a training loop's kinema.train.loop.LoopResult."""
    return {
        "steps": res.steps, "seconds": res.seconds, "samples_per_second": res.samples_per_second, "final_loss": res.final_loss,
        "stopped_by": res.stopped_by, "precision": res.precision,
    }  # fmt: skip


# --- stages ------------------------------------------------------------------------


def stage_data(cfg: TrainConfig, paths: RunPaths) -> dict[str, Any]:
    """Render the Shapes World training split into `cfg.dataset_path` (and the DiT's first-phase clips, if any)."""
    from kinema.world.dataset import write_dataset
    from kinema.world.scene import ClipSpec

    r = cfg.data.render
    short = [ClipSpec(h, w, min(cfg.data.frame_counts), cfg.data.fps) for h, w in cfg.data.buckets]
    long_ = [ClipSpec(h, w, r.long_frames, cfg.data.fps) for h, w in cfg.data.buckets] if r.long_clip_fraction > 0 else []
    specs = short + long_
    weights = [(1 - r.long_clip_fraction) / len(short)] * len(short) + [r.long_clip_fraction / max(1, len(long_))] * len(long_)
    write_dataset(cfg.dataset_path, r.num_clips, specs, seed=cfg.seed, heldout=r.heldout, bucket_weights=weights, workers=r.workers, progress=cfg.progress)
    fp = cfg.dit.first_phase
    if fp.minutes <= 0:
        return {"clips": r.num_clips}
    spec = ClipSpec(fp.size[0], fp.size[1], fp.frames, cfg.data.fps)
    # seed + 1: the first phase's scenes are drawn apart from the main dataset's
    write_dataset(paths.dataset_first, fp.clips, [spec], seed=cfg.seed + 1, heldout=r.heldout, workers=r.workers, progress=cfg.progress, focus=fp.focus)
    return {"clips": r.num_clips, "first_phase_clips": fp.clips}


def first_phase_config(cfg: TrainConfig, paths: RunPaths) -> TrainConfig:
    """`cfg` as the DiT's narrow first phase sees it: its dataset, its one bucket, no warm start."""
    fp = cfg.dit.first_phase
    first = copy.deepcopy(cfg)
    first.data.dataset_dir = str(paths.dataset_first.resolve())
    first.data.buckets, first.data.frame_counts, first.data.bucket_weights = [list(fp.size)], [fp.frames], {}
    first.dit.curriculum_steps, first.dit.init_from = 0, ""
    return first


def _records(cfg: TrainConfig):
    from kinema.train.data import assign_buckets, read_metadata

    return assign_buckets(read_metadata(cfg.dataset_path), cfg.data.buckets, cfg.data.frame_counts, cfg.data.fps)


def stage_vae(cfg: TrainConfig, paths: RunPaths, dist: DistInfo) -> dict[str, Any]:
    from kinema.train.vae_trainer import train_vae

    res = train_vae(cfg, _records(cfg), dist, paths.vae_trained, paths.checkpoints("vae"))
    return {**_loop_stats(res), "batch_size": cfg.vae.batch_size}


def _vae_source(cfg: TrainConfig, paths: RunPaths) -> Path:
    src = Path(cfg.vae_path) if cfg.vae_path else paths.vae_trained
    if not (src / "model.safetensors").is_file():
        hint = "set vae_path to a trained VAE directory" if not cfg.vae_path else "it has no model.safetensors"
        raise KinemaInputError(f"no VAE at {src} for the cache stage: run the vae stage first or {hint}")
    return src


def stage_cache(cfg: TrainConfig, paths: RunPaths) -> dict[str, Any]:
    from kinema.models.io import load_pretrained, save_pretrained
    from kinema.models.text import load_text_encoder
    from kinema.train.latents import TRAIN_MAX_TOKENS, cache_latents, cache_negatives, cache_text, encoding_probe
    from kinema.train.precision import PRECISION_RECORD, choose_precision

    records = _records(cfg)
    src = _vae_source(cfg, paths)
    vae = load_pretrained(src)
    encoder = load_text_encoder(cfg.text_encoder, max_tokens=TRAIN_MAX_TOKENS)
    probe = encoding_probe(vae, encoder, records, cfg.data.fps, cfg.vae.encode_batch_size)
    choice = choose_precision(cfg.cache_precision, probe, paths.cache / PRECISION_RECORD, repeats=3, announce="cache")
    precision = choice.precision

    def encode(clips: list, cache_dir: Path, max_clips_per_bucket: int = 0) -> Any:
        """Latents of `clips` and embeddings of their captions into `cache_dir`; returns the latent stats."""
        stats = cache_latents(
            vae, src / "model.safetensors", clips, cfg.data.fps, cache_dir, cfg.vae.encode_batch_size, precision, cfg.progress,
            max_clips_per_bucket=max_clips_per_bucket, seed=cfg.seed,
        )  # fmt: skip
        cache_text(encoder, cfg.text_encoder, clips, cache_dir, precision=precision, progress=cfg.progress)
        return stats

    stats = encode(records, paths.cache, cfg.cache_max_clips_per_bucket)
    if "matcher" in cfg.stages:  # the matcher's hard negatives: encoded here, so the DiT's budget counts them
        cache_negatives(encoder, cfg.text_encoder, records, paths.cache, cfg.seed, precision, cfg.progress)
    vae.config.latent_mean, vae.config.latent_std = stats.mean, stats.std
    save_pretrained(vae, paths.vae_final)
    encoded = json.loads((paths.cache / "latents" / "meta.json").read_text())["num_clips"]
    out = {"clips": encoded, "latent_std_mean": sum(stats.std) / len(stats.std), "precision": choice.describe()}
    if cfg.dit.first_phase.minutes > 0:
        first = first_phase_config(cfg, paths)
        if not (first.dataset_path / "metadata.jsonl").is_file():
            raise KinemaInputError(f"dit.first_phase is on but {first.dataset_path} holds no dataset: its clips are rendered by the data stage")
        first_records = _records(first)
        encode(first_records, paths.cache_first)
        out["first_phase_clips"] = len(first_records)
    return out


def _dit_budget(cfg: TrainConfig, paths: RunPaths) -> float:
    """The DiT's minutes: its own budget, capped by what the total budget leaves after the other stages."""
    own = cfg.dit.time_budget_minutes
    if cfg.total_budget_minutes <= 0:
        return own
    used = sum((_done(paths, s) or {}).get("wall_seconds", 0.0) for s in ("data", "vae", "cache")) / 60.0
    matcher = cfg.matcher.time_budget_minutes + MATCHER_RESERVE_MINUTES if "matcher" in cfg.stages and _done(paths, "matcher") is None else 0.0
    left = max(0.5, cfg.total_budget_minutes - used - matcher - DIT_EXPORT_RESERVE_MINUTES)
    return min(own, left) if own > 0 else left


def _scene_labels(cfg: TrainConfig, cache: Any) -> dict[str, Any]:
    """Per-token scene labels for every cached clip (the DiT's scene supervision)."""
    from kinema.models.dit import DiTConfig
    from kinema.models.vae import CausalVideoVAE
    from kinema.train.scene_labels import label_table

    pt, ph, pw = cfg.dit.model.get("patch", DiTConfig.patch)
    if pt != 1:
        raise KinemaInputError(f"scene labels are per latent frame: they need the DiT's temporal patch to be 1, not {pt}")
    stride = CausalVideoVAE.spatial_stride
    table = label_table(_records(cfg), cache.clip_ids, cfg.data.fps, (stride * ph, stride * pw), CausalVideoVAE.temporal_stride)
    if all(bool((labels < 0).all()) for labels in table.values()):
        raise KinemaInputError(
            "dit.scene_loss_weight > 0 or dit.object_loss_weight != 1, but no clip of the dataset has a 'scene' at its bucket's size and fps (only Shapes World data does); turn them off"
        )
    return table


def _curriculum_items(cfg: TrainConfig, cache: Any) -> dict[str, Any]:
    """Per cache bucket, the rows of the curriculum's easy clips (one object, static camera)."""
    from kinema.train.curriculum import easy_items

    easy = easy_items(_records(cfg), cache.clip_ids)
    if not any(len(rows) for rows in easy.values()):
        raise KinemaInputError("dit.curriculum_steps > 0, but no clip of the dataset has a one-object, static-camera 'scene' (only Shapes World data does); turn it off")
    return easy


def stage_dit(cfg: TrainConfig, paths: RunPaths, dist: DistInfo) -> dict[str, Any]:
    from kinema.models.io import save_pretrained
    from kinema.train.dit_trainer import train_dit
    from kinema.train.latents import LatentCache

    if not (paths.cache / "text" / "meta.json").is_file() or not (paths.cache / "latents" / "meta.json").is_file():
        raise KinemaInputError(f"no latent cache in {paths.cache}: run the cache stage first")
    cache = LatentCache.load(paths.cache)
    text_dim = json.loads((paths.cache / "text" / "meta.json").read_text())["dim"]
    budget = _dit_budget(cfg, paths)
    _log(dist, f"dit: time budget {budget:.1f} min" if budget > 0 else "dit: no time budget")
    first_stats: dict[str, Any] = {}
    if cfg.dit.first_phase.minutes > 0:
        first_stats = _first_phase(cfg, paths, dist, text_dim, budget, cache)
        cfg = copy.deepcopy(cfg)
        cfg.dit.init_from = str(paths.dit_first_ema)
        if budget > 0:
            budget = max(0.5, budget - first_stats["seconds"] / 60.0)
        _log(dist, f"dit: first phase done; the whole dataset gets {budget:.1f} min" if budget > 0 else "dit: first phase done")
    labels = _scene_labels(cfg, cache) if cfg.dit.uses_scene_labels else None
    easy = _curriculum_items(cfg, cache) if cfg.dit.curriculum_steps > 0 else None
    res, ema_model, _ = train_dit(cfg, cache, text_dim, dist, paths.checkpoints("dit"), budget, labels, easy)
    if dist.is_main:
        save_pretrained(ema_model, paths.dit_ema)
    stats = {**_loop_stats(res), "batch_size": cfg.dit.batch_size, "budget_minutes": budget}
    if first_stats:
        # "seconds" covers both phases, so a resumed run's wall time and the total budget stay right
        stats.update(first_phase=first_stats, seconds=res.seconds + first_stats["seconds"])
    return stats


def _first_phase(cfg: TrainConfig, paths: RunPaths, dist: DistInfo, text_dim: int, dit_budget: float, main: Any) -> dict[str, Any]:
    """Train the DiT on the narrow first-phase clips for `dit.first_phase.minutes` (once; resumable), capped at
    90% of the DiT's budget when a total budget has left it less, so the whole dataset still gets a tenth.

    Its latents are normalised with the `main` cache's statistics, not the slice's own: the whole-dataset
    phase and the exported VAE use those, so both phases see the same latent scale."""
    from kinema.models.io import save_pretrained
    from kinema.train.dit_trainer import train_dit
    from kinema.train.latents import LatentCache

    done = paths.work / "dit_first.done.json"
    if done.is_file():
        return json.loads(done.read_text())
    if not (paths.cache_first / "latents" / "meta.json").is_file():
        raise KinemaInputError(f"dit.first_phase is on but there is no first-phase cache in {paths.cache_first}: run the data and cache stages with it on")
    first = first_phase_config(cfg, paths)
    cache = dataclasses.replace(LatentCache.load(paths.cache_first), latent_mean=main.latent_mean, latent_std=main.latent_std)
    minutes = cfg.dit.first_phase.minutes if dit_budget <= 0 else min(cfg.dit.first_phase.minutes, 0.9 * dit_budget)
    _log(dist, f"dit: first phase, {minutes:g} min on {paths.dataset_first.name}")
    labels = _scene_labels(first, cache) if first.dit.uses_scene_labels else None
    res, ema_model, _ = train_dit(first, cache, text_dim, dist, paths.checkpoints("dit_first"), minutes, labels)
    stats = _loop_stats(res)
    if dist.is_main:
        save_pretrained(ema_model, paths.dit_first_ema)
        write_json_atomic(done, stats)
    barrier(dist)
    return stats


def stage_matcher(cfg: TrainConfig, paths: RunPaths) -> dict[str, Any]:
    """The video-text matcher on the DiT's cache and the cache stage's hard negatives (rank 0 only: it is small)."""
    from kinema.models.io import save_pretrained
    from kinema.models.matcher import MatcherConfig
    from kinema.train.latents import LatentCache
    from kinema.train.loop import LoopSettings
    from kinema.train.matcher_trainer import MatcherBatches, load_negatives, train_matcher

    negatives = paths.cache / "negatives" / "negatives.safetensors"
    if not (paths.cache / "latents" / "meta.json").is_file() or not negatives.is_file():
        raise KinemaInputError(f"no latent cache with hard negatives in {paths.cache}: run the cache stage with \"matcher\" in stages")
    cache = LatentCache.load(paths.cache)
    m = cfg.matcher
    fields = {**m.model, "latent_channels": cache.latent_mean.numel(), "text_dim": int(cache.text_hidden.shape[-1])}
    batches = MatcherBatches(cache, load_negatives(negatives), m.batch_size, m.noise_max, cfg.seed)
    settings = LoopSettings.for_stage("matcher", m, cfg, paths.checkpoints("matcher"))
    res, model = train_matcher(m, MatcherConfig(**fields), cfg.seed, [batches], settings, DistInfo())
    save_pretrained(model, paths.matcher)
    return {**_loop_stats(res), "batch_size": m.batch_size, "parameters": model.num_params()["total"]}


def stage_export(cfg: TrainConfig, paths: RunPaths) -> dict[str, Any]:
    """fp16 VAE + EMA DiT + pipeline.json: a model directory the engine loads as is."""
    import torch

    from kinema.engine.native import NativeConfig, ShiftConfig
    from kinema.models.io import load_pretrained, save_pretrained

    for d, stage in ((paths.vae_final, "cache"), (paths.dit_ema, "dit")):
        if not (d / "model.safetensors").is_file():
            raise KinemaInputError(f"nothing to export at {d}: run the {stage} stage first")
    from kinema.conditioning.tasks import capabilities_for

    save_pretrained(load_pretrained(paths.vae_final), paths.model / "vae", dtype=torch.float16)
    dit = load_pretrained(paths.dit_ema)
    save_pretrained(dit, paths.model / "dit", dtype=torch.float16)
    has_matcher = "matcher" in cfg.stages and (paths.matcher / "model.safetensors").is_file()
    if has_matcher:
        save_pretrained(load_pretrained(paths.matcher), paths.model / "matcher", dtype=torch.float16)
    else:
        shutil.rmtree(paths.model / "matcher", ignore_errors=True)  # an earlier export's matcher is not this model's
    e, d = cfg.export, cfg.dit
    NativeConfig(
        text_encoder=cfg.text_encoder,
        max_prompt_tokens=e.max_prompt_tokens,
        buckets=[list(b) for b in cfg.data.buckets],
        fps=cfg.data.fps,
        seconds=e.seconds,
        max_seconds=e.max_seconds,
        steps=e.steps,
        guidance=e.guidance,
        sampler=e.sampler,
        shift=ShiftConfig(d.shift_base_tokens, d.shift_base_shift, d.shift_max_tokens, d.shift_max_shift),
        noise_frame_correlation=d.noise_frame_correlation,
        camera_noise_warp=d.camera_noise_warp,
        tasks=capabilities_for(d.tasks, camera=dit.config.camera_dim > 0),
        window_frames=e.window_frames,
        max_total_seconds=e.max_total_seconds,
        candidates=cfg.matcher.candidates if has_matcher else 1,
    ).save(paths.model)
    return {"model_dir": str(paths.model)}


# --- the recipe --------------------------------------------------------------------


def _warn_emulated_bf16(cfg: TrainConfig, dist: DistInfo) -> None:
    """Say so when a stage asks for bf16 on a CPU that only emulates it: many times slower than fp32 there."""
    from kinema.train.precision import native_cpu_bf16

    stages = (("vae", cfg.vae.precision), ("cache", cfg.cache_precision), ("dit", cfg.dit.precision), ("matcher", cfg.matcher.precision))
    named = [n for n, p in stages if p == "bf16" and n in cfg.stages]
    if named and not native_cpu_bf16():
        _log(dist, f"warning: {', '.join(named)} asked for bf16, which this CPU only emulates (no AVX512-BF16 or AMX): "
                   "expect it many times slower than fp32; precision = \"auto\" picks fp32 here")  # fmt: skip


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Run the configured stages in order; returns the stats written to train_stats.json."""
    paths = RunPaths(cfg.output)
    if cfg.dit.init_from and "dit" in cfg.stages and _done(paths, "dit") is None:
        from kinema.train.dit_trainer import check_init_from

        check_init_from(cfg.dit.init_from)  # before the data and VAE stages, not an hour into the run
    dist = init_distributed()
    try:
        if dist.is_main:
            paths.work.mkdir(parents=True, exist_ok=True)
            write_json_atomic(paths.work / "config.json", config_to_dict(cfg))
        _warn_emulated_bf16(cfg, dist)
        for stage in cfg.stages:
            barrier(dist)
            if _done(paths, stage) is not None:
                _log(dist, f"{stage}: already done, skipped")
                continue
            _log(dist, f"{stage}: starting")
            start = time.monotonic()
            stats: dict[str, Any] | None = None
            if stage == "vae":
                stats = stage_vae(cfg, paths, dist)
            elif stage == "dit":
                stats = stage_dit(cfg, paths, dist)
            elif dist.is_main:
                run_stage = {"data": stage_data, "cache": stage_cache, "matcher": stage_matcher, "export": stage_export}[stage]
                stats = run_stage(cfg, paths)
            if dist.is_main and stats is not None:
                # A resumed training stage reports its loop time across all runs in "seconds".
                stats["wall_seconds"] = max(time.monotonic() - start, stats.get("seconds", 0.0))
                write_json_atomic(paths.marker(stage), stats)
                _log(dist, f"{stage}: done in {stats['wall_seconds'] / 60:.1f} min")
        barrier(dist)
        summary = {s: _done(paths, s) for s in STAGES if _done(paths, s) is not None}
        summary_out = {"stages": summary, "total_wall_seconds": sum(v.get("wall_seconds", 0.0) for v in summary.values()), "world_size": dist.world_size}
        if dist.is_main:
            write_json_atomic(paths.stats, summary_out)
        return summary_out
    finally:
        cleanup(dist)
