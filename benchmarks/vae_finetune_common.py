"""Shared by the VAE finetune probes (scale equivariance, shift equivariance, salient pixels).

Each probe continues an existing VAE on a recipe's clips; they differ only in their loss and
in how they crop. This holds what they have in common: the arguments that name the VAE, the
dataset and the recipe, and loading those three.
"""

from __future__ import annotations

import argparse

import torch

from kinema.models.io import load_pretrained
from kinema.train.config import TrainConfig, load_config
from kinema.train.data import ClipRecord, assign_buckets, read_metadata


def add_finetune_args(parser: argparse.ArgumentParser, settings: str = "VAE crops") -> None:
    """--vae, --dataset and --config, with the defaults every probe uses."""
    parser.add_argument("--vae", default="src/kinema/assets/builtin/vae")
    parser.add_argument("--dataset", default="runs/builtin-base/dataset")
    parser.add_argument("--config", default="configs/builtin.toml", help=f"the recipe whose buckets, fps and {settings} to use")


def load_finetune_start(args: argparse.Namespace) -> tuple[TrainConfig, torch.nn.Module, list[ClipRecord]]:
    """Seed torch, then load the recipe, the VAE to continue (fp32) and the dataset's clips in the recipe's buckets."""
    torch.manual_seed(0)
    cfg = load_config(args.config)
    vae = load_pretrained(args.vae).float()
    records = assign_buckets(read_metadata(args.dataset), cfg.data.buckets, cfg.data.frame_counts, cfg.data.fps)
    return cfg, vae, records
