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

from importlib import resources
from pathlib import Path
from typing import Any

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

    def generate(self, prompt: str, *, progress: Progress | None = None, **options: Any) -> Video:
        """Options are GenerationRequest fields: seed, steps, guidance, negative_prompt, sampler,
        width, height, seconds, fps. Unknown options and out-of-range values raise KinemaInputError."""
        request = make_request(prompt=prompt, **options)
        return self.run(self.validate(request), progress)
