"""Write a Shapes World dataset: rendered clips plus `metadata.jsonl` (see docs/architecture.md).

Each clip is a pure function of (seed, index): its generator is seeded from both,
so the dataset is reproducible, can be written by any number of worker processes
in any order, and can be resumed: clips already on disk (every clip file is
written atomically) are not rendered again. `metadata.jsonl` is written last, via
a temporary file and a rename, so a directory with metadata is always complete.
The settings are recorded in `dataset.json`; resuming with different settings is
refused rather than silently mixing two datasets.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from kinema.errors import KinemaInputError
from kinema.video.io import write_video
from kinema.world.captions import captions
from kinema.world.render import render
from kinema.world.sampling import FOCUSES, HELDOUT_MODES, focus_parts, sample_scene
from kinema.world.scene import SPEC_VERSION, ClipSpec, Scene

METADATA = "metadata.jsonl"
SETTINGS = "dataset.json"
CLIPS_DIR = "clips"
NUM_CAPTIONS = 3
SPLIT_NAMES = {"exclude": "train", "only": "heldout", "any": "any"}


@dataclass(frozen=True)
class _Job:
    out_dir: str
    seed: int
    heldout: str
    buckets: tuple[ClipSpec, ...]
    weights: tuple[float, ...]
    focus: str = ""


def clip_record(job: _Job, index: int) -> dict[str, Any]:
    """Sample, caption and (unless present) render clip `index`; returns its metadata line."""
    rng = np.random.default_rng([job.seed, index])
    clip = job.buckets[int(rng.choice(len(job.buckets), p=job.weights))]
    parts = focus_parts(job.focus)
    keep = FOCUSES[parts[index % len(parts)]]  # a mixed focus: clips take its slices in turn
    scene = sample_scene(rng, clip, job.heldout)
    while not keep(scene):
        scene = sample_scene(rng, clip, job.heldout)
    caps = captions(scene, rng, NUM_CAPTIONS)
    render_seed = int(rng.integers(2**31 - 1))
    rel = f"{CLIPS_DIR}/{index:06d}.mp4"
    target = Path(job.out_dir) / rel
    if not target.exists():
        write_video(render(scene, clip, render_seed), target, clip.fps, threads=1)
    entry: dict[str, Any] = {
        "video": rel,
        "captions": caps,
        "height": clip.height,
        "width": clip.width,
        "num_frames": clip.num_frames,
        "fps": clip.fps,
        "scene": scene.to_dict(),
        "seed": render_seed,
        "split": SPLIT_NAMES[job.heldout],
    }
    if scene.camera != "static":
        entry["captions_without_camera"] = captions_without_camera(scene, job.seed, index)
    return entry


def captions_without_camera(scene: Scene, seed: int, index: int) -> list[str]:
    """Clip `index`'s captions that leave its camera move unnamed (for training the camera signal).

    From a generator of their own, so the clip's scene, captions and render seed
    stay what they were before these existed.
    """
    return captions(scene, np.random.default_rng([seed, index, 1]), NUM_CAPTIONS, camera=False)


def _settings(job: _Job) -> dict[str, Any]:
    settings = {
        "spec": SPEC_VERSION,
        "seed": job.seed,
        "heldout": job.heldout,
        "buckets": [asdict(b) for b in job.buckets],
        "bucket_weights": list(job.weights),
    }
    return {**settings, "focus": job.focus} if job.focus else settings  # datasets written before `focus` still resume


def _validate(
    num_clips: int, buckets: Sequence[ClipSpec], seed: int, heldout: str, bucket_weights: Sequence[float] | None, workers: int, focus: str = ""
) -> tuple[float, ...]:
    try:
        focus_parts(focus)
    except ValueError as e:
        raise KinemaInputError(str(e)) from None
    if num_clips < 1:
        raise KinemaInputError(f"num_clips must be at least 1, got {num_clips}")
    if not buckets:
        raise KinemaInputError("at least one clip bucket is needed")
    if seed < 0:
        raise KinemaInputError(f"seed must be >= 0, got {seed}")
    if heldout not in HELDOUT_MODES:
        raise KinemaInputError(f"heldout must be one of {HELDOUT_MODES}, got {heldout!r}")
    if workers < 1:
        raise KinemaInputError(f"workers must be at least 1, got {workers}")
    if bucket_weights is None:
        return tuple([1.0 / len(buckets)] * len(buckets))
    if len(bucket_weights) != len(buckets) or any(w < 0 for w in bucket_weights) or sum(bucket_weights) <= 0:
        raise KinemaInputError("bucket_weights must be one non-negative weight per bucket with a positive sum")
    total = float(sum(bucket_weights))
    return tuple(float(w) / total for w in bucket_weights)


def write_dataset(
    out_dir: str | os.PathLike[str],
    num_clips: int,
    buckets: Sequence[ClipSpec],
    seed: int,
    heldout: str = "exclude",
    bucket_weights: Sequence[float] | None = None,
    workers: int = 1,
    progress: bool = True,
    focus: str = "",
) -> Path:
    """Write `num_clips` clips and their metadata to `out_dir`; returns the directory.

    heldout: "exclude" (a training set: no held-out pair anywhere), "only" (every
    clip carries a held-out pair) or "any". focus: "" (the whole world), a key of
    FOCUSES (a narrower slice) or several joined by "+" (their clips in turn).
    Resuming an interrupted run with the same settings only renders the missing clips.
    """
    weights = _validate(num_clips, buckets, seed, heldout, bucket_weights, workers, focus)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise KinemaInputError(f"cannot write a dataset to {out}: it is a file")
    try:
        (out / CLIPS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KinemaInputError(f"cannot write to {out}: {e.strerror or e}") from None
    job = _Job(str(out), int(seed), heldout, tuple(buckets), weights, focus)
    settings = _settings(job)
    settings_path = out / SETTINGS
    if settings_path.exists():
        previous = json.loads(settings_path.read_text())
        if previous != settings:
            raise KinemaInputError(f"{out} holds a dataset written with other settings ({SETTINGS}); use a new directory")
    else:
        _atomic_write(settings_path, json.dumps(settings, indent=2) + "\n")

    make = partial(clip_record, job)
    bar = tqdm(total=num_clips, desc="rendering clips", unit="clip", disable=not progress)
    records: list[dict[str, Any]] = []
    if workers == 1:
        for i in range(num_clips):
            records.append(make(i))
            bar.update()
    else:
        # spawn, not fork: the parent may hold torch/OpenMP threads that fork cannot copy safely.
        with mp.get_context("spawn").Pool(workers) as pool:
            for rec in pool.imap(make, range(num_clips), chunksize=16):
                records.append(rec)
                bar.update()
    bar.close()
    lines = "".join(json.dumps(r) + "\n" for r in records)
    _atomic_write(out / METADATA, lines)
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
