"""The backend for kinema's own model: text encoder -> DiT with CFG -> causal video VAE.

A model directory holds::

    pipeline.json          how to run it (NativeConfig: encoder, buckets, defaults, shift)
    vae/  config.json + model.safetensors   (CausalVideoVAE)
    dit/  config.json + model.safetensors   (DiT)

Loading is lazy and kept: `capabilities` and `validate` read only the JSON
files (plus the tokenizer, to count prompt tokens), so bad input is refused
before any weights load; the first `generate` loads the weights and later
calls reuse them, so a warm process pays only for sampling.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kinema.diffusion import flow
from kinema.diffusion.guidance import cfg_velocity
from kinema.diffusion.samplers import SAMPLERS
from kinema.engine.backend import Capabilities, Progress, ResolvedRequest, Video, resolve_common
from kinema.engine.timing import Timings
from kinema.errors import KinemaInputError
from kinema.request import GenerationRequest

PIPELINE_FILE = "pipeline.json"


@dataclass
class ShiftConfig:
    """Arguments of `flow.shift_for_tokens`: the sampling shift grows with the latent token count."""

    base_tokens: int = 64
    base_shift: float = 1.0
    max_tokens: int = 1024
    max_shift: float = 3.0


@dataclass
class NativeConfig:
    """The contents of pipeline.json. Missing keys take these defaults; unknown keys are refused."""

    text_encoder: str = "all-MiniLM-L6-v2"
    text_encoder_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"dim": 32} for "hash-test"
    max_prompt_tokens: int = 64
    buckets: list[list[int]] = field(default_factory=lambda: [[64, 64], [64, 112], [112, 64]])  # (height, width)
    fps: float = 8.0
    fps_range: list[float] | None = None  # None -> only `fps`: the model has no fps input, motion speed is learned per second
    seconds: float = 2.0
    max_seconds: float = 4.0
    steps: int = 20
    guidance: float = 4.0
    sampler: str = "dpmpp-2m"
    shift: ShiftConfig = field(default_factory=ShiftConfig)
    vae_chunk_frames: int = 2  # latent frames per VAE decode chunk: bounds memory for long clips

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NativeConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"{PIPELINE_FILE}: unknown keys {sorted(unknown)} (written by a newer kinema?)")
        d = dict(d)
        if "shift" in d:
            d["shift"] = ShiftConfig(**d["shift"])
        cfg = cls(**d)
        if cfg.sampler not in SAMPLERS:
            raise ValueError(f"{PIPELINE_FILE}: unknown default sampler {cfg.sampler!r}")
        if not cfg.buckets:
            raise ValueError(f"{PIPELINE_FILE}: buckets is empty")
        return cfg

    def save(self, directory: str | Path) -> Path:
        """Write pipeline.json atomically (the builder of a model directory calls this)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_dict(), f, indent=2)
        os.replace(tmp, directory / PIPELINE_FILE)
        return directory / PIPELINE_FILE

    @classmethod
    def load(cls, directory: str | Path) -> NativeConfig:
        return cls.from_dict(json.loads((Path(directory) / PIPELINE_FILE).read_text()))


def is_model_dir(directory: str | Path) -> bool:
    d = Path(directory)
    return all((d / p).is_file() for p in (PIPELINE_FILE, "vae/config.json", "dit/config.json", "vae/model.safetensors", "dit/model.safetensors"))


