"""Encode the dataset once: VAE latents per bucket and caption embeddings.

Why: the DiT never needs pixels or the text encoder during training. Decoding
an mp4, running the VAE encoder and MiniLM on every step would cost far more
than the DiT step itself on a CPU; caching them makes DiT training run from
RAM. Caches are keyed on the VAE weights, the text encoder, the dataset
metadata and the bucket settings, so a stale cache is rebuilt, never reused.

Layout under `cache_dir`:
    latents/meta.json            key, per-bucket counts, latent mean/std
    latents/<H>x<W>x<T>.safetensors   latents fp16 [N,C,T',h,w], clip int64 [N]
    text/meta.json               key, encoder name, dim
    text/text.safetensors        hidden fp16 [U,L,D], lengths int32 [U],
                                 clip_offsets int64 [clips+1], caption_ids int64 [..]
Caption row 0 is the empty prompt (the unconditional input for CFG).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from kinema.train.buckets import Bucket
from kinema.train.data import ClipRecord, load_clip, to_model_video
from kinema.train.vae_trainer import autocast

TRAIN_MAX_TOKENS = 128  # captions are encoded with room to spare; the engine enforces its own prompt limit


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def records_digest(records: list[ClipRecord]) -> str:
    """Changes whenever the clip list, captions or bucket assignment changes."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([str(r.video), r.captions, r.bucket.key if r.bucket else None]).encode())
    return h.hexdigest()[:16]


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


def _meta_matches(path: Path, key: str) -> bool:
    return path.is_file() and json.loads(path.read_text()).get("key") == key


@dataclass
class LatentStats:
    mean: list[float]
    std: list[float]


def cache_latents(vae, vae_weights: Path, records: list[ClipRecord], fps: float, cache_dir: Path, batch_size: int = 16, precision: str = "fp32", progress: bool = True) -> LatentStats:
    """Encode every clip (posterior mean) per bucket; returns per-channel latent mean/std.

    Skipped when `cache_dir/latents/meta.json` already has the same key.
    """
    out = cache_dir / "latents"
    meta_path = out / "meta.json"
    key = f"{file_digest(vae_weights)}-{records_digest(records)}-{fps}-{precision}"
    if _meta_matches(meta_path, key):
        meta = json.loads(meta_path.read_text())
        return LatentStats(meta["latent_mean"], meta["latent_std"])
    out.mkdir(parents=True, exist_ok=True)
    by_bucket: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_bucket.setdefault(r.bucket.key, []).append(i)  # type: ignore[union-attr]
    c = vae.config.latent_channels
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(records), desc="cache latents", dynamic_ncols=True)
    vae.eval()
    buckets_meta = {}
    for bkey, idx in sorted(by_bucket.items()):
        bucket = Bucket.from_key(bkey)
        parts = []
        for s in range(0, len(idx), batch_size):
            chunk = idx[s : s + batch_size]
            video = to_model_video(np.stack([load_clip(records[i], fps, bucket) for i in chunk]))
            with torch.no_grad(), autocast(precision):
                z = vae.encode(video).float()
            total += z.sum(dim=(0, 2, 3, 4)).double()
            total_sq += z.pow(2).sum(dim=(0, 2, 3, 4)).double()
            count += z.numel() // c
            parts.append(z.half())
            if bar is not None:
                bar.update(len(chunk))
        _atomic_save({"latents": torch.cat(parts), "clip": torch.tensor(idx, dtype=torch.int64)}, out / f"{bkey}.safetensors")
        buckets_meta[bkey] = len(idx)
    if bar is not None:
        bar.close()
    mean = total / count
    std = (total_sq / count - mean.pow(2)).clamp_min(1e-8).sqrt()
    stats = LatentStats([float(v) for v in mean], [float(v) for v in std])
    _write_json(meta_path, {"key": key, "buckets": buckets_meta, "latent_mean": stats.mean, "latent_std": stats.std, "num_clips": len(records)})
    return stats


def cache_text(encoder, encoder_name: str, records: list[ClipRecord], cache_dir: Path, batch_size: int = 256, precision: str = "fp32", progress: bool = True) -> None:
    """Encode each distinct caption once (row 0 = ""), fp16, padded to the longest caption."""
    out = cache_dir / "text"
    meta_path = out / "meta.json"
    key = f"{encoder_name}-{encoder.dim}-{precision}-{records_digest(records)}"
    if _meta_matches(meta_path, key):
        return
    out.mkdir(parents=True, exist_ok=True)
    unique: dict[str, int] = {"": 0}
    offsets, ids = [0], []
    for r in records:
        for cap in r.captions:
            ids.append(unique.setdefault(cap, len(unique)))
        offsets.append(len(ids))
    captions = list(unique)
    hiddens, lengths = [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(captions), desc="cache captions", dynamic_ncols=True)
    for s in range(0, len(captions), batch_size):
        with torch.no_grad(), autocast(precision):
            h, m = encoder.encode(captions[s : s + batch_size])
        hiddens.append(h.half())
        lengths.append(m.sum(dim=1).to(torch.int32))
        if bar is not None:
            bar.update(len(captions[s : s + batch_size]))
    if bar is not None:
        bar.close()
    width = max(h.shape[1] for h in hiddens)
    hidden = torch.cat([torch.nn.functional.pad(h, (0, 0, 0, width - h.shape[1])) for h in hiddens])
    _atomic_save(
        {
            "hidden": hidden,
            "lengths": torch.cat(lengths),
            "clip_offsets": torch.tensor(offsets, dtype=torch.int64),
            "caption_ids": torch.tensor(ids, dtype=torch.int64),
        },
        out / "text.safetensors",
    )
    _write_json(meta_path, {"key": key, "encoder": encoder_name, "dim": encoder.dim, "num_captions": len(captions)})


@dataclass
class LatentCache:
    """Everything the DiT trainer reads, in RAM."""

    latents: dict[str, torch.Tensor]  # bucket key -> fp16 [N,C,T',h,w] (not normalised)
    clip_ids: dict[str, torch.Tensor]  # bucket key -> clip index per row
    latent_mean: torch.Tensor  # [C]
    latent_std: torch.Tensor  # [C]
    text_hidden: torch.Tensor  # fp16 [U,L,D]
    text_lengths: torch.Tensor  # int32 [U]
    clip_offsets: torch.Tensor
    caption_ids: torch.Tensor

    @staticmethod
    def load(cache_dir: Path) -> "LatentCache":
        meta = json.loads((cache_dir / "latents" / "meta.json").read_text())
        latents, clip_ids = {}, {}
        for bkey in meta["buckets"]:
            t = load_file(str(cache_dir / "latents" / f"{bkey}.safetensors"))
            latents[bkey], clip_ids[bkey] = t["latents"], t["clip"]
        text = load_file(str(cache_dir / "text" / "text.safetensors"))
        return LatentCache(
            latents,
            clip_ids,
            torch.tensor(meta["latent_mean"]),
            torch.tensor(meta["latent_std"]),
            text["hidden"],
            text["lengths"],
            text["clip_offsets"],
            text["caption_ids"],
        )
