"""`--model`: one name for every backend.

    None or "builtin"           the model shipped in the package (native backend)
    a kinema model directory    pipeline.json + vae/ + dit/ (native backend)
    a diffusers model directory model_index.json + component folders (diffusers backend)
    a hub id ("org/name")       fetched from the Hugging Face hub, only when the hub is reachable
                                and HF_HUB_OFFLINE is not set; model_index.json first, so an
                                unsupported repository fails before gigabytes of weights download

Every branch refuses bad input with a KinemaInputError naming the model and
what is wrong, before any weights load.

`options` (`DiffusersOptions`: dtype, offload, VAE tiling/slicing, attention
backend, compile) go to the diffusers backend. Kinema's own model takes the
dtype too (float32 by default, the precision it is trained and shipped in);
the rest mean nothing for it and are refused, with the reason, rather than
silently dropped. `resolve_device` turns "auto" into "cuda" or "cpu".
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from kinema.errors import KinemaInputError

if TYPE_CHECKING:
    from kinema.engine.backend import Backend
    from kinema.engine.diffusers.memory import DiffusersOptions

BUILTIN = "builtin"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """Whether the user asked for no hub access (the hub library's own switch, honoured here too)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def resolve_backend(model: str | Path | None, device: str = "cpu", options: DiffusersOptions | None = None) -> Backend:
    """The backend that runs `model` (see the module docstring for what `model` may be)."""
    from kinema.engine.native import NativeBackend, is_model_dir
    from kinema.engine.pipeline import builtin_model_dir

    device = resolve_device(device)
    if model is None or str(model) == BUILTIN:
        path = builtin_model_dir()
        if not is_model_dir(path):
            raise KinemaInputError(f"the built-in model is not installed at {path}; train one with `kinema train configs/builtin.toml` and pass its directory")
        return NativeBackend(path, device=device, dtype=native_dtype(options, device, BUILTIN))
    name = str(model)
    path = Path(name).expanduser()
    if path.is_dir():
        if is_model_dir(path):
            return NativeBackend(path, device=device, dtype=native_dtype(options, device, name))
        from kinema.engine.diffusers.loading import is_diffusers_dir

        if is_diffusers_dir(path):
            return _diffusers(path, device, options, name)
        raise KinemaInputError(
            f"model {name}: not a model directory (a kinema model has pipeline.json, vae/ and dit/; a diffusers model has model_index.json)"
        )
    if path.exists():
        raise KinemaInputError(f"model {name}: is a file, not a model directory")
    if not HUB_ID.match(name) or name.startswith((".", "/", "~")):
        raise KinemaInputError(f"model {name}: directory does not exist")
    return _diffusers(fetch_from_hub(name), device, options, name)


def resolve_device(device: str | None) -> str:
    """"auto" (or None): "cuda" when PyTorch sees a CUDA GPU, else "cpu". Other names are checked, so a
    typo or a GPU this machine lacks is one clear line rather than a traceback at load time."""
    import torch

    name = "auto" if device is None else str(device).strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(name).type
    except (RuntimeError, ValueError):
        raise KinemaInputError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise KinemaInputError(f"device {device}: this machine has no CUDA GPU (torch.cuda.is_available() is False); use --device cpu")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise KinemaInputError(f"device {device}: there are only {torch.cuda.device_count()} CUDA GPU(s)")
    elif kind == "mps" and not torch.backends.mps.is_available():
        raise KinemaInputError(f"device {device}: MPS (Apple GPU) is not available on this machine")
    elif kind not in ("cpu", "cuda", "mps"):
        raise KinemaInputError(f"device {device}: kinema runs on cpu, cuda or mps")
    return name


# Why each diffusers option means nothing for kinema's own model (refused, not silently dropped).
_NATIVE_REASONS = {
    "offload": "it is small enough to stay on one device and has no CPU offload",
    "vae_tiling": "its VAE already decodes in latent-frame chunks (pipeline.json vae_chunk_frames) and has no spatial tiling",
    "vae_slicing": "it makes one video per call, so there is no batch to slice",
    "attention_backend": "its DiT calls PyTorch SDPA directly (only --attention default/sdpa apply)",
    "compile": "torch.compile is wired up for diffusers transformers only",
    "window_frames": "its window length is pipeline.json's window_frames",
}


def native_dtype(options: DiffusersOptions | None, device: str, name: str) -> object:
    """The dtype for kinema's own model: float32 unless --dtype says otherwise; the other diffusers options
    are refused with the reason they do not apply."""
    import torch

    if options is None:
        return torch.float32
    refused = []
    for field, value in options.changed().items():
        if field == "dtype" or (field == "attention_backend" and value == "native"):
            continue
        refused.append(f"{options.__class__(**{field: value}).describe()}: {_NATIVE_REASONS[field]}")
    if refused:
        raise KinemaInputError(f"model {name} is kinema's own model, and these options are for diffusers models only: {'; '.join(refused)}")
    if options.dtype == "auto":
        return torch.float32  # the precision it is trained and shipped in
    from kinema.engine.diffusers.memory import resolve_dtype

    return resolve_dtype(options, device, name)


def _diffusers(path: Path, device: str, options: DiffusersOptions | None, name: str) -> Backend:
    try:
        from kinema.engine.diffusers.backend import DiffusersBackend
    except ModuleNotFoundError as exc:  # the optional extra is not installed
        if exc.name and exc.name.split(".")[0] in ("diffusers", "accelerate"):
            raise KinemaInputError(f"model {name} needs the diffusers backend: pip install 'kinema[diffusers]'") from None
        raise
    return DiffusersBackend(path, device=device, options=options, name=name)


def fetch_from_hub(repo_id: str) -> Path:
    """Download a diffusers repository (model_index.json first, to check the family) and return its local path."""
    if hub_offline():
        raise KinemaInputError(
            f"model {repo_id}: not a local directory, and HF_HUB_OFFLINE is set so the hub is not used; "
            f"download it where the hub is reachable and pass the directory"
        )
    try:
        from huggingface_hub import hf_hub_download, snapshot_download
    except ModuleNotFoundError:
        raise KinemaInputError(f"model {repo_id} is a hub id: pip install 'kinema[diffusers]' to fetch it") from None
    from kinema.engine.diffusers.families import family_for, unsupported_message

    try:
        index_path = Path(hf_hub_download(repo_id, "model_index.json"))
    except Exception as exc:  # noqa: BLE001 - unreachable hub, missing repo, gated repo: all one message
        raise KinemaInputError(f"model {repo_id}: cannot fetch model_index.json from the hub ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None
    import json

    cls = json.loads(index_path.read_text()).get("_class_name")
    if not isinstance(cls, str):
        raise KinemaInputError(f"model {repo_id}: this repository is not a diffusers pipeline (model_index.json names no _class_name)")
    if family_for(cls) is None:
        raise KinemaInputError(f"model {repo_id}: {unsupported_message(cls)}")
    try:
        return Path(snapshot_download(repo_id))
    except Exception as exc:  # noqa: BLE001
        raise KinemaInputError(f"model {repo_id}: download failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None
