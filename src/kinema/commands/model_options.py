"""The model flags every command that runs a model shares (generate, story, evaluate, serve).

    --model        builtin (default), a kinema or diffusers model directory, or a hub id
    --device       auto (CUDA when present, else the CPU), cpu, cuda, cuda:N, mps
    --dtype        auto | float32 | bfloat16 | float16 (also bf16, fp16, fp32)
    --offload      none | model | sequential (diffusers models on a GPU)
    --vae-tiling / --no-vae-tiling, --vae-slicing
    --attention    default | sdpa | a diffusers attention backend (flash, _flash_3, sage, xformers, flex, ...)
    --compile      torch.compile the transformer

They all become one `DiffusersOptions` (kinema.engine.diffusers.memory) that
`Pipeline.from_model` takes. Names are checked here, before anything heavy
imports; what the device can run is checked by the backend before weights
load; kinema's own model takes --dtype and refuses the rest with the reason.
This module is not a command (it has no `register`).
"""

from __future__ import annotations

from typing import Optional

import typer

from kinema.engine.diffusers.memory import DTYPE_ALIASES, DTYPES, OFFLOADS, DiffusersOptions
from kinema.errors import KinemaInputError

MODEL_HELP = "builtin (default), a kinema or diffusers model directory, or a hub id (org/name)."
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")


def device_option() -> str:
    return typer.Option("auto", "--device", help="auto (CUDA when present, else the CPU), cpu, cuda, cuda:N or mps.")


def dtype_option() -> str:
    return typer.Option("auto", "--dtype", help="Weights and compute precision: auto, float32, bfloat16 or float16 (auto: bf16/fp16 on a GPU, fp32 on the CPU; kinema's own model: fp32).")


def offload_option() -> str:
    return typer.Option("none", "--offload", help="Diffusers models on a GPU: none, model (each component on the GPU only while it runs) or sequential (layer by layer: least VRAM, slowest).")


def vae_tiling_option() -> bool:
    return typer.Option(False, "--vae-tiling/--no-vae-tiling", help="Diffusers models: decode the video in overlapping spatial tiles (less memory at high resolution).")


def vae_slicing_option() -> bool:
    return typer.Option(False, "--vae-slicing", help="Diffusers models: decode one video of a batch at a time.")


def attention_option() -> str:
    return typer.Option("default", "--attention", help="Diffusers models: default, sdpa, or a diffusers attention backend (flash, _flash_3, sage, xformers, _native_cudnn, flex, _native_math, ...).")


def compile_option() -> bool:
    return typer.Option(False, "--compile", help="Diffusers models: torch.compile the transformer (the first call compiles).")


def build_options(dtype: str = "auto", offload: str = "none", vae_tiling: bool = False, vae_slicing: bool = False,
                  attention: Optional[str] = "default", torch_compile: bool = False) -> DiffusersOptions:  # fmt: skip
    """The flags as one DiffusersOptions; names are checked here (cheap), device support by the backend."""
    dtype_name = (dtype or "auto").strip().lower()
    if DTYPE_ALIASES.get(dtype_name, dtype_name) not in DTYPES:
        raise KinemaInputError(f"--dtype must be one of {', '.join(DTYPE_CHOICES)}, got {dtype!r}")
    if offload not in OFFLOADS:
        raise KinemaInputError(f"--offload must be one of {', '.join(OFFLOADS)}, got {offload!r}")
    return DiffusersOptions(dtype=dtype_name, offload=offload, vae_tiling=vae_tiling, vae_slicing=vae_slicing,
                            attention_backend=attention or None, compile=torch_compile)  # fmt: skip
