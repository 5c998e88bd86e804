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
from typing import Any, Iterator

import numpy as np
import torch

from kinema.diffusion import flow
from kinema.diffusion.guidance import cfg_velocity
from kinema.diffusion.samplers import SAMPLERS
from kinema.engine.backend import Capabilities, Progress, ResolvedRequest, Video, resolve_common
from kinema.engine.timing import Timings
from kinema.errors import KinemaInputError
from kinema.request import MAX_CANDIDATES, GenerationRequest
from kinema.video.interpolate import StreamInterpolator

PIPELINE_FILE = "pipeline.json"
MATCHER_DIR = "matcher"  # optional: a video-text matcher (kinema.models.matcher) that picks the best of several candidates
HAND_OFF_FRAMES = 8  # generation frames over which an extension fades out the VAE's error at its seam (1 s at 8 fps)


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
    noise_frame_correlation: float = 0.0  # the training noise's correlation between latent frames (flow.frame_correlated_noise)
    camera_noise_warp: float = 0.0  # share of the noise that moves with a requested camera (diffusion.camera_noise), as trained
    vae_chunk_frames: int = 2  # latent frames per VAE decode chunk: bounds memory for long clips
    # What the model was trained to do (engine.backend.TASKS); interpolation needs no training.
    tasks: list[str] = field(default_factory=lambda: ["text-to-video", "interpolation"])
    window_frames: int = 17  # frames per window when chaining windows (tasks has "long-video")
    max_total_seconds: float = 120.0  # the limit with windows
    # Clips sampled per window by default, the best kept by the model's video-text matcher (`matcher/`); 1 = no choice.
    candidates: int = 1

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
        from kinema.engine.backend import TASKS

        unknown_tasks = set(cfg.tasks) - set(TASKS)
        if unknown_tasks or "text-to-video" not in cfg.tasks:
            raise ValueError(f"{PIPELINE_FILE}: tasks must include text-to-video and only {list(TASKS)}, got {cfg.tasks}")
        if not 0 <= cfg.noise_frame_correlation < 1:
            raise ValueError(f"{PIPELINE_FILE}: noise_frame_correlation must be in [0, 1), got {cfg.noise_frame_correlation}")
        if not 0 <= cfg.camera_noise_warp <= 1:
            raise ValueError(f"{PIPELINE_FILE}: camera_noise_warp must be in [0, 1], got {cfg.camera_noise_warp}")
        if not 1 <= cfg.candidates <= MAX_CANDIDATES:
            raise ValueError(f"{PIPELINE_FILE}: candidates must be between 1 and {MAX_CANDIDATES}, got {cfg.candidates}")
        if cfg.window_frames < 9 or (cfg.window_frames - 1) % 4:
            raise ValueError(f"{PIPELINE_FILE}: window_frames must be 1 + 4k and at least 9, got {cfg.window_frames}")
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


