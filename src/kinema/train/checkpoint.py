"""Atomic training checkpoints: write to a temp file, then rename.

Why atomic: a run killed mid-write (Ctrl-C, time limit, power) must leave the
previous checkpoint intact so the next `kinema train` resumes instead of
starting over.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, directory / CHECKPOINT_NAME)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return directory / CHECKPOINT_NAME


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """`payload` as indented JSON at `path`, written to a temp file then renamed, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


def load_checkpoint(directory: str | Path) -> dict[str, Any] | None:
    """The latest checkpoint in `directory`, or None when there is none yet."""
    path = Path(directory) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
