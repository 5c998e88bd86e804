"""Memory and speed options a GPU user expects, checked against the device before anything loads.

    dtype              auto | bf16 | fp16 | fp32 (also spelled bfloat16, float16, float32)
                       auto: bf16 on CUDA with bf16 support, else fp16 on CUDA, fp32 on the CPU
    offload            none | model (whole components move to the GPU in turn) | sequential (layer by layer: least VRAM, slowest)
    vae_tiling         decode in overlapping spatial tiles (high resolutions)
    vae_slicing        decode one video of a batch at a time
    attention_backend  None (diffusers' default: PyTorch SDPA) or a diffusers attention-dispatcher backend
                       ("native" = "sdpa", "_native_math", "flash", "sage", "_native_cudnn", "xformers", ...)
    compile            torch.compile the transformer (first call compiles; later calls are faster)
    window_frames      frames per window when chaining windows for long videos (default: the family's maximum)

`DiffusersOptions` is the one place these live: the CLI's --dtype, --offload,
--vae-tiling, --vae-slicing, --attention and --compile build it
(`kinema.commands.model_options`), `Pipeline.from_model(options=...)` takes
it, and `kinema.engine.models.resolve_backend` hands it to the diffusers
backend, or refuses what the built-in (native) model cannot use.

The VRAM each family needs with these options is in docs/diffusers.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from kinema.errors import KinemaInputError

DTYPES = ("auto", "bf16", "fp16", "fp32")
DTYPE_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}
OFFLOADS = ("none", "model", "sequential")
# --attention spellings that are not diffusers dispatcher names.
ATTENTION_ALIASES: dict[str, str | None] = {"default": None, "sdpa": "native", "math": "_native_math"}
# Dispatcher backends that run on the CPU (checked on this machine: PyTorch SDPA and its math and flash
# kernels, and flex attention); the others need a GPU kernel or package (flash-attn, sage, xformers, cuDNN).
CPU_ATTENTION = ("native", "_native_math", "_native_flash", "flex")
# The flag each option comes from, for messages the CLI user can act on.
FLAGS = {
    "dtype": "--dtype", "offload": "--offload", "vae_tiling": "--vae-tiling", "vae_slicing": "--vae-slicing",
    "attention_backend": "--attention", "compile": "--compile", "window_frames": "window_frames",
}  # fmt: skip


@dataclass(frozen=True)
class DiffusersOptions:
    dtype: str = "auto"
    offload: str = "none"
    vae_tiling: bool = False
    vae_slicing: bool = False
    attention_backend: str | None = None
    compile: bool = False
    window_frames: int | None = None

    def __post_init__(self) -> None:  # one spelling inside: "float16" -> "fp16", "sdpa" -> "native", "default" -> None
        if isinstance(self.dtype, str):
            object.__setattr__(self, "dtype", DTYPE_ALIASES.get(self.dtype.lower(), self.dtype.lower()))
        if isinstance(self.attention_backend, str):
            name = self.attention_backend.strip().lower()
            object.__setattr__(self, "attention_backend", ATTENTION_ALIASES.get(name, name))

    def changed(self) -> dict[str, Any]:
        """The options that differ from the defaults (what a user asked for)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) != f.default}

    def describe(self) -> str:
        """The asked-for options as CLI flags, e.g. '--dtype bf16 --vae-tiling'."""
        parts = []
        for name, value in self.changed().items():
            flag = FLAGS[name]
            parts.append(flag if value is True else f"{flag} {value}")
        return " ".join(parts)


def resolve_dtype(options: DiffusersOptions, device: str, model: str) -> Any:
    """The torch dtype to load in, refusing a dtype this device cannot run (before any weight loads)."""
    import torch

    if options.dtype not in DTYPES:
        raise KinemaInputError(f"model {model}: unknown dtype {options.dtype!r}; choose one of auto, float32, bfloat16, float16")
    kind = torch.device(device).type
    if options.dtype == "auto":
        if kind == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if options.dtype == "fp16" and kind == "cpu":
        # CPU kernels for half precision are missing or emulated for the 3D convolutions these VAEs use.
        raise KinemaInputError(f"model {model}: dtype float16 (fp16) is not supported on the CPU; use float32 or bfloat16")
    if options.dtype == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise KinemaInputError(f"model {model}: this GPU has no bfloat16 support; use float16 or float32")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[options.dtype]


