"""Shared test fixtures: offline hub, one torch thread, a tiny random model on disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests must never reach a model hub

from kinema.engine.native import NativeConfig  # noqa: E402
from kinema.models.dit import DiT, DiTConfig  # noqa: E402
from kinema.models.io import save_pretrained  # noqa: E402
from kinema.models.vae import CausalVideoVAE, VAEConfig  # noqa: E402

TEXT_DIM = 16


def build_tiny_model(directory: Path, dit_options: dict[str, Any] | None = None, **pipeline: Any) -> Path:
    """A model directory with a random tiny VAE + DiT and the hash text encoder.

    `dit_options` may override any DiTConfig field, the tiny sizes included.

    Every DiT weight is perturbed: at init its adaLN-zero output is exactly zero,
    which would make "the prompt/seed changes the video" pass for the wrong reason.
    """
    torch.manual_seed(0)
    vae = CausalVideoVAE(VAEConfig(latent_channels=4, encoder_channels=(8, 8, 8), decoder_channels=(8, 8, 8), decoder_blocks=(1, 1, 1)))
    dit = DiT(DiTConfig(**{"latent_channels": 4, "hidden": 32, "depth": 1, "heads": 2, "text_dim": TEXT_DIM, **(dit_options or {})}))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in dit.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    save_pretrained(vae, directory / "vae")
    save_pretrained(dit, directory / "dit")
    defaults: dict[str, Any] = dict(
        text_encoder="hash-test",
        text_encoder_options={"dim": TEXT_DIM},
        max_prompt_tokens=12,
        buckets=[[32, 32], [32, 64], [64, 32]],
        fps=8.0,
        seconds=1.0,
        max_seconds=2.0,
        steps=3,
        guidance=3.0,
        sampler="euler",
    )
    defaults.update(pipeline)
    NativeConfig.from_dict(defaults).save(directory)
    return directory


@pytest.fixture(scope="module")
def one_thread() -> Any:
    """Tiny models: one thread avoids thread-pool wake-ups that dominate (and crawl on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
