"""Open video models (Wan, LTX-Video, CogVideoX, HunyuanVideo, SkyReels-V2, Mochi) through Hugging Face diffusers.

    families.py     capability map per family: tasks, size/frame rules, defaults, VRAM figures
    loading.py      check a model directory from its JSON; load a pipeline; share components
    request_map.py  our request -> the family's pipeline class and arguments, per window
    memory.py       dtype, CPU offload, VAE tiling/slicing, attention backend, torch.compile
    cost.py         FLOPs per generated token from each family's transformer config
    backend.py      DiffusersBackend (the engine's Backend protocol)
    tiny.py         tiny random pipelines of every family, for tests and benchmarks

Nothing here imports diffusers or torch at module import: `kinema models` and
validation stay fast, and kinema works without the `diffusers` extra.
"""

from kinema.engine.diffusers.families import FAMILIES
from kinema.engine.diffusers.memory import DiffusersOptions

__all__ = ["FAMILIES", "DiffusersOptions", "DiffusersBackend"]


def __getattr__(name: str):  # DiffusersBackend imports the engine; load it on first use
    if name == "DiffusersBackend":
        from kinema.engine.diffusers.backend import DiffusersBackend

        return DiffusersBackend
    raise AttributeError(name)
