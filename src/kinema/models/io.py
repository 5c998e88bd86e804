"""save_pretrained / load_pretrained for kinema's torch modules.

A model directory holds `config.json` (the config dataclass, plus `_class` and
`_format_version`) and `model.safetensors`. Loading needs no code edits: the
class is looked up in a registry that each model module fills at import time,
and unknown config keys from newer versions are refused with a clear error
while missing keys take the dataclass defaults (so old checkpoints keep loading).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
_REGISTRY: dict[str, tuple[type, type]] = {}

M = TypeVar("M", bound=torch.nn.Module)


def register_model(config_cls: type) -> Callable[[type[M]], type[M]]:
    """Class decorator: `@register_model(MyConfig)` makes the class loadable by name."""

    def wrap(model_cls: type[M]) -> type[M]:
        _REGISTRY[model_cls.__name__] = (model_cls, config_cls)
        return model_cls

    return wrap


def config_to_dict(config: Any) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def config_from_dict(config_cls: type, d: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"{config_cls.__name__}: unknown config keys {sorted(unknown)} (saved by a newer kinema?)")
    kwargs = {}
    for k, v in d.items():
        default = fields[k].default
        kwargs[k] = tuple(v) if isinstance(v, list) and isinstance(default, tuple) else v
    return config_cls(**kwargs)


def save_pretrained(model: torch.nn.Module, directory: str | Path, dtype: torch.dtype | None = None) -> None:
    """Write config.json + model.safetensors atomically (temp files, then rename)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = getattr(model, "config")
    payload = {"_class": type(model).__name__, "_format_version": FORMAT_VERSION, **config_to_dict(config)}
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp") as f:
        json.dump(payload, f, indent=2)
        tmp_cfg = f.name
    fd, tmp_w = tempfile.mkstemp(dir=directory, suffix=".tmp")
    os.close(fd)
    save_file(state, tmp_w)
    os.replace(tmp_cfg, directory / "config.json")
    os.replace(tmp_w, directory / "model.safetensors")


def load_pretrained(directory: str | Path, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """Build the model named in config.json and load its weights (cast to `dtype`)."""
    import kinema.models.dit  # noqa: F401  (fills the registry)
    import kinema.models.matcher  # noqa: F401
    import kinema.models.vae  # noqa: F401

    directory = Path(directory)
    cfg_path = directory / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"no config.json in {directory}")
    payload = json.loads(cfg_path.read_text())
    name = payload.pop("_class")
    payload.pop("_format_version", None)
    if name not in _REGISTRY:
        raise ValueError(f"unknown model class {name!r} in {cfg_path}")
    model_cls, config_cls = _REGISTRY[name]
    model = model_cls(config_from_dict(config_cls, payload))
    state = load_file(str(directory / "model.safetensors"))
    model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()})
    return model.to(dtype).eval()
