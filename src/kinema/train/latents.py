"""Encode the dataset once: VAE latents per bucket and caption embeddings.

Why: the DiT never needs pixels or the text encoder during training. Decoding
an mp4, running the VAE encoder and MiniLM on every step would cost far more
than the DiT step itself on a CPU; caching them makes DiT training run from
RAM. Caches are keyed on the VAE weights, the text encoder, the dataset
metadata and the bucket settings, so a stale cache is rebuilt, never reused.

Layout under `cache_dir`:
    latents/meta.json            key, per-bucket counts, latent mean/std
    latents/<H>x<W>x<T>.safetensors   latents fp16 [N,C,T',h,w], clip int64 [N],
                                 frame_latents fp16 [N,2,C,h,w] (the last frame and one
                                 inner frame, each encoded alone as an image),
                                 frame_index int64 [N,2], camera float32 [N,4]
    text/meta.json               key, encoder name, dim
    text/text.safetensors        hidden fp16 [U,L,D], lengths int32 [U],
                                 clip_offsets int64 [clips+1], caption_ids int64 [..],
                                 and, when the dataset has them, signal_offsets int64
                                 [clips+1] + signal_ids int64 [..]: captions without the
                                 camera words (ClipRecord.signal_captions)
Caption row 0 is the empty prompt (the unconditional input for CFG).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from kinema.train.buckets import Bucket
from kinema.train.checkpoint import write_json_atomic
from kinema.train.data import ClipRecord, load_clip, to_model_video
from kinema.train.precision import autocast

CACHE_FORMAT = 2  # bump when the cached tensors change, so old caches are rebuilt
TRAIN_MAX_TOKENS = 128  # captions are encoded with room to spare; the engine enforces its own prompt limit


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def records_digest(records: list[ClipRecord]) -> str:
    """Changes whenever the clip list, captions or bucket assignment changes; not when the dataset moves."""
    h = hashlib.sha256()
    for r in records:
        fields = [r.name or str(r.video), r.captions, r.bucket.key if r.bucket else None]
        h.update(json.dumps(fields + [r.signal_captions] if r.signal_captions else fields).encode())  # old datasets keep their digest
    return h.hexdigest()[:16]


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def _meta_matches(path: Path, key: str) -> bool:
    return path.is_file() and json.loads(path.read_text()).get("key") == key


@dataclass
class LatentStats:
    mean: list[float]
    std: list[float]


def _subset(idx: list[int], limit: int, seed: int) -> list[int]:
    if limit <= 0 or len(idx) <= limit:
        return idx
    rng = np.random.default_rng([seed, 3])
    return sorted(rng.choice(idx, size=limit, replace=False).tolist())


def _frame_latents(vae, video: torch.Tensor, clip_ids: list[int], seed: int, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The last frame and one seeded inner frame of each clip, encoded alone: ([B,2,C,h,w], [B,2])."""
    t = video.shape[2]
    inner = [int(np.random.default_rng([seed, 4, c]).integers(1, max(2, t - 1))) for c in clip_ids]
    frames = torch.tensor([[t - 1, f] for f in inner], dtype=torch.int64)
    images = torch.stack([video[i, :, frames[i, k]] for i in range(len(clip_ids)) for k in range(2)]).unsqueeze(2)
    with torch.no_grad(), autocast(precision):
        z = vae.encode(images).float()  # [2B, C, 1, h, w]
    return z[:, :, 0].reshape(len(clip_ids), 2, *z.shape[1:2], *z.shape[3:]), frames


def _camera_rows(records: list[ClipRecord], idx: list[int]) -> torch.Tensor:
    from kinema.conditioning.camera import camera_tensor

    return camera_tensor([records[i].camera for i in idx])


def indices_by_bucket(records: list[ClipRecord]) -> dict[str, list[int]]:
    """Each bucket key's record indices, in record order (`assign_buckets` has set every record's bucket)."""
    by_bucket: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_bucket.setdefault(r.bucket.key, []).append(i)  # type: ignore[union-attr]
    return by_bucket


