"""`Pipeline`: the Python API in three lines.

    from kinema import Pipeline
    pipe = Pipeline.from_builtin()
    pipe.generate("a red circle moving left", seed=0).save("out.mp4")

It is a thin shell over a `Backend`: options become a `GenerationRequest`
(the same validation as the CLI and the HTTP service), the backend resolves
and runs it. The backend keeps its models loaded, so keep the pipeline around
to generate many videos fast.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from kinema.engine.backend import Backend, Capabilities, Progress, ResolvedRequest, Video
from kinema.errors import KinemaInputError
from kinema.request import GenerationRequest, make_request


def builtin_model_dir() -> Path:
    """Where the shipped model lives inside the installed package."""
    return Path(str(resources.files("kinema").joinpath("assets", "builtin")))


class Pipeline:
    def __init__(self, backend: Backend):
        self.backend = backend

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, device: str = "cpu") -> Pipeline:
        """A kinema model directory (pipeline.json, vae/, dit/). Weights load on the first generate."""
        from kinema.engine.native import NativeBackend

        path = Path(model_dir)
        if not path.is_dir():
            raise KinemaInputError(f"model directory {path} does not exist")
        return cls(NativeBackend(path, device=device))

    @classmethod
    def from_builtin(cls, device: str = "cpu") -> Pipeline:
        """The small model shipped in the package (kinema/assets/builtin/)."""
        from kinema.engine.native import is_model_dir

        path = builtin_model_dir()
        if not is_model_dir(path):
            raise KinemaInputError(
                f"the built-in model is not installed at {path}; train one with `kinema train configs/builtin.toml` and pass its model directory (--model / from_pretrained)"
            )
        return cls.from_pretrained(path, device=device)

    @classmethod
    def from_model(cls, name_or_path: str | Path | None = None, device: str = "cpu", options: Any = None) -> Pipeline:
        """Any model `--model` accepts: None/"builtin", a kinema or diffusers model directory, or a hub id.
        `device`: "cpu", "cuda", "cuda:N", "mps" or "auto" (CUDA when present). `options`
        (kinema.engine.diffusers.DiffusersOptions) sets dtype, offload, VAE tiling/slicing, attention backend
        and compile for diffusers models; kinema's own model takes only the dtype and refuses the rest."""
        from kinema.engine.models import resolve_backend

        return cls(resolve_backend(name_or_path, device=device, options=options))

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities()

    def load(self) -> Pipeline:
        """Load all weights now instead of on the first generate (warm-up for servers and benchmarks)."""
        load = getattr(self.backend, "load", None)
        if load is not None:
            load()
        return self

    def validate(self, request: GenerationRequest) -> ResolvedRequest:
        """Check every limit and fill in defaults without running anything heavy."""
        return self.backend.validate(request)

    def run(self, resolved: ResolvedRequest, progress: Progress | None = None) -> Video:
        return self.backend.generate(resolved, progress)

    def stream(self, resolved: ResolvedRequest, progress: Progress | None = None, timings: dict[str, float] | None = None) -> Iterator[np.ndarray]:
        """Frame chunks (uint8 [n, H, W, 3]) as they are made, for writing long videos without holding them.

        Backends without streaming yield their whole video as one chunk.
        """
        stream = getattr(self.backend, "stream", None)
        if stream is not None:
            yield from stream(resolved, progress, timings)
            return
        video = self.backend.generate(resolved, progress)
        if timings is not None:
            timings.update(video.timings)
        yield video.frames

    def generate(self, prompt: str, *, progress: Progress | None = None, **options: Any) -> Video:
        """Options are GenerationRequest fields: seed, steps, guidance, negative_prompt, sampler, candidates,
        width, height, seconds, fps, image, last_image, keyframes, video, loop, interpolate,
        aspect_ratio, camera, image_fit. Images may be paths, uint8 arrays [H, W, 3] or PIL images.
        Unknown options and out-of-range values raise KinemaInputError."""
        with tempfile.TemporaryDirectory(prefix="kinema-images-") as tmp:
            options = _images_to_files(options, Path(tmp))
            request = make_request(prompt=prompt, **options)
            return self.run(self.validate(request), progress)


def _images_to_files(options: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """In-memory images (arrays, PIL) become PNG files: the request vocabulary holds paths only,
    so it stays the same for the CLI, the Python API and the HTTP service."""
    from PIL import Image

    def to_path(value: Any, name: str) -> Any:
        if isinstance(value, np.ndarray):
            value = Image.fromarray(np.ascontiguousarray(value))
        if isinstance(value, Image.Image):
            path = tmp / f"{name}.png"
            value.save(path)
            return str(path)
        return str(value) if isinstance(value, Path) else value

    out = dict(options)
    for key in ("image", "last_image", "video"):
        if out.get(key) is not None:
            out[key] = to_path(out[key], key)
    if out.get("keyframes"):
        out["keyframes"] = [
            {**dict(k), "image": to_path(dict(k)["image"], f"keyframe{i}")} if isinstance(k, dict) else k for i, k in enumerate(out["keyframes"])
        ]
    return out