def _check_offload(options: DiffusersOptions, device: str, model: str) -> None:
    import torch

    if options.offload not in OFFLOADS:
        raise KinemaInputError(f"model {model}: unknown offload {options.offload!r}; choose one of {', '.join(OFFLOADS)}")
    if options.offload == "none":
        return
    what = f"offload {options.offload!r} keeps weights in CPU memory and moves them to the GPU {'component by component' if options.offload == 'model' else 'layer by layer'} while they run"
    if torch.device(device).type == "cpu":
        if torch.cuda.is_available():
            raise KinemaInputError(f"model {model}: {what}; the device is the CPU: pass --device cuda (or device='cuda'), or drop --offload")
        raise KinemaInputError(f"model {model}: {what}; this machine has no CUDA GPU (torch.cuda.is_available() is False), so drop --offload")
    try:
        import accelerate  # noqa: F401
    except ModuleNotFoundError:
        raise KinemaInputError(f"model {model}: offload {options.offload!r} needs accelerate: pip install 'kinema[diffusers]'") from None


def _check_attention(options: DiffusersOptions, device: str, model: str) -> None:
    import torch

    name = options.attention_backend
    if name is None:
        return
    from diffusers.models import attention_dispatch

    names = [b.value for b in attention_dispatch.AttentionBackendName]
    if name not in names:
        choices = ", ".join(["default", "sdpa", *names])
        raise KinemaInputError(f"model {model}: unknown attention backend {name!r}; choose one of {choices}")
    check = getattr(attention_dispatch, "_check_attention_backend_requirements", None)
    if check is not None:  # a missing package (flash-attn, sageattention, xformers, kernels) is a clear line, not a traceback at load
        try:
            check(attention_dispatch.AttentionBackendName(name))
        except (RuntimeError, ImportError) as exc:
            raise KinemaInputError(f"model {model}: attention backend {name!r} cannot run here: {str(exc).splitlines()[0]}") from None
    if torch.device(device).type == "cpu" and name not in CPU_ATTENTION:
        raise KinemaInputError(f"model {model}: attention backend {name!r} needs a GPU; on the CPU use one of {', '.join(CPU_ATTENTION)} (or sdpa)")


def check_options(options: DiffusersOptions, device: str, model: str) -> None:
    """Everything about the options that can be refused without loading weights."""
    resolve_dtype(options, device, model)
    _check_offload(options, device, model)
    _check_attention(options, device, model)
    for flag in ("vae_tiling", "vae_slicing", "compile"):
        if not isinstance(getattr(options, flag), bool):
            raise KinemaInputError(f"model {model}: {flag} must be true or false, got {getattr(options, flag)!r}")
    if options.compile:
        _check_compile(device, model)


def _check_compile(device: str, model: str) -> None:
    """torch.compile's CPU backend builds C++ kernels: without a compiler the first call would fail deep inside."""
    import shutil

    import torch

    if torch.device(device).type == "cpu" and not any(shutil.which(cc) for cc in ("c++", "g++", "clang++")):
        raise KinemaInputError(f"model {model}: --compile on the CPU needs a C++ compiler (torch.compile builds C++ kernels); install g++ or drop --compile")


def check_vae_supports(options: DiffusersOptions, vae_class: str, model: str) -> None:
    """VAE tiling/slicing asked of a VAE that has neither: refused by name (read from model_index.json, no weights)."""
    if not (options.vae_tiling or options.vae_slicing):
        return
    import diffusers

    cls = getattr(diffusers, vae_class, None)
    for flag, method in (("vae_tiling", "enable_tiling"), ("vae_slicing", "enable_slicing")):
        if getattr(options, flag) and cls is not None and not hasattr(cls, method):
            raise KinemaInputError(f"model {model}: its VAE ({vae_class}) has no {method.removeprefix('enable_')}; drop {FLAGS[flag]}")


def apply_options(pipe: Any, options: DiffusersOptions, device: str) -> Any:
    """Place the pipeline on the device with the requested savings; returns the pipeline."""
    if options.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif options.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    vae = getattr(pipe, "vae", None)
    if options.vae_tiling and vae is not None:
        vae.enable_tiling()
    if options.vae_slicing and vae is not None:
        vae.enable_slicing()
    for transformer in _transformers(pipe):
        if options.attention_backend is not None:
            transformer.set_attention_backend(options.attention_backend)
        if options.compile:
            transformer.compile()  # in place: the module keeps its class, so from_pipe still shares it
    return pipe


def reapply_offload(pipe: Any, options: DiffusersOptions, device: str) -> None:
    """Offload again on a pipeline made with `from_pipe`: the hooks follow each pipeline class's model order."""
    if options.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif options.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)


def _transformers(pipe: Any) -> list[Any]:
    """The denoisers (Wan 2.2 A14B has two experts: transformer and transformer_2)."""
    return [t for t in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if t is not None]