def encoding_probe(vae, encoder, records: list[ClipRecord], fps: float, batch_size: int, caption_batch: int = 256) -> Callable[[str, int], None]:
    """One batch of the cache stage's work in a given precision: `batch_size` clips of the commonest bucket
    through the VAE's encoder and up to `caption_batch` of their captions through the text encoder.

    For `kinema.train.precision.choose_precision`: the clips are decoded on the first call, once, so the
    probe times encoding only, as the stage's time is spent, and costs nothing when nothing is timed."""
    batch: list[Any] = []

    def probe(precision: str, _call: int = 0) -> None:
        if not batch:
            by_bucket = indices_by_bucket(records)
            key = max(sorted(by_bucket), key=lambda k: len(by_bucket[k]))
            clips = [load_clip(records[i], fps, Bucket.from_key(key)) for i in by_bucket[key][:batch_size]]
            batch.extend([to_model_video(np.stack(clips)), [c for r in records[:caption_batch] for c in r.captions][:caption_batch]])
        vae.eval()
        with torch.no_grad(), autocast(precision):
            vae.encode(batch[0])
            encoder.encode(batch[1])

    return probe


def cache_latents(
    vae,
    vae_weights: Path,
    records: list[ClipRecord],
    fps: float,
    cache_dir: Path,
    batch_size: int = 16,
    precision: str = "fp32",
    progress: bool = True,
    max_clips_per_bucket: int = 0,
    seed: int = 0,
) -> LatentStats:
    """Encode every clip (posterior mean) per bucket; returns per-channel latent mean/std.

    With `max_clips_per_bucket`, a seeded random subset of each bucket is
    encoded: encoding dominates this stage, and rarely sampled buckets do not
    need thousands of clips. Skipped when `cache_dir/latents/meta.json` already
    has the same key.
    """
    out = cache_dir / "latents"
    meta_path = out / "meta.json"
    key = f"v{CACHE_FORMAT}-{file_digest(vae_weights)}-{records_digest(records)}-{fps}-{precision}-{max_clips_per_bucket}-{seed}"
    if _meta_matches(meta_path, key):
        meta = json.loads(meta_path.read_text())
        return LatentStats(meta["latent_mean"], meta["latent_std"])
    out.mkdir(parents=True, exist_ok=True)
    by_bucket = {k: _subset(v, max_clips_per_bucket, seed) for k, v in indices_by_bucket(records).items()}
    c = vae.config.latent_channels
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(map(len, by_bucket.values())), desc="cache latents", dynamic_ncols=True)
    vae.eval()
    buckets_meta = {}
    for bkey, idx in sorted(by_bucket.items()):
        bucket = Bucket.from_key(bkey)
        parts, frame_parts, index_parts = [], [], []
        for s in range(0, len(idx), batch_size):
            chunk = idx[s : s + batch_size]
            video = to_model_video(np.stack([load_clip(records[i], fps, bucket) for i in chunk]))
            with torch.no_grad(), autocast(precision):
                z = vae.encode(video).float()
            fz, fidx = _frame_latents(vae, video, chunk, seed, precision)
            frame_parts.append(fz.half())
            index_parts.append(fidx)
            total += z.sum(dim=(0, 2, 3, 4)).double()
            total_sq += z.pow(2).sum(dim=(0, 2, 3, 4)).double()
            count += z.numel() // c
            parts.append(z.half())
            if bar is not None:
                bar.update(len(chunk))
        _atomic_save(
            {
                "latents": torch.cat(parts),
                "clip": torch.tensor(idx, dtype=torch.int64),
                "frame_latents": torch.cat(frame_parts),
                "frame_index": torch.cat(index_parts),
                "camera": _camera_rows(records, idx),
            },
            out / f"{bkey}.safetensors",
        )
        buckets_meta[bkey] = len(idx)
    if bar is not None:
        bar.close()
    mean = total / count
    std = (total_sq / count - mean.pow(2)).clamp_min(1e-8).sqrt()
    stats = LatentStats([float(v) for v in mean], [float(v) for v in std])
    write_json_atomic(meta_path, {"key": key, "buckets": buckets_meta, "latent_mean": stats.mean, "latent_std": stats.std, "num_clips": sum(buckets_meta.values())})
    return stats