def crossfade(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Frames that two windows both made ([n, H, W, 3] uint8 each), faded from one to the other.

    Why: two windows decode their shared frames a little differently, so a hard
    cut from one window to the next shows a jump; fading across the n shared
    frames spreads it out, as long-video samplers blend their overlaps.
    """
    n = len(before)
    w = (np.arange(1, n + 1, dtype=np.float32) / (n + 1))[:, None, None, None]
    return np.rint((1.0 - w) * before + w * after).astype(np.uint8)


def hand_off(frames: np.ndarray, exact: np.ndarray, decoded: np.ndarray, span: int) -> np.ndarray:
    """`frames` ([n, H, W, 3] uint8) with the seam from an exactly kept frame smoothed away.

    Why: a video given to extend is kept exactly, while the frames the model adds
    come out of the VAE decoder, whose round trip of that same last frame
    (`decoded`) differs from it (`exact`) by the VAE's own error, larger than the
    motion between two frames. Adding that difference to the first new frames,
    fading linearly to nothing over `span` frames, makes the cut continue where the
    given video stopped and lets the change spread over the span instead.
    """
    n = min(span, len(frames))
    if n == 0:
        return frames
    residual = exact.astype(np.float32) - decoded.astype(np.float32)
    weights = (1.0 - np.arange(1, n + 1, dtype=np.float32) / (n + 1))[:, None, None, None]
    out = frames.copy()
    out[:n] = np.clip(np.rint(frames[:n].astype(np.float32) + weights * residual), 0, 255).astype(np.uint8)
    return out


def candidate_generator(seed: int, window: int, index: int) -> torch.Generator:
    """The noise generator of candidate `index` (>= 1) of a window: fixed by the request's seed, so best-of-N is reproducible."""
    state = np.random.SeedSequence([seed, window, index]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


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
        self.has_matcher = (self.model_dir / MATCHER_DIR / "model.safetensors").is_file()
        if self.config.candidates > 1 and not self.has_matcher:
            raise KinemaInputError(f"{self.model_dir / PIPELINE_FILE} asks for {self.config.candidates} candidates but the model has no {MATCHER_DIR}/ to choose among them")
        self._text_encoder: Any = None
        self._vae: Any = None
        self._dit: Any = None
        self._matcher: Any = None
        self._load_pending = Timings()  # load time not yet reported in a Video's timings

    # -- what it can do ---------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        c = self.config
        stride = math.lcm(self._spatial_stride * self._patch[1], self._spatial_stride * self._patch[2])
        fps_range = tuple(c.fps_range) if c.fps_range is not None else (c.fps, c.fps)
        windows = "long-video" in c.tasks
        return Capabilities(
            tasks=frozenset(c.tasks),
            buckets=tuple((int(h), int(w)) for h, w in c.buckets),
            stride=stride,
            temporal_stride=self._temporal_stride,
            max_seconds=c.max_total_seconds if windows else c.max_seconds,
            max_window_seconds=c.max_seconds if windows else None,
            fps_range=(float(fps_range[0]), float(fps_range[1])),
            samplers=tuple(SAMPLERS),
            default_steps=c.steps,
            default_guidance=c.guidance,
            default_sampler=c.sampler,
            default_fps=c.fps,
            default_seconds=c.seconds,
            supports_negative_prompt=True,
            max_prompt_tokens=c.max_prompt_tokens,
            max_candidates=MAX_CANDIDATES if self.has_matcher else 1,
            default_candidates=c.candidates,
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
                if self.has_matcher:
                    self._matcher = load_pretrained(self.model_dir / MATCHER_DIR, dtype=self.dtype).to(self.device).eval()
            if self._dit.config.text_dim != self._text_encoder.dim:
                raise ValueError(f"text encoder {self.config.text_encoder!r} gives {self._text_encoder.dim}-d tokens but the DiT expects {self._dit.config.text_dim}")
            if self._dit.config.latent_channels != self._vae.config.latent_channels:
                raise ValueError("DiT and VAE disagree on latent channels")

    # -- running ------------------------------------------------------------------------
    def generate(self, resolved: ResolvedRequest, progress: Progress | None = None) -> Video:
        """Same request and seed on the same machine -> the same frames, bit for bit."""
        timings = Timings()
        chunks = list(self.stream(resolved, progress, timings))
        frames = np.concatenate(chunks) if chunks else np.zeros((0, resolved.height, resolved.width, 3), np.uint8)
        return Video(frames=frames, fps=resolved.fps, seed=resolved.seed, timings=dict(timings))

    def stream(self, resolved: ResolvedRequest, progress: Progress | None = None, timings: Timings | None = None) -> Iterator[np.ndarray]:
        """Frames (uint8 [n, H, W, 3] chunks at the output fps) as each window is decoded.

        Memory stays flat with duration: one window of latents and frames is
        alive at a time, and the caller writes each chunk as it comes.
        """
        from kinema.conditioning.plan import OVERLAP_FRAMES
        from kinema.engine.windows import plan_windows

        self.load()
        timings = timings if timings is not None else Timings()
        timings["model_load"] = timings.get("model_load", 0.0) + self._load_pending.get("model_load", 0.0)  # 0 when warm
        self._load_pending = Timings()
        extend = resolved.extend_frames
        prefix = OVERLAP_FRAMES if extend is not None else 0
        windows = plan_windows(prefix + resolved.generated_frames, self._window_frames(resolved, prefix), OVERLAP_FRAMES)
        needs_first = resolved.loop and not any(g.frame == 0 for g in resolved.images)
        total_steps = resolved.steps * (len(windows) + int(needs_first))
        done = [0]

        def step_progress(step: int, _total: int) -> None:
            if progress is not None:
                progress(done[0] + step, total_steps)

        interp = StreamInterpolator(resolved.interpolate)
        base_target = resolved.num_frames // resolved.interpolate
        emitted = 0
        with torch.inference_mode():
            text = self._text(resolved, timings)
            generator = torch.Generator().manual_seed(resolved.seed)
            given = {g.frame + prefix: g.pixels for g in resolved.images}
            if needs_first:  # a loop with no first image: draw one, then make it the first and last frame
                with timings.measure("denoising"):
                    first_window = self._sample(windows[0][1], {}, None, text, resolved, generator, step_progress, timings, window=len(windows))
                done[0] += resolved.steps
                with timings.measure("vae_decoding"):
                    first = self._decode(first_window)[0]
                generator = torch.Generator().manual_seed(resolved.seed)
            if resolved.loop:
                frame0 = given.get(prefix, first if needs_first else None)
                given[prefix] = frame0
                given[prefix + resolved.generated_frames - 1] = frame0
            tail: np.ndarray | None = None  # the previous window's last frames: the next window's condition
            held: np.ndarray | None = None  # the previous window's last frames, not yet written: cross-faded
            if extend is not None:
                tail = extend[-OVERLAP_FRAMES:]
                out = interp.push(extend)  # the given video is kept exactly, so its seam is a plain cut
                emitted += len(extend)
                if len(out):
                    yield out
            for index, (start, length) in enumerate(windows):
                local = {f - start: px for f, px in given.items() if start <= f < start + length}
                with timings.measure("denoising"):
                    latents = self._sample(length, local, tail, text, resolved, generator, step_progress, timings, window=index)
                done[0] += resolved.steps
                with timings.measure("vae_decoding"):
                    frames = self._decode(latents)
                new = frames if tail is None else frames[OVERLAP_FRAMES:]
                if extend is not None and start == 0:  # the first new frames continue the given video's last one
                    new = hand_off(new, extend[-1], frames[OVERLAP_FRAMES - 1], HAND_OFF_FRAMES)
                if held is not None:  # held = the unwritten end of the frames this window shares
                    new = np.concatenate([crossfade(held, frames[OVERLAP_FRAMES - len(held) : OVERLAP_FRAMES]), new])
                tail = frames[-OVERLAP_FRAMES:]
                if len(windows) > 1:  # keep this window's overlap back, to fade into the next one
                    keep = min(OVERLAP_FRAMES, len(new))
                    new, held = new[: len(new) - keep], new[len(new) - keep :]
                new = new[: max(0, base_target - emitted)]
                emitted += len(new)
                with timings.measure("interpolation"):
                    out = interp.push(new)
                if len(out):
                    yield out
            if held is not None:
                out = interp.push(held[: max(0, base_target - emitted)])
                if len(out):
                    yield out
        rest = interp.finish()
        if len(rest):
            yield rest

    def _window_frames(self, resolved: ResolvedRequest, prefix: int) -> int:
        """One window for a clip the model makes in one go; else windows of `window_frames`."""
        c = self.config
        one_go = 1 + self._temporal_stride * int(c.max_seconds * resolved.generation_fps / self._temporal_stride)
        total = prefix + resolved.generated_frames
        return total if prefix == 0 and total <= one_go else c.window_frames

    def _text(self, resolved: ResolvedRequest, timings: Timings) -> tuple[torch.Tensor, ...]:
        with timings.measure("text_encoding"):
            guided = resolved.guidance != 1.0
            prompts = [resolved.prompt, resolved.negative_prompt] if guided else [resolved.prompt]
            hidden, mask = self._text_encoder.encode(prompts)
            hidden, mask = hidden.to(self.device, self.dtype), mask.to(self.device)
            cond_text, cond_mask = hidden[:1], mask[:1]
            uncond_text, uncond_mask = (hidden[1:], mask[1:]) if guided else (cond_text, cond_mask)
        return cond_text, cond_mask, uncond_text, uncond_mask

    def _encode_pixels(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [T, H, W, 3] (T = 1 + 4k) -> normalised latents [C, T', h, w]."""
        from kinema.train.data import to_model_video

        z = self._vae.encode(to_model_video(frames).to(self.device, self.dtype))
        return self._vae.normalize(z)[0]

    def _sample(
        self,
        length: int,
        images: dict[int, np.ndarray],
        tail: np.ndarray | None,
        text: tuple[torch.Tensor, ...],
        resolved: ResolvedRequest,
        generator: torch.Generator,
        progress: Progress,
        timings: Timings,
        window: int = 0,
    ) -> torch.Tensor:
        """Latents [1, C, T', h, w] of one window: `tail` frames continue it, `images` pin frames.

        With `resolved.candidates` = k > 1, k clips are sampled in one batch (the first from
        `generator`, as with k = 1; the others from seeds derived from the request's seed, this
        window and their index) and the matcher keeps the one that best matches the prompt.
        """
        from kinema.conditioning.camera import camera_tensor
        from kinema.conditioning.tasks import latent_index

        shape = (1, *self._vae.latent_shape(length, resolved.height, resolved.width))
        c, t_lat, h, w = shape[1:]
        cond = torch.zeros(1, c + 1, t_lat, h, w, dtype=self.dtype, device=self.device)
        pinned: dict[int, torch.Tensor] = {}  # latent frames whose clean value is known exactly
        with timings.measure("vae_encoding"):
            if tail is not None:
                z = self._encode_pixels(tail)
                cond[0, :c, : z.shape[1]], cond[0, c, : z.shape[1]] = z, 1.0
                pinned.update({j: z[:, j] for j in range(z.shape[1])})
            for frame, pixels in images.items():
                z = self._encode_pixels(pixels[None])[:, 0]
                j = latent_index(frame)
                cond[0, :c, j], cond[0, c, j] = z, 1.0
                if frame == 0:  # the causal VAE encodes frame 0 alone: this is its exact latent
                    pinned[0] = z
        # Noise comes from a CPU generator whatever the device, so a seed means the same video everywhere.
        k = resolved.candidates
        camera = camera_tensor([resolved.camera] * k) if self._dit.config.camera_dim > 0 else None
        generators = [generator] + [candidate_generator(resolved.seed, window, j) for j in range(1, k)]
        x = torch.cat([self._initial_noise(shape, camera, g) for g in generators]).to(self.device, self.dtype)
        cond = cond.expand(k, -1, -1, -1, -1)
        timesteps = flow.sampling_timesteps(resolved.steps, self.sampling_shift(t_lat, h, w)).to(self.device, self.dtype)
        extra: dict[str, torch.Tensor] = {"cond": cond}
        if camera is not None:
            extra["camera"] = camera.to(self.device, self.dtype)
        cond_text, cond_mask, uncond_text, uncond_mask = (v.expand(k, *v.shape[1:]) for v in text)

        # A self-conditioned DiT reads the last step's guided clean-latent estimate in both branches (zeros at first).
        estimate = torch.zeros_like(x) if self._dit.config.self_condition else None

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            nonlocal estimate
            v = cfg_velocity(self._dit, x, t, cond_text, cond_mask, uncond_text, uncond_mask, resolved.guidance, x0_estimate=estimate, **extra)
            if estimate is not None:
                estimate = flow.clean_estimate(x, v, t)
            return v

        latents = SAMPLERS[resolved.sampler](velocity, x, timesteps, progress)
        for j, z in pinned.items():
            latents[:, :, j] = z
        if k == 1:
            return latents
        best = int(self._matcher(latents, cond_text, cond_mask).argmax())
        return latents[best : best + 1]

    def _initial_noise(self, shape: tuple[int, ...], camera: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        """One clip's starting noise, drawn as the DiT's training noise was: moving with a given camera if it was trained so."""
        if self.config.camera_noise_warp > 0 and camera is not None:
            from kinema.diffusion.camera_noise import camera_warped_noise

            return camera_warped_noise(shape, camera[:1], generator, self.config.camera_noise_warp, self.config.fps, self._vae.temporal_stride)
        return flow.frame_correlated_noise(shape, generator, self.config.noise_frame_correlation)

    def sampling_shift(self, t_lat: int, h: int, w: int) -> float:
        """The timestep shift for a latent of T' x h x w (it grows with the token count, as in training)."""
        tokens = t_lat * (h // self._patch[1]) * (w // self._patch[2])
        s = self.config.shift
        return flow.shift_for_tokens(tokens, s.base_tokens, s.base_shift, s.max_tokens, s.max_shift)

    def _decode(self, latents: torch.Tensor) -> np.ndarray:
        video = self._vae.decode(self._vae.denormalize(latents), chunk_frames=self.config.vae_chunk_frames)
        return frames_to_uint8(video[0].float()).cpu().numpy()
