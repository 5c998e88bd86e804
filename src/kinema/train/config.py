"""Training configuration: a readable TOML file parsed into dataclasses.

Why TOML + dataclasses: one file a person can read says everything a run does
(no environment variables, no hidden globals), and a typo in a key is refused
up front instead of silently training the wrong model for two hours.
Model fields (`[vae.model]`, `[dit.model]`) are passed through to the model's
own config dataclass, which checks them when the stage starts.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kinema.errors import KinemaInputError
from kinema.train.precision import PRECISIONS

STAGES = ("data", "vae", "cache", "dit", "matcher", "export")
DEFAULT_STAGES = ("data", "vae", "cache", "dit", "export")  # the matcher is opt-in: list it in `stages`
DIT_OPTIMIZERS = ("adamw", "muon")


@dataclass
class RenderConfig:
    """How the built-in Shapes World dataset is rendered (stage "data")."""

    num_clips: int = 16000
    long_clip_fraction: float = 0.1  # share of clips rendered at `long_frames`
    long_frames: int = 33
    workers: int = 2
    heldout: str = "exclude"


@dataclass
class DataConfig:
    """Where the clips are and which shapes they are trained at.

    `dataset_dir` is relative to the output directory unless absolute; `buckets`
    are (height, width) pairs; `frame_counts` are the allowed clip lengths
    (each 1 + 4k). A clip goes to the bucket nearest its aspect ratio and the
    longest allowed length it can fill at `fps`.
    """

    dataset_dir: str = "dataset"
    buckets: list[list[int]] = field(default_factory=lambda: [[64, 64], [64, 112], [112, 64]])
    frame_counts: list[int] = field(default_factory=lambda: [17, 33])
    fps: float = 8.0
    bucket_weights: dict[str, float] = field(default_factory=dict)  # "HxWxT" -> weight; default: clip count
    render: RenderConfig = field(default_factory=RenderConfig)


@dataclass
class VAEStageConfig:
    """VAE training on random crops of a pool of clips decoded once into RAM."""

    model: dict[str, Any] = field(default_factory=dict)
    steps: int = 4000
    batch_size: int = 16
    crop_size: int = 32
    crop_frames: int = 9
    pool_clips: int = 600
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    kl_weight: float = 1e-6
    # Extra loss weight on colourful or bright pixels (`kinema.models.vae.salient_pixel_weights`): Shapes
    # World's objects are 6% of the pixels and a plain L1 loses their small shapes to the background texture.
    salient_weight: float = 0.0
    grad_clip: float = 1.0
    lr_schedule: str = "cosine"
    precision: str = "auto"  # "auto", "fp32" or "bf16" (CPU autocast); auto: the faster of the two here, timed at the start
    time_budget_minutes: float = 18.0
    encode_batch_size: int = 16


@dataclass
class FirstPhaseConfig:
    """A narrow first phase for the DiT (`[dit.first_phase]`, Shapes World only).

    Why: on the whole world the DiT does not learn to move objects, while on clips of one object under a
    still camera it does within minutes, and a DiT started from such a one keeps the motion when trained on
    the whole world afterwards (docs/benchmarks.md). With `minutes` > 0 the data stage also renders `clips`
    such clips (`dataset_first/`, one size and length), the cache stage encodes them (`cache_first/`), and the
    DiT stage trains on them alone for `minutes` before the whole dataset, which starts from the first
    phase's EMA weights with a fresh optimizer and schedule, for what is left of the DiT's budget.
    """

    minutes: float = 0.0  # 0 = off
    clips: int = 3000
    size: list[int] = field(default_factory=lambda: [64, 64])  # (height, width)
    frames: int = 17
    # kinema.world.sampling.FOCUSES: "one-object" (every motion), "one-object-translation" or "camera-moves";
    # "a+b" mixes slices in even shares (focus_parts)
    focus: str = "one-object"


@dataclass
class DiTStageConfig:
    """DiT flow-matching training on cached latents and caption embeddings."""

    model: dict[str, Any] = field(default_factory=dict)
    steps: int = 20000
    batch_size: int = 64
    lr: float = 3e-4
    warmup_steps: int = 500
    weight_decay: float = 0.01
    lr_schedule: str = "cosine"
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    caption_dropout: float = 0.1
    t_mean: float = 0.0
    t_std: float = 1.0
    t_uniform_fraction: float = 0.0  # share of timesteps drawn uniformly, so t near 0 and 1 are trained too
    shift_base_tokens: int = 64
    shift_base_shift: float = 1.0
    shift_max_tokens: int = 1024
    shift_max_shift: float = 3.0
    precision: str = "auto"  # kinema.train.precision: the faster of bf16 autocast and fp32, timed at the stage's start
    time_budget_minutes: float = 80.0
    # Frame-conditioning tasks mixed by weight (kinema.conditioning.tasks.TASKS); text-only by default.
    tasks: dict[str, float] = field(default_factory=lambda: {"text": 1.0})
    camera_dropout: float = 0.25  # share of clips with a known camera trained without the signal (prompt only)
    # share of clips trained with the signal and a caption that leaves the camera unnamed (the dataset's
    # `captions_without_camera`), so the signal alone must carry the move
    camera_caption_free: float = 0.0
    # Scene supervision (kinema.train.scene_labels): weight of an auxiliary loss asking the DiT's tokens,
    # after `scene_loss_layer` blocks, to name the colour, shape and motion of the object they cover and
    # the camera move. Needs datasets with a `scene` per clip (Shapes World); 0 turns it off.
    scene_loss_weight: float = 0.0
    scene_loss_layer: int = 2
    # Velocity-loss weight of the latent cells under a token that covers an object (1 = plain loss); from the
    # same scene labels (kinema.train.scene_labels.object_weights), so it too needs Shapes World data.
    object_loss_weight: float = 1.0
    # Weight of the loss on the velocity error's change between latent frames
    # (kinema.diffusion.flow.temporal_difference_loss): puts motion above what stays the same; 0 turns it off.
    temporal_loss_weight: float = 0.0
    # Correlation between the training noise of any two latent frames (kinema.diffusion.flow.frame_correlated_noise,
    # PYoCo's mixed noise); exported to pipeline.json so sampling starts from the same noise. 0 = independent.
    noise_frame_correlation: float = 0.0
    # Share of the starting noise that moves with the clip's camera where the camera signal is given
    # (kinema.diffusion.camera_noise, after Go-with-the-Flow); exported to pipeline.json so a request's camera
    # warps the sampler's noise the same way. 0 = independent noise for every clip.
    camera_noise_warp: float = 0.0
    # Image-video joint training (Latte, Open-Sora): this share of optimizer steps trains on single frames
    # (one-frame latents, each encoded alone as the engine encodes an image), `image_batch_multiplier` times
    # the batch, since a frame is a fifth of a 2 s clip's tokens. 0 = video batches only. Two 50-minute trials at
    # 0.35 read no better than the control (docs/benchmarks.md), so the built-in recipe keeps 0.
    image_fraction: float = 0.0
    image_batch_multiplier: int = 4
    # Exposure bias, two remedies (0 = off). `rectify`: DREAM (Zhou et al. 2024), a gradient-free pass first
    # estimates the noise and the training input carries the model's own error (flow.rectified_noise); costs
    # one extra forward pass per step. `input_perturbation`: DDPM-IP (Ning et al. 2023), the input's noise gets
    # an extra independent N(0, gamma^2) part that the velocity target leaves out; free.
    rectify: float = 0.0
    input_perturbation: float = 0.0
    # Masked training (MDT, MaskDiT; needs `[dit.model] mask_blocks`): in a `mask_step_fraction` share of the
    # steps, each sample's DiT drops `mask_ratio` of its tokens before the early blocks, and the loss still
    # covers every position, so the dropped tokens' content is inferred from the rest. 0 = off.
    mask_ratio: float = 0.0
    mask_step_fraction: float = 0.5
    # Curriculum (kinema.train.curriculum): the chance that a step's batch is drawn only from the easy clips (one
    # object, static camera; Shapes World scenes) falls linearly from 1 at step 0 to 0 at this step; from then on
    # batches come from all clips. 0 = off. Why: the DiT learns to move one object on such clips in 45 minutes,
    # and not at all on the whole distribution; two 50-minute trials of it did not help (docs/benchmarks.md).
    curriculum_steps: int = 0
    # Warm start: a DiT directory (config.json + model.safetensors, e.g. `<run>/work/dit_ema` or a model's `dit/`,
    # the built-in one included) whose weights the DiT starts from, with a fresh optimizer and schedule; its
    # architecture must match `[dit.model]`. Empty = random initialisation. A resumed run's checkpoint wins.
    init_from: str = ""
    first_phase: FirstPhaseConfig = field(default_factory=FirstPhaseConfig)
    # "adamw", or "muon": Muon (kinema.train.muon) for the matrices inside the DiT's blocks, AdamW for the rest,
    # one learning rate and schedule for both.
    optimizer: str = "adamw"

    @property
    def uses_frame_tasks(self) -> bool:
        """Whether any frame-conditioning task has weight, so every batch carries a `cond` tensor."""
        return any(v > 0 for k, v in self.tasks.items() if k != "text")

    @property
    def uses_scene_labels(self) -> bool:
        """Whether training reads per-token scene labels (the scene loss or the object weighting is on)."""
        return self.scene_loss_weight > 0 or self.object_loss_weight != 1


@dataclass
class MatcherStageConfig:
    """The video-text matcher (kinema.models.matcher) that picks the best of several candidates.

    Trained on the DiT's latent cache, against hard negatives the cache stage writes (each clip's
    scene with one attribute changed, kinema.train.matcher_data) when "matcher" is in `stages`.
    """

    model: dict[str, Any] = field(default_factory=dict)  # MatcherConfig fields (latent_channels, text_dim are set for you)
    steps: int = 100000  # normally the time budget ends the run first
    batch_size: int = 64  # clips per step, each paired with three captions
    lr: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.01
    lr_schedule: str = "cosine"
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    noise_max: float = 0.2  # latents get noise up to this level (as a sampler's last steps leave)
    precision: str = "auto"
    time_budget_minutes: float = 6.0
    candidates: int = 4  # pipeline.json's default clips per window (best-of-N)


@dataclass
class ExportConfig:
    """What goes into `<output>/model/pipeline.json` for the engine."""

    seconds: float = 2.0
    max_seconds: float = 4.0
    steps: int = 20
    guidance: float = 4.0
    sampler: str = "dpmpp-2m"
    max_prompt_tokens: int = 64
    window_frames: int = 17  # frames per window when a long video chains windows
    max_total_seconds: float = 120.0  # longest video by chained windows (if the model learned continuation)


@dataclass
class TrainConfig:
    """A whole training run. `stages` picks which of data/vae/cache/dit/export run."""

    output_dir: str = "runs/builtin"
    seed: int = 0
    stages: list[str] = field(default_factory=lambda: list(DEFAULT_STAGES))
    text_encoder: str = "all-MiniLM-L6-v2"
    vae_path: str = ""  # pretrained VAE dir for a dit-only run; default <output>/model/vae
    total_budget_minutes: float = 0.0  # 0 = no overall cap; else the DiT gets what is left
    checkpoint_every_steps: int = 500
    checkpoint_every_minutes: float = 10.0
    progress: bool = True
    cache_precision: str = "auto"  # VAE + text encoder when caching: "auto" times both precisions, as the stages do
    cache_max_clips_per_bucket: int = 0  # 0 = encode every clip; else a seeded random subset per bucket
    data: DataConfig = field(default_factory=DataConfig)
    vae: VAEStageConfig = field(default_factory=VAEStageConfig)
    dit: DiTStageConfig = field(default_factory=DiTStageConfig)
    matcher: MatcherStageConfig = field(default_factory=MatcherStageConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    @property
    def output(self) -> Path:
        return Path(self.output_dir)

    @property
    def dataset_path(self) -> Path:
        p = Path(self.data.dataset_dir)
        return p if p.is_absolute() else self.output / p

    @property
    def vae_dir(self) -> Path:
        return Path(self.vae_path) if self.vae_path else self.output / "model" / "vae"


def _is_frame_size(hw: list[int]) -> bool:
    """[height, width], positive multiples of 16 (the VAE's stride times the DiT's patch)."""
    return len(hw) == 2 and all(isinstance(v, int) and v > 0 and v % 16 == 0 for v in hw)


def _is_frame_count(n: int) -> bool:
    """1 + 4k frames: the causal VAE encodes the first frame alone, then groups of four."""
    return n >= 1 and (n - 1) % 4 == 0


def _check_first_phase(cfg: TrainConfig) -> None:
    from kinema.world.sampling import FOCUSES, focus_parts

    fp = cfg.dit.first_phase
    if fp.minutes < 0:
        raise KinemaInputError(f"dit.first_phase.minutes must be >= 0, got {fp.minutes}")
    if fp.minutes == 0:
        return
    if fp.clips < 1:
        raise KinemaInputError(f"dit.first_phase.clips must be at least 1, got {fp.clips}")
    if not _is_frame_size(fp.size):
        raise KinemaInputError(f"dit.first_phase.size must be [height, width], multiples of 16, got {fp.size}")
    if not _is_frame_count(fp.frames):
        raise KinemaInputError(f"dit.first_phase.frames must be 1 + 4k, got {fp.frames}")
    try:
        if "" in focus_parts(fp.focus):  # the whole world is no first phase
            raise ValueError(fp.focus)
    except ValueError:
        raise KinemaInputError(f"dit.first_phase.focus must be one of {sorted(k for k in FOCUSES if k)} or several joined by '+', got {fp.focus!r}") from None
    if cfg.dit.init_from:
        raise KinemaInputError("dit.first_phase and dit.init_from both choose where the DiT starts: set one")
    budget = cfg.dit.time_budget_minutes
    if budget > 0 and fp.minutes >= budget:
        raise KinemaInputError(f"dit.first_phase.minutes ({fp.minutes:g}) must be less than dit.time_budget_minutes ({budget:g})")


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Make dataclass `cls` from a TOML table, refusing unknown keys by name."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise KinemaInputError(f"unknown key(s) {unknown} in {f'[{where}]' if where else 'the top level'}; allowed: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        f = fields[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise KinemaInputError(f"[{where}.{name}] must be a table")
            kwargs[name] = _build(type(default), value, f"{where}.{name}" if where else name)
        else:
            kwargs[name] = _check_type(value, default, f"{where}.{name}" if where else name)
    return cls(**kwargs)


def _check_type(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        ok = isinstance(value, list)
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        raise KinemaInputError(f"{where} must be a {type(default).__name__}, got {value!r}")
    return value


def validate(cfg: TrainConfig) -> TrainConfig:
    """Checks that do not need the models: stages, buckets, frame counts, ranges."""
    bad = [s for s in cfg.stages if s not in STAGES]
    if bad or not cfg.stages:
        raise KinemaInputError(f"stages must be a non-empty subset of {list(STAGES)}, got {cfg.stages}")
    for hw in cfg.data.buckets:
        if not _is_frame_size(hw):
            raise KinemaInputError(f"data.buckets entries must be [height, width] multiples of 16, got {hw}")
    if not cfg.data.buckets:
        raise KinemaInputError("data.buckets must list at least one [height, width]")
    for n in cfg.data.frame_counts:
        if not _is_frame_count(n):
            raise KinemaInputError(f"data.frame_counts must be 1 + 4k, got {n}")
    if not _is_frame_count(cfg.vae.crop_frames):
        raise KinemaInputError(f"vae.crop_frames must be 1 + 4k, got {cfg.vae.crop_frames}")
    if cfg.vae.crop_size % 8 or cfg.vae.crop_size <= 0:
        raise KinemaInputError(f"vae.crop_size must be a positive multiple of 8, got {cfg.vae.crop_size}")
    for name, stage in (("vae", cfg.vae), ("dit", cfg.dit), ("matcher", cfg.matcher)):
        if stage.precision not in PRECISIONS:
            raise KinemaInputError(f"{name}.precision must be 'auto', 'fp32' or 'bf16', got {stage.precision!r}")
        if stage.lr_schedule not in ("cosine", "constant"):
            raise KinemaInputError(f"{name}.lr_schedule must be 'cosine' or 'constant', got {stage.lr_schedule!r}")
        if stage.batch_size < 1 or stage.steps < 0:
            raise KinemaInputError(f"{name}.batch_size must be >= 1 and steps >= 0")
    from kinema.request import MAX_CANDIDATES

    if not 1 <= cfg.matcher.candidates <= MAX_CANDIDATES:
        raise KinemaInputError(f"matcher.candidates must be between 1 and {MAX_CANDIDATES}, got {cfg.matcher.candidates}")
    if not 0.0 <= cfg.matcher.noise_max < 1.0:
        raise KinemaInputError(f"matcher.noise_max must be in [0, 1), got {cfg.matcher.noise_max}")
    if "matcher" in cfg.stages and "export" in cfg.stages and cfg.stages.index("matcher") > cfg.stages.index("export"):
        raise KinemaInputError("stages: matcher must come before export, which ships it")
    if cfg.vae.salient_weight < 0:
        raise KinemaInputError(f"vae.salient_weight must be >= 0, got {cfg.vae.salient_weight}")
    if cfg.cache_precision not in PRECISIONS:
        raise KinemaInputError(f"cache_precision must be 'auto', 'fp32' or 'bf16', got {cfg.cache_precision!r}")
    if not 0.0 <= cfg.dit.caption_dropout < 1.0:
        raise KinemaInputError(f"dit.caption_dropout must be in [0, 1), got {cfg.dit.caption_dropout}")
    if not 0.0 <= cfg.dit.ema_decay < 1.0:
        raise KinemaInputError(f"dit.ema_decay must be in [0, 1), got {cfg.dit.ema_decay}")
    if not 0.0 <= cfg.dit.t_uniform_fraction <= 1.0:
        raise KinemaInputError(f"dit.t_uniform_fraction must be in [0, 1], got {cfg.dit.t_uniform_fraction}")
    if not 0.0 <= cfg.dit.camera_dropout <= 1.0:
        raise KinemaInputError(f"dit.camera_dropout must be in [0, 1], got {cfg.dit.camera_dropout}")
    if not 0.0 <= cfg.dit.camera_caption_free <= 1.0:
        raise KinemaInputError(f"dit.camera_caption_free must be in [0, 1], got {cfg.dit.camera_caption_free}")
    if cfg.dit.scene_loss_weight < 0:
        raise KinemaInputError(f"dit.scene_loss_weight must be >= 0, got {cfg.dit.scene_loss_weight}")
    if cfg.dit.object_loss_weight < 1:
        raise KinemaInputError(f"dit.object_loss_weight must be >= 1, got {cfg.dit.object_loss_weight}")
    if cfg.dit.temporal_loss_weight < 0:
        raise KinemaInputError(f"dit.temporal_loss_weight must be >= 0, got {cfg.dit.temporal_loss_weight}")
    if cfg.dit.temporal_loss_weight > 0 and any(n < 5 for n in cfg.data.frame_counts):
        raise KinemaInputError(f"dit.temporal_loss_weight needs clips of at least 2 latent frames (frame_counts >= 5), got {min(cfg.data.frame_counts)}")
    if not 0 <= cfg.dit.noise_frame_correlation < 1:
        raise KinemaInputError(f"dit.noise_frame_correlation must be in [0, 1), got {cfg.dit.noise_frame_correlation}")
    if not 0 <= cfg.dit.camera_noise_warp <= 1:
        raise KinemaInputError(f"dit.camera_noise_warp must be in [0, 1], got {cfg.dit.camera_noise_warp}")
    if cfg.dit.camera_noise_warp > 0 and cfg.dit.noise_frame_correlation > 0:
        raise KinemaInputError("dit.camera_noise_warp and dit.noise_frame_correlation are two noise priors: set at most one")
    if cfg.dit.scene_loss_weight > 0:
        from kinema.models.dit import DiTConfig

        depth = int(cfg.dit.model.get("depth", DiTConfig.depth))
        if not 1 <= cfg.dit.scene_loss_layer <= depth:
            raise KinemaInputError(f"dit.scene_loss_layer must be between 1 and the DiT's depth {depth}, got {cfg.dit.scene_loss_layer}")
    from kinema.conditioning.tasks import check_task_weights

    check_task_weights(cfg.dit.tasks, "dit.tasks")
    if cfg.dit.curriculum_steps < 0:
        raise KinemaInputError(f"dit.curriculum_steps must be >= 0, got {cfg.dit.curriculum_steps}")
    _check_first_phase(cfg)
    if not 0.0 <= cfg.dit.image_fraction < 1.0:
        raise KinemaInputError(f"dit.image_fraction must be in [0, 1), got {cfg.dit.image_fraction}")
    if cfg.dit.image_batch_multiplier < 1:
        raise KinemaInputError(f"dit.image_batch_multiplier must be >= 1, got {cfg.dit.image_batch_multiplier}")
    if cfg.dit.image_fraction > 0 and (cfg.dit.uses_scene_labels or cfg.dit.temporal_loss_weight > 0):
        raise KinemaInputError("dit.image_fraction > 0 cannot be combined with the scene labels or the temporal loss (both need whole clips)")
    if not 0.0 <= cfg.dit.rectify <= 1.0:
        raise KinemaInputError(f"dit.rectify must be in [0, 1], got {cfg.dit.rectify}")
    if cfg.dit.input_perturbation < 0:
        raise KinemaInputError(f"dit.input_perturbation must be >= 0, got {cfg.dit.input_perturbation}")
    _check_masking(cfg.dit)
    if cfg.dit.optimizer not in DIT_OPTIMIZERS:
        raise KinemaInputError(f"dit.optimizer must be one of {', '.join(DIT_OPTIMIZERS)}, got {cfg.dit.optimizer!r}")
    if cfg.cache_max_clips_per_bucket < 0:
        raise KinemaInputError(f"cache_max_clips_per_bucket must be >= 0, got {cfg.cache_max_clips_per_bucket}")
    return cfg


def _check_masking(d: DiTStageConfig) -> None:
    if not 0.0 <= d.mask_ratio < 1.0:
        raise KinemaInputError(f"dit.mask_ratio must be in [0, 1), got {d.mask_ratio}")
    if not 0.0 < d.mask_step_fraction <= 1.0:
        raise KinemaInputError(f"dit.mask_step_fraction must be in (0, 1], got {d.mask_step_fraction}")
    if d.mask_ratio == 0:
        return
    if int(d.model.get("mask_blocks", 0)) < 1:
        raise KinemaInputError("dit.mask_ratio > 0 needs [dit.model] mask_blocks >= 1 (the blocks that see the masked positions)")
    if d.scene_loss_weight > 0 or int(d.model.get("attention_bias_range", 0)) > 0:
        raise KinemaInputError("dit.mask_ratio > 0 cannot be combined with the scene loss or attention biases")


EXTENDS_KEY = "extends"


def load_config(path: str | Path, output_dir: str | None = None) -> TrainConfig:
    """Read a TOML training config; `output_dir`, when given, overrides the file's.

    A relative `output_dir` in the file is taken relative to the current directory
    (where the user runs `kinema train`), like every other CLI path. A file may
    start from another with `extends = "PATH"` (relative to the file): see
    `read_config_table`.
    """
    cfg = _build(TrainConfig, read_config_table(Path(path)), "")
    if output_dir is not None:
        cfg.output_dir = output_dir
    return validate(cfg)


def read_config_table(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's TOML table, with the file its `extends` key names (and that file's, in turn) underneath.

    Why: an experiment is usually the recipe with a value or two changed, and a full copy
    of the recipe hides which ones; `extends = "../builtin.toml"` plus the changed keys
    says exactly that. Tables merge key by key, down to the innermost (`[dit.model]`,
    `[dit.tasks]`: to drop a task, give it weight 0); values and arrays replace the base's.
    """
    if path.resolve() in _chain:
        loop = " -> ".join(str(p) for p in (*_chain, path.resolve()))
        raise KinemaInputError(f"training configs extend each other in a loop: {loop}")
    if not path.is_file():
        named_by = f" (named by extends in {_chain[-1]})" if _chain else ""
        raise KinemaInputError(f"training config not found: {path}{named_by}")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise KinemaInputError(f"{path} is not valid TOML: {exc}") from None
    base = raw.pop(EXTENDS_KEY, None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base:
        raise KinemaInputError(f"{path}: extends must be the path of another config, got {base!r}")
    return _merge_tables(read_config_table(path.parent / base, (*_chain, path.resolve())), raw)


def _merge_tables(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge_tables(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain dict (saved beside checkpoints so a run records how it was made)."""
    return dataclasses.asdict(cfg)
