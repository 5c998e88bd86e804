"""How fast the cache stage encodes captions: batches in dataset order against batches of similar length.

    python benchmarks/caption_cache_speed.py --dataset runs/builtin/dataset --captions 8000 \
        --json docs/results/caption_cache_speed.json

A batch is padded to its longest caption. Shapes World's captions run from 6 to 51
MiniLM tokens, so batches in dataset order pad to about twice the tokens they hold;
`kinema.train.latents.encode_captions` now sorts captions by token length first.
Both ways encode the same distinct captions (the dataset's first N, as the cache
stage collects them) with the same batch size; the figure is captions per second,
plus the largest difference between the two results within each caption's tokens
(float rounding only; what lies past a caption's length is padding nobody reads).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from kinema.models.text import load_text_encoder
from kinema.train.latents import TRAIN_MAX_TOKENS, caption_lengths, encode_captions


def dataset_captions(dataset: Path, limit: int) -> list[str]:
    """The distinct captions of `dataset/metadata.jsonl` in the order the cache stage meets them."""
    unique: dict[str, None] = {"": None}
    for line in (dataset / "metadata.jsonl").read_text().splitlines():
        record = json.loads(line)
        for caption in record.get("captions", []) + record.get("captions_without_camera", []):
            unique.setdefault(caption)
        if len(unique) >= limit:
            break
    return list(unique)[:limit]


def encode_in_dataset_order(encoder, captions: list[str], batch_size: int) -> torch.Tensor:
    """What encode_captions did before: batches in the captions' own order (hidden states only)."""
    parts = []
    with torch.no_grad():
        for s in range(0, len(captions), batch_size):
            parts.append(encoder.encode(captions[s : s + batch_size])[0].half())
    width = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, 0, 0, width - p.shape[1])) for p in parts])


def padded_tokens(lengths: list[int], batch_size: int) -> int:
    return sum(max(lengths[s : s + batch_size]) * len(lengths[s : s + batch_size]) for s in range(0, len(lengths), batch_size))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True, help="a dataset directory with metadata.jsonl")
    ap.add_argument("--captions", type=int, default=8000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--sorted-only", action="store_true", help="time only the sorted batches (the old order takes twice as long)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    encoder = load_text_encoder("all-MiniLM-L6-v2", max_tokens=TRAIN_MAX_TOKENS)
    captions = dataset_captions(args.dataset, args.captions)
    lengths = caption_lengths(encoder, captions)
    encoder.encode(captions[:8])  # warm-up

    t0 = time.perf_counter()
    after, _ = encode_captions(encoder, captions, args.batch_size)
    t_after = time.perf_counter() - t0
    result = {
        "captions": len(captions),
        "torch_threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "tokens": int(np.sum(lengths)),
        "padded_tokens_dataset_order": padded_tokens(lengths, args.batch_size),
        "padded_tokens_sorted": padded_tokens(sorted(lengths), args.batch_size),
        "seconds_sorted": t_after,
        "captions_per_second_sorted": len(captions) / t_after,
    }
    if not args.sorted_only:
        t0 = time.perf_counter()
        before = encode_in_dataset_order(encoder, captions, args.batch_size)
        t_before = time.perf_counter() - t0
        width = min(before.shape[1], after.shape[1])
        within = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None])[..., None]  # pad positions hold anything
        result |= {
            "seconds_dataset_order": t_before,
            "captions_per_second_dataset_order": len(captions) / t_before,
            "speedup": t_before / t_after,
            "max_abs_difference": float(((before[:, :width].float() - after[:, :width].float()) * within).abs().max()),
        }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