def caption_lengths(encoder, captions: list[str]) -> list[int]:
    """Each caption's length in the encoder's tokens, or in characters for an encoder that cannot count them."""
    count = getattr(encoder, "count_tokens", None)
    return [count(c) for c in captions] if callable(count) else [len(c) for c in captions]


def encode_captions(encoder, captions: list[str], batch_size: int = 256, precision: str = "fp32", progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token hidden states of captions in batches: (fp16 [U, L, D] padded to the longest, int32 lengths [U]).

    Batches hold captions of similar length (the rows come back in the captions' order). Why: a batch is
    padded to its longest caption, and Shapes World's run from 6 to 51 tokens, so batches in dataset order
    spent half the encoder's work on padding.
    """
    order = sorted(range(len(captions)), key=caption_lengths(encoder, captions).__getitem__)
    hiddens, lengths = [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(captions), desc="cache captions", dynamic_ncols=True)
    for s in range(0, len(captions), batch_size):
        batch = [captions[i] for i in order[s : s + batch_size]]
        with torch.no_grad(), autocast(precision):
            h, m = encoder.encode(batch)
        hiddens.append(h.half())
        lengths.append(m.sum(dim=1).to(torch.int32))
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    width = max(h.shape[1] for h in hiddens)
    hidden = torch.cat([torch.nn.functional.pad(h, (0, 0, 0, width - h.shape[1])) for h in hiddens])
    restore = torch.argsort(torch.tensor(order, dtype=torch.int64))  # the inverse of the length order
    return hidden[restore], torch.cat(lengths)[restore]


def cache_text(encoder, encoder_name: str, records: list[ClipRecord], cache_dir: Path, batch_size: int = 256, precision: str = "fp32", progress: bool = True) -> None:
    """Encode each distinct caption once (row 0 = ""), fp16, padded to the longest caption."""
    out = cache_dir / "text"
    meta_path = out / "meta.json"
    key = f"{encoder_name}-{encoder.dim}-{precision}-{records_digest(records)}"
    if _meta_matches(meta_path, key):
        return
    out.mkdir(parents=True, exist_ok=True)
    unique: dict[str, int] = {"": 0}
    offsets, ids, signal_offsets, signal_ids = [0], [], [0], []
    for r in records:
        for cap in r.captions:
            ids.append(unique.setdefault(cap, len(unique)))
        offsets.append(len(ids))
        for cap in r.signal_captions:
            signal_ids.append(unique.setdefault(cap, len(unique)))
        signal_offsets.append(len(signal_ids))
    captions = list(unique)
    hidden, lengths = encode_captions(encoder, captions, batch_size, precision, progress)
    tensors = {
        "hidden": hidden,
        "lengths": lengths,
        "clip_offsets": torch.tensor(offsets, dtype=torch.int64),
        "caption_ids": torch.tensor(ids, dtype=torch.int64),
    }
    if signal_ids:
        tensors["signal_offsets"] = torch.tensor(signal_offsets, dtype=torch.int64)
        tensors["signal_ids"] = torch.tensor(signal_ids, dtype=torch.int64)
    _atomic_save(tensors, out / "text.safetensors")
    write_json_atomic(meta_path, {"key": key, "encoder": encoder_name, "dim": encoder.dim, "num_captions": len(captions)})


def cache_negatives(encoder, encoder_name: str, records: list[ClipRecord], cache_dir: Path, seed: int, precision: str = "fp32", progress: bool = True) -> Path:
    """Encode every clip's hard negative captions (`kinema.train.matcher_data`, for the matcher) once into
    `cache_dir/negatives/`, skipped when up to date."""
    from kinema.train.matcher_data import negative_pool

    out = cache_dir / "negatives"
    meta_path = out / "meta.json"
    key = f"{encoder_name}-{encoder.dim}-{precision}-{seed}-{records_digest(records)}"
    if _meta_matches(meta_path, key):
        return out / "negatives.safetensors"
    out.mkdir(parents=True, exist_ok=True)
    texts, offsets = negative_pool([r.scene for r in records], seed)
    if texts:
        hidden, lengths = encode_captions(encoder, texts, 256, precision, progress)
    else:
        hidden, lengths = torch.zeros(0, 1, encoder.dim, dtype=torch.float16), torch.zeros(0, dtype=torch.int32)
    _atomic_save({"hidden": hidden.contiguous(), "lengths": lengths.contiguous(), "offsets": torch.tensor(offsets, dtype=torch.int64)}, out / "negatives.safetensors")
    write_json_atomic(meta_path, {"key": key, "captions": len(texts), "clips": len(records)})
    return out / "negatives.safetensors"


def pick_in_ranges(offsets: torch.Tensor, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per group, uniform in [offsets[g], offsets[g + 1]): a random caption (or negative) of each clip.
    An empty range gives its start, which the caller must not use."""
    lo, hi = offsets[groups].numpy(), offsets[groups + 1].numpy()
    return lo + (rng.random(len(groups)) * (hi - lo)).astype(np.int64)


def text_rows(hidden: torch.Tensor, lengths: torch.Tensor, rows: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoded caption rows -> (states [B, L, D] float cut to the longest, lengths [B])."""
    idx = torch.as_tensor(rows)
    n = lengths[idx].long()
    return hidden[idx, : int(n.max())].float(), n


@dataclass
class LatentCache:
    """Everything the DiT trainer reads, in RAM."""

    latents: dict[str, torch.Tensor]  # bucket key -> fp16 [N,C,T',h,w] (not normalised)
    clip_ids: dict[str, torch.Tensor]  # bucket key -> clip index per row
    frame_latents: dict[str, torch.Tensor]  # bucket key -> fp16 [N,2,C,h,w]: last + inner frame, each encoded alone
    frame_index: dict[str, torch.Tensor]  # bucket key -> [N,2] pixel frame of each
    camera: dict[str, torch.Tensor]  # bucket key -> [N,4] pan, tilt, zoom, given
    latent_mean: torch.Tensor  # [C]
    latent_std: torch.Tensor  # [C]
    text_hidden: torch.Tensor  # fp16 [U,L,D]
    text_lengths: torch.Tensor  # int32 [U]
    clip_offsets: torch.Tensor
    caption_ids: torch.Tensor
    signal_offsets: torch.Tensor | None = None  # [clips+1] into signal_ids; None when no clip has them
    signal_ids: torch.Tensor | None = None  # caption rows without the camera words

    @staticmethod
    def load(cache_dir: Path) -> "LatentCache":
        meta = json.loads((cache_dir / "latents" / "meta.json").read_text())
        latents, clip_ids, frame_latents, frame_index, camera = {}, {}, {}, {}, {}
        for bkey in meta["buckets"]:
            t = load_file(str(cache_dir / "latents" / f"{bkey}.safetensors"))
            latents[bkey], clip_ids[bkey] = t["latents"], t["clip"]
            frame_latents[bkey], frame_index[bkey], camera[bkey] = t["frame_latents"], t["frame_index"], t["camera"]
        text = load_file(str(cache_dir / "text" / "text.safetensors"))
        return LatentCache(
            latents,
            clip_ids,
            frame_latents,
            frame_index,
            camera,
            torch.tensor(meta["latent_mean"]),
            torch.tensor(meta["latent_std"]),
            text["hidden"],
            text["lengths"],
            text["clip_offsets"],
            text["caption_ids"],
            text.get("signal_offsets"),
            text.get("signal_ids"),
        )
