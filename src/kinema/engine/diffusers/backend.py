"""`DiffusersBackend`: Wan, LTX-Video, CogVideoX, HunyuanVideo, SkyReels-V2 and Mochi behind kinema's Backend protocol.

    capabilities()  the family's capability map, read from the model's JSON (no weights)
    validate()      snap size and frame count to the family's rules (reported in `notes`), fill
                    defaults, load and fit the request's images, refuse what the family lacks
    generate()      one diffusers call per window; windows chain by the family's own conditioning

Sizes are not a fixed bucket list as for the built-in model: any size the
family accepts works, rounded up to its multiple of 16 or 32, and frame
counts to its 1 + 4k (or 1 + 8k) rule; each adjustment is a note the CLI
prints. Weights load on the first generate and stay loaded.

Long videos: a family that conditions on images (Wan I2V/TI2V, CogVideoX I2V,
LTX, FramePack, SkyReels-V2 I2V and diffusion forcing) makes clips longer than one window by chaining windows, each
starting from the previous one's last frame (LTX: its last 1 + stride frames,
as a video condition), so motion carries across seams. FramePack makes long
clips in one call, its own way.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from kinema.engine.backend import ASPECT_RATIOS, Capabilities, Progress, ResolvedRequest, Video, resolve_common
from kinema.engine.diffusers.cost import Cost, estimate_cost
from kinema.engine.diffusers.families import ALL_TASKS, EXTEND, FLF, I2V, Geometry, snap_size
from kinema.engine.diffusers.loading import ModelInfo, inspect_model_dir, load_pipeline, pipeline_for
from kinema.engine.diffusers.memory import DiffusersOptions, apply_options, check_options, check_vae_supports, reapply_offload, resolve_dtype
from kinema.engine.diffusers.request_map import Window, common_kwargs, context_frames, window_call
from kinema.engine.timing import Timings
from kinema.errors import KinemaInputError
from kinema.request import GenerationRequest

LONG_VIDEO_MAX_SECONDS = 120.0  # chained windows: the same limit as the built-in model
MAX_PROMPT_TOKENS = {"wan": 512, "ltx": 128, "hunyuan": 256, "skyreels": 512}  # CogVideoX, Mochi: their transformer's text length


class DiffusersBackend:
    """Runs a diffusers model directory of a supported family. Construction reads JSON only."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", options: DiffusersOptions | None = None, name: str | None = None):
        from kinema.engine.models import resolve_device

        self.info: ModelInfo = inspect_model_dir(model_dir, name)
        self.device = resolve_device(device)
        self.options = options or DiffusersOptions()
        check_options(self.options, self.device, self.info.name)
        check_vae_supports(self.options, self.info.components["vae"][1], self.info.name)
        self.family = self.info.family
        self.geometry: Geometry = self.family.geometry(self.info.configs)
        self.routes = self.family.routes(self.info.configs)
        self.window_frames = self._check_window(self.options.window_frames)
        self._pipe: Any = None
        self._views: dict[str, Any] = {}  # pipeline class -> the loaded components under that class
        self._tokenizer: Any = None
        self._load_pending = Timings()

    # -- what it can do -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.info.name

    def tasks(self) -> frozenset[str]:
        tasks = set(self.routes)
        if FLF in tasks and self.family.name == "ltx":
            tasks.update({"last-frame", "keyframes"})  # LTX conditions on any frame, not just the ends
        if I2V in tasks or EXTEND in tasks:
            tasks.add("long-video")  # windows chain through image conditioning
        tasks.add("interpolation")
        return frozenset(tasks)

    def capabilities(self) -> Capabilities:
        g = self.geometry
        h, w = g.default_size
        sizes = [(h, w)] if g.fixed_size else [(h, w), (w, h), snap_size(min(h, w), min(h, w), g)]
        long_video = "long-video" in self.tasks()
        window_seconds = (self.window_frames - 1) / g.fps
        return Capabilities(
            tasks=self.tasks(),
            buckets=tuple(dict.fromkeys(sizes)),
            stride=g.spatial_multiple,
            temporal_stride=g.temporal_stride,
            max_seconds=LONG_VIDEO_MAX_SECONDS if long_video else window_seconds,
            max_window_seconds=window_seconds if long_video and self.family.name != "hunyuan" else None,
            fps_range=g.fps_range,
            samplers=(self.scheduler_name,),
            default_steps=self.family.default_steps,
            default_guidance=self.family.default_guidance,
            default_sampler=self.scheduler_name,
            default_fps=g.fps,
            default_seconds=(g.default_frames - 1) / g.fps,
            supports_negative_prompt=self.family.supports_negative_prompt,
            max_prompt_tokens=self.max_prompt_tokens,
        )

    @property
    def model_id(self) -> str:
        """What decides this backend's output, for caches keyed by model (the studio's shot cache): the
        directory, every config, each weight file's name, size and modification time (not its bytes: a
        checkpoint is tens of GB), and the options that change pixels (dtype, VAE tiling, attention, windows)."""
        import hashlib
        import json

        h = hashlib.sha256(json.dumps(self.info.configs, sort_keys=True, default=str).encode())
        for p in sorted(self.info.path.rglob("*")):
            rel = p.relative_to(self.info.path)
            if p.is_file() and not any(part.startswith(".") for part in rel.parts):
                st = p.stat()
                h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}".encode())
        o = self.options
        h.update(f"{resolve_dtype(o, self.device, self.name)}:{o.vae_tiling}:{o.attention_backend}:{self.window_frames}".encode())
        return f"{self.info.path.resolve()}:{h.hexdigest()[:16]}"

    @property
    def scheduler_name(self) -> str:
        return str(self.info.configs["scheduler"].get("_class_name", "scheduler"))

    @property
    def max_prompt_tokens(self) -> int:
        if self.family.name == "cogvideox":
            return int(self.info.configs["transformer"].get("max_text_seq_length", 226))
        if self.family.name == "mochi":
            return int(self.info.configs["transformer"].get("max_sequence_length", 256))
        return MAX_PROMPT_TOKENS[self.family.name]

    def cost(self, resolved: ResolvedRequest) -> Cost:
        """FLOPs of the whole request, for quotes and the planner: the first window's cost times the
        number of windows (an upper bound by at most one window: the last may be shorter)."""
        plan = self._window_plan(resolved.generated_frames, self._first_shared(resolved))
        one = estimate_cost(self.family, self.info.configs, plan[0][0], resolved.height, resolved.width, resolved.steps, resolved.guidance)
        return dataclasses.replace(one, windows=one.windows * len(plan))

    def estimate_flops(self, resolved: ResolvedRequest) -> float:
        """FLOPs of one transformer forward over the whole request (every window), the unit the
        service's quote multiplies by passes and steps. `cost()` has the passes this family really runs."""
        c = self.cost(resolved)
        return c.flops_per_pass * c.windows

    def _check_window(self, frames: int | None) -> int:
        g = self.geometry
        if frames is None:
            return g.max_frames
        overlap = context_frames(self.family, g.temporal_stride)
        if (frames - 1) % g.temporal_stride or frames <= overlap or frames > g.max_frames:
            raise KinemaInputError(
                f"model {self.name}: window_frames {frames} must be 1 + {g.temporal_stride}k, more than {overlap} and at most {g.max_frames}"
            )
        return frames

    # -- validation ---------------------------------------------------------------------
    def validate(self, request: GenerationRequest) -> ResolvedRequest:
        """Every limit of this model, with only JSON and the tokenizer read; sizes snap, with a note."""
        caps = self.capabilities()
        height, width, size_note = self._snap_request_size(request, caps)
        fixed = dataclasses.replace(caps, buckets=((height, width),))
        exact = request.model_copy(update={"width": width, "height": height, "aspect_ratio": None})
        try:
            resolved = resolve_common(exact, fixed)
        except KinemaInputError as exc:
            raise KinemaInputError(f"model {self.name}: {exc}") from None
        if resolved.loop and not any(g.role == "first" for g in resolved.images):
            raise KinemaInputError(f"model {self.name}: a loop needs the first image (--image) with this model")
        if request.camera is not None:
            raise KinemaInputError(f"model {self.name}: {self.family.title} has no camera control")
        notes = list(resolved.notes)
        if size_note:
            notes.append(size_note)
        gen_fps = resolved.generation_fps
        asked = max(1, round((request.seconds if request.seconds is not None else caps.default_seconds) * gen_fps))
        if resolved.generated_frames != asked:
            notes.append(
                f"{self.family.title} makes 1 + {self.geometry.temporal_stride}k frames: generating {resolved.generated_frames} "
                f"({(resolved.generated_frames - 1) / gen_fps:.2f} s at {gen_fps:g} fps), delivering {resolved.num_frames // resolved.interpolate}"
            )
        self._check_tokens(resolved)
        return dataclasses.replace(resolved, notes=tuple(notes))

    def _snap_request_size(self, request: GenerationRequest, caps: Capabilities) -> tuple[int, int, str | None]:
        g = self.geometry
        default_h, default_w = g.default_size
        if request.aspect_ratio is not None:  # keep the default's area at the asked shape
            ratio = ASPECT_RATIOS[request.aspect_ratio]
            area = default_h * default_w
            want_h, want_w = math.sqrt(area / ratio), math.sqrt(area * ratio)
        elif request.width is None and request.height is None:
            return default_h, default_w, None
        elif request.width is None or request.height is None:  # one side: keep the default's shape
            scale = (request.height / default_h) if request.width is None else (request.width / default_w)
            want_h, want_w = request.height or default_h * scale, request.width or default_w * scale
        else:
            want_h, want_w = request.height, request.width
        height, width = snap_size(int(round(want_h)), int(round(want_w)), g)
        if g.fixed_size and (height, width) != g.default_size:
            raise KinemaInputError(
                f"model {self.name}: this {self.family.title} checkpoint has learned positions for one size only: {default_w}x{default_h}"
            )
        if max(height, width) > g.max_side:
            raise KinemaInputError(f"model {self.name}: size {width}x{height} is over the limit of {g.max_side} pixels a side")
        asked = (request.height, request.width)
        if request.aspect_ratio is not None:
            return height, width, f"aspect ratio {request.aspect_ratio} -> {width}x{height} (multiples of {g.spatial_multiple})"
        if asked != (height, width):
            return height, width, f"size snapped to {width}x{height}: {self.family.title} needs multiples of {g.spatial_multiple}"
        return height, width, None

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            with self._load_pending.measure("model_load"):
                self._tokenizer = AutoTokenizer.from_pretrained(str(self.info.path / "tokenizer"), local_files_only=True)
        return self._tokenizer

    def _check_tokens(self, resolved: ResolvedRequest) -> None:
        limit = self.max_prompt_tokens
        tok = self.tokenizer()
        for label, text in (("prompt", resolved.prompt), ("negative prompt", resolved.negative_prompt)):
            if text:
                n = len(tok(text, add_special_tokens=True)["input_ids"])
                if n > limit:
                    raise KinemaInputError(f"model {self.name}: the {label} is {n} tokens; the limit is {limit}")

    # -- loading ------------------------------------------------------------------------
    def load(self) -> None:
        if self._pipe is not None:
            return
        dtype = resolve_dtype(self.options, self.device, self.name)
        with self._load_pending.measure("model_load"):
            pipe = load_pipeline(self.info, dtype)
            pipe.set_progress_bar_config(disable=True)  # kinema shows its own bar
            self._pipe = apply_options(pipe, self.options, self.device)

    def pipeline(self, class_name: str) -> Any:
        """The loaded components under the pipeline class a window needs (made once per class).

        Tiling, slicing, the attention backend and compile live on the shared modules and carry over; CPU
        offload hooks follow each pipeline's own model order, so diffusers' advice for `from_pipe` is
        followed: offload is enabled again on the new pipeline."""
        self.load()
        if class_name not in self._views:
            pipe = pipeline_for(self._pipe, class_name)
            if pipe is not self._pipe:
                reapply_offload(pipe, self.options, self.device)
            pipe.set_progress_bar_config(disable=True)
            self._views[class_name] = pipe
        return self._views[class_name]

    # -- running ------------------------------------------------------------------------
    def generate(self, resolved: ResolvedRequest, progress: Progress | None = None) -> Video:
        timings = Timings()
        chunks = list(self.stream(resolved, progress, timings))
        frames = np.concatenate(chunks) if chunks else np.zeros((0, resolved.height, resolved.width, 3), np.uint8)
        return Video(frames=frames, fps=resolved.fps, seed=resolved.seed, timings=dict(timings))

    def _first_shared(self, resolved: ResolvedRequest) -> int:
        """Frames of a video being extended that the first window continues from (0 for a fresh clip)."""
        if resolved.extend_frames is None:
            return 0
        return min(context_frames(self.family, self.geometry.temporal_stride), len(resolved.extend_frames))

    def _window_plan(self, generated: int, first_shared: int = 0) -> list[tuple[int, int]]:
        """[(frames this window makes, frames it shares with what came before)] covering `generated` new frames.

        Every window is 1 + stride * k frames long; a window after the first
        repeats the last `overlap` frames (1 + stride * m of them), so lengths
        stay aligned and a last image given for the final frame of a fresh clip
        lands exactly on the last window's end.
        """
        g = self.geometry
        overlap = context_frames(self.family, g.temporal_stride)
        window = self.window_frames
        out: list[tuple[int, int]] = []
        remaining = generated
        shared = first_shared
        while remaining > 0:
            want = remaining + shared
            length = min(window, 1 + g.temporal_stride * math.ceil((want - 1) / g.temporal_stride))
            out.append((length, shared))
            remaining -= length - shared
            shared = overlap
        return out

    def _sections(self, length: int) -> int:
        """Denoising loops one call runs: FramePack denoises its clip section by section."""
        if self.info.pipeline_class != "HunyuanVideoFramepackPipeline":
            return 1
        window = (int(self.family.call_defaults(self.info.configs)["latent_window_size"]) - 1) * self.geometry.temporal_stride + 1
        return max(1, (length + window - 1) // window)

    def stream(self, resolved: ResolvedRequest, progress: Progress | None = None, timings: Timings | None = None) -> Iterator[np.ndarray]:
        """Frame chunks (uint8 [n, H, W, 3], output fps) as each window finishes."""
        import torch

        from kinema.video.interpolate import StreamInterpolator

        timings = timings if timings is not None else Timings()
        self.load()
        timings["model_load"] = timings.get("model_load", 0.0) + self._load_pending.get("model_load", 0.0)
        self._load_pending = Timings()

        base_target = resolved.num_frames // resolved.interpolate
        extend = resolved.extend_frames
        plan = self._window_plan(resolved.generated_frames, self._first_shared(resolved))
        total_steps = sum(resolved.steps * self._sections(length) for length, _ in plan)
        done = [0]
        interp = StreamInterpolator(resolved.interpolate)
        emitted = 0
        tail: np.ndarray | None = None
        if extend is not None:  # the clip continues from the given video's last frames, which lead the output
            tail = extend[-self._first_shared(resolved):]
            out = interp.push(extend[:base_target])
            emitted += min(len(extend), base_target)
            if len(out):
                yield out
        given = {g.frame: g for g in resolved.images}
        first_image = given[0].pixels if 0 in given and given[0].role == "first" else None
        last_image = next((g.pixels for g in resolved.images if g.role == "last"), None)
        if resolved.loop:
            last_image = first_image
        shared_kw = common_kwargs(
            self.family, self.info.configs, prompt=resolved.prompt, negative_prompt=resolved.negative_prompt, steps=resolved.steps,
            guidance=resolved.guidance, height=resolved.height, width=resolved.width, num_frames=0, fps=resolved.generation_fps,
        )  # fmt: skip
        generator = torch.Generator("cpu").manual_seed(resolved.seed)
        position = 0  # new frames made so far; a window starts `shared` frames before this
        for i, (length, shared) in enumerate(plan):
            start = position - shared
            is_last_window = i == len(plan) - 1
            window = Window(length=length)
            if tail is not None and shared:
                window.context = tail[-shared:]
            elif first_image is not None and start == 0:
                window.first = first_image
            if is_last_window and last_image is not None:
                window.last = last_image
            window.keyframes = [(g.frame - start, g.pixels) for g in resolved.images if g.role == "keyframe" and start + shared <= g.frame < start + length]
            cls, cond = window_call(self.family, self.info.configs, self.routes, window, self.name)
            pipe = self.pipeline(cls)

            def on_step(_pipe: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
                done[0] += 1
                if progress is not None:
                    progress(min(done[0], total_steps), total_steps)
                return kwargs

            call = dict(shared_kw, num_frames=length, generator=generator, output_type="np", callback_on_step_end=on_step, **cond)
            steps_before = done[0]
            t0 = time.perf_counter()
            with torch.inference_mode():
                frames = pipe(**call).frames
            timings["generation"] = timings.get("generation", 0.0) + time.perf_counter() - t0
            done[0] = steps_before + resolved.steps * self._sections(length)
            frames = _to_uint8(frames)
            if len(frames) < length:
                raise RuntimeError(f"{cls} returned {len(frames)} frames for a {length}-frame window")
            frames = frames[:length]
            new = frames[shared:]
            tail = frames
            position += len(new)
            new = new[: max(0, base_target - emitted)]
            emitted += len(new)
            with timings.measure("interpolation"):
                out = interp.push(new)
            if len(out):
                yield out
        rest = interp.finish()
        if len(rest):
            yield rest


def _to_uint8(frames: Any) -> np.ndarray:
    """A pipeline's `np` output (float [B, T, H, W, 3] in [0, 1], or a list of such) -> uint8 [T, H, W, 3]."""
    arr = np.asarray(frames[0] if isinstance(frames, list) else frames)
    if arr.ndim == 5:
        arr = arr[0]
    return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)


__all__ = ["DiffusersBackend", "DiffusersOptions", "ALL_TASKS"]