def frames_to_uint8(video: torch.Tensor) -> torch.Tensor:
    """[3, T, H, W] in [-1, 1] -> uint8 [T, H, W, 3]."""
    return ((video.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0)


class NativeBackend:
    """Runs a kinema model directory. Weights load on first use and stay loaded."""

    def __init__(self, model_dir: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.model_dir = Path(model_dir)
        if not is_model_dir(self.model_dir):
            raise KinemaInputError(f"{self.model_dir} is not a kinema model directory (needs {PIPELINE_FILE}, vae/ and dit/ with config.json + model.safetensors)")
        self.config = NativeConfig.load(self.model_dir)
        self.device = torch.device(device)
        self.dtype = dtype
        dit_cfg = json.loads((self.model_dir / "dit" / "config.json").read_text())
        self._patch = tuple(dit_cfg.get("patch", (1, 2, 2)))
        if self._patch[0] != 1:
            raise ValueError("the native backend needs a DiT with temporal patch 1")
        from kinema.models.vae import CausalVideoVAE

        self._spatial_stride = CausalVideoVAE.spatial_stride
        self._temporal_stride = CausalVideoVAE.temporal_stride
        self._text_encoder: Any = None
        self._vae: Any = None
        self._dit: Any = None
        self._load_pending = Timings()  # load time not yet reported in a Video's timings

    # -- what it can do ---------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        c = self.config
        stride = math.lcm(self._spatial_stride * self._patch[1], self._spatial_stride * self._patch[2])
        fps_range = tuple(c.fps_range) if c.fps_range is not None else (c.fps, c.fps)
        return Capabilities(
            tasks=frozenset({"text-to-video"}),
            buckets=tuple((int(h), int(w)) for h, w in c.buckets),
            stride=stride,
            temporal_stride=self._temporal_stride,
            max_seconds=c.max_seconds,
            fps_range=(float(fps_range[0]), float(fps_range[1])),
            samplers=tuple(SAMPLERS),
            default_steps=c.steps,
            default_guidance=c.guidance,
            default_sampler=c.sampler,
            default_fps=c.fps,
            default_seconds=c.seconds,
            supports_negative_prompt=True,
            max_prompt_tokens=c.max_prompt_tokens,
        )

    def validate(self, request: GenerationRequest) -> ResolvedRequest:
        """Every limit of this model, checked with only the tokenizer loaded."""
        resolved = resolve_common(request, self.capabilities())
        encoder = self.text_encoder()
        limit = self.config.max_prompt_tokens
        for name, text in (("prompt", resolved.prompt), ("negative prompt", resolved.negative_prompt)):
            n = encoder.count_tokens(text)
            if n > limit:
                raise KinemaInputError(f"{name} is {n} tokens; the limit is {limit}")
        return resolved

    # -- loading ------------------------------------------------------------------------
    def text_encoder(self) -> Any:
        if self._text_encoder is None:
            from kinema.models.text import load_text_encoder

            with self._load_pending.measure("model_load"):
                self._text_encoder = load_text_encoder(self.config.text_encoder, max_tokens=self.config.max_prompt_tokens, **self.config.text_encoder_options)
        return self._text_encoder

    def load(self) -> None:
        """Load every weight now (a server calls this at start-up; otherwise the first generate does)."""
        self.text_encoder()
        if self._vae is None or self._dit is None:
            from kinema.models.io import load_pretrained

            with self._load_pending.measure("model_load"):
                self._vae = load_pretrained(self.model_dir / "vae", dtype=self.dtype).to(self.device)
                self._dit = load_pretrained(self.model_dir / "dit", dtype=self.dtype).to(self.device)
            if self._dit.config.text_dim != self._text_encoder.dim:
                raise ValueError(f"text encoder {self.config.text_encoder!r} gives {self._text_encoder.dim}-d tokens but the DiT expects {self._dit.config.text_dim}")
            if self._dit.config.latent_channels != self._vae.config.latent_channels:
                raise ValueError("DiT and VAE disagree on latent channels")

    # -- running ------------------------------------------------------------------------
    def generate(self, resolved: ResolvedRequest, progress: Progress | None = None) -> Video:
        """Same request and seed on the same machine -> the same frames, bit for bit."""
        self.load()
        timings = Timings(model_load=self._load_pending.get("model_load", 0.0))  # 0 when warm
        self._load_pending = Timings()
        with torch.inference_mode():
            with timings.measure("text_encoding"):
                guided = resolved.guidance != 1.0
                prompts = [resolved.prompt, resolved.negative_prompt] if guided else [resolved.prompt]
                hidden, mask = self._text_encoder.encode(prompts)
                hidden, mask = hidden.to(self.device, self.dtype), mask.to(self.device)
                cond_text, cond_mask = hidden[:1], mask[:1]
                uncond_text, uncond_mask = (hidden[1:], mask[1:]) if guided else (cond_text, cond_mask)

            with timings.measure("denoising"):
                shape = (1, *self._vae.latent_shape(resolved.generated_frames, resolved.height, resolved.width))
                # Noise comes from a CPU generator whatever the device, so a seed means the same video everywhere.
                noise = torch.randn(shape, generator=torch.Generator().manual_seed(resolved.seed), dtype=torch.float32)
                x = noise.to(self.device, self.dtype)
                _, t_lat, h, w = shape[1:]
                tokens = t_lat * (h // self._patch[1]) * (w // self._patch[2])
                s = self.config.shift
                shift = flow.shift_for_tokens(tokens, s.base_tokens, s.base_shift, s.max_tokens, s.max_shift)
                timesteps = flow.sampling_timesteps(resolved.steps, shift).to(self.device, self.dtype)

                def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                    return cfg_velocity(self._dit, x, t, cond_text, cond_mask, uncond_text, uncond_mask, resolved.guidance)

                latents = SAMPLERS[resolved.sampler](velocity, x, timesteps, progress)

            with timings.measure("vae_decoding"):
                video = self._vae.decode(self._vae.denormalize(latents), chunk_frames=self.config.vae_chunk_frames)
                frames = frames_to_uint8(video[0].float())[: resolved.num_frames].cpu().numpy()
        return Video(frames=frames, fps=resolved.fps, seed=resolved.seed, timings=dict(timings))
