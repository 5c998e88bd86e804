"""Memory and speed options a GPU user expects, checked against the device before anything loads.

    dtype              bf16 | fp16 | fp32 | auto (bf16 on CUDA with bf16 support, else fp16 on CUDA, fp32 on CPU)
    offload            none | model (whole components move to the GPU in turn) | sequential (layer by layer: least VRAM, slowest)
    vae_tiling         decode in overlapping spatial tiles (high resolutions)
    vae_slicing        decode one video of a batch at a time
    attention_backend  a diffusers attention-dispatcher backend ("native", "flash", "sage", "_native_cudnn", ...)
    compile            torch.compile the transformer (first call compiles; later calls are faster)
    window_frames      frames per window when chaining windows for long videos (default: the family's maximum)

The VRAM each family needs with these options is in docs/diffusers.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kinema.errors import KinemaInputError

DTYPES = ("auto", "bf16", "fp16", "fp32")
OFFLOADS = ("none", "model", "sequential")


@dataclass(frozen=True)
class DiffusersOptions:
    dtype: str = "auto"
    offload: str = "none"
    vae_tiling: bool = False
    vae_slicing: bool = False
    attention_backend: str | None = None
    compile: bool = False
    window_frames: int | None = None


def resolve_dtype(options: DiffusersOptions, device: str, model: str) -> Any:
    """The torch dtype to load in, refusing a dtype this device cannot run (before any weight loads)."""
    import torch

    if options.dtype not in DTYPES:
        raise KinemaInputError(f"model {model}: unknown dtype {options.dtype!r}; choose one of {', '.join(DTYPES)}")
    kind = torch.device(device).type
    if options.dtype == "auto":
        if kind == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if options.dtype == "fp16" and kind == "cpu":
        # CPU kernels for half precision are missing or emulated for the 3D convolutions these VAEs use.
        raise KinemaInputError(f"model {model}: dtype fp16 is not supported on the CPU; use fp32 or bf16")
    if options.dtype == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise KinemaInputError(f"model {model}: this GPU has no bf16 support; use fp16 or fp32")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[options.dtype]


def check_options(options: DiffusersOptions, device: str, model: str) -> None:
    """Everything about the options that can be refused without loading weights."""
    import torch

    resolve_dtype(options, device, model)
    if options.offload not in OFFLOADS:
        raise KinemaInputError(f"model {model}: unknown offload {options.offload!r}; choose one of {', '.join(OFFLOADS)}")
    if options.offload != "none" and torch.device(device).type == "cpu":
        raise KinemaInputError(f"model {model}: offload {options.offload!r} moves weights to a GPU; the device is the CPU")
    if options.attention_backend is not None:
        from diffusers.models.attention_dispatch import AttentionBackendName

        names = [b.value for b in AttentionBackendName]
        if options.attention_backend not in names:
            raise KinemaInputError(f"model {model}: unknown attention backend {options.attention_backend!r}; choose one of {', '.join(names)}")


def apply_options(pipe: Any, options: DiffusersOptions, device: str) -> Any:
    """Place the pipeline on the device with the requested savings; returns the pipeline."""
    if options.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif options.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    vae = getattr(pipe, "vae", None)
    if options.vae_tiling and vae is not None and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
    if options.vae_slicing and vae is not None and hasattr(vae, "enable_slicing"):
        vae.enable_slicing()
    transformer = getattr(pipe, "transformer", None)
    if options.attention_backend is not None and transformer is not None:
        transformer.set_attention_backend(options.attention_backend)
    if options.compile and transformer is not None:
        transformer.compile()  # in place: the module keeps its class, so from_pipe still shares it
    return pipe
