"""Read a dataset directory of real video files: metadata, buckets, frames.

The same path serves the rendered Shapes World dataset and a user's own
footage: `metadata.jsonl` (only `video` and `captions`/`caption` required) or
`metadata.csv` with `video,caption` columns (optional: `camera`, and
`captions_without_camera` for clips whose camera moves). Missing sizes, frame counts and
fps are probed from the file, so no code change is needed for new footage.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kinema.conditioning.camera import CameraMotion, camera_from_metadata
from kinema.errors import KinemaInputError
from kinema.train.buckets import Bucket, assign_bucket


@dataclass
class ClipRecord:
    """One clip of a dataset; `bucket` is set by `assign_buckets`."""

    video: Path
    captions: list[str]
    height: int
    width: int
    num_frames: int
    fps: float
    bucket: Bucket | None = field(default=None)
    camera: CameraMotion | None = None  # known camera motion (metadata), trains the camera signal
    # Captions that leave the camera move unnamed (metadata `captions_without_camera`): with the
    # camera given as a signal, training on these makes the signal, not the words, carry the move.
    signal_captions: list[str] = field(default_factory=list)
    # Shapes World clips carry their scene (metadata `scene`): the DiT's scene supervision reads it.
    scene: dict | None = None
    # The video's path as the metadata writes it, relative to the dataset: what the cache keys on, so a
    # dataset copied or linked into another run directory keeps its caches ("" = key on `video`).
    name: str = ""


def probe_video(path: Path) -> tuple[int, int, int, float]:
    """(height, width, num_frames, fps) from the container, decoding only if the count is missing."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 8.0
        h, w, n = stream.codec_context.height, stream.codec_context.width, stream.frames
        if not n:
            n = sum(1 for _ in container.decode(stream))
    return int(h), int(w), int(n), fps


def _captions(entry: dict, where: str) -> list[str]:
    caps = entry.get("captions", entry.get("caption"))
    if isinstance(caps, str):
        caps = [caps]
    if not caps or not all(isinstance(c, str) for c in caps):
        raise KinemaInputError(f"{where}: each clip needs a non-empty 'caption' or 'captions'")
    return list(caps)


def _signal_captions(entry: dict, where: str) -> list[str]:
    caps = entry.get("captions_without_camera") or []
    if not isinstance(caps, list) or not all(isinstance(c, str) and c.strip() for c in caps):
        raise KinemaInputError(f"{where}: {entry['video']}: 'captions_without_camera' must be a list of non-empty strings")
    return list(caps)


def read_metadata(dataset_dir: str | Path) -> list[ClipRecord]:
    """All clips listed in `metadata.jsonl` (preferred) or `metadata.csv`."""
    root = Path(dataset_dir)
    jsonl, csv_path = root / "metadata.jsonl", root / "metadata.csv"
    entries: list[dict] = []
    if jsonl.is_file():
        for n, line in enumerate(jsonl.read_text().splitlines(), 1):
            if line.strip():
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise KinemaInputError(f"{jsonl}:{n} is not valid JSON: {exc.msg}") from None
        where = str(jsonl)
    elif csv_path.is_file():
        with csv_path.open(newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "video" not in reader.fieldnames or "caption" not in reader.fieldnames:
                raise KinemaInputError(f"{csv_path} needs the columns video,caption")
            entries = [dict(row) for row in reader]
        where = str(csv_path)
    else:
        raise KinemaInputError(f"no metadata.jsonl or metadata.csv in {root}")
    records = []
    for entry in entries:
        if "video" not in entry:
            raise KinemaInputError(f"{where}: every clip needs a 'video' path")
        path = root / entry["video"]
        if not path.is_file():
            raise KinemaInputError(f"{where}: video file not found: {path}")
        if all(k in entry for k in ("height", "width", "num_frames", "fps")):
            h, w, n, fps = int(entry["height"]), int(entry["width"]), int(entry["num_frames"]), float(entry["fps"])
        else:
            h, w, n, fps = probe_video(path)
        try:
            camera = camera_from_metadata(entry)
        except KinemaInputError as exc:
            raise KinemaInputError(f"{where}: {entry['video']}: {exc}") from None
        records.append(ClipRecord(path, _captions(entry, where), h, w, n, fps, camera=camera, signal_captions=_signal_captions(entry, where), scene=entry.get("scene") if isinstance(entry.get("scene"), dict) else None, name=str(entry["video"])))
    if not records:
        raise KinemaInputError(f"{where} lists no clips")
    return records


def assign_buckets(records: list[ClipRecord], buckets: list[list[int]], frame_counts: list[int], fps: float) -> list[ClipRecord]:
    """Set each record's bucket; returns only the clips long enough for some bucket."""
    kept = []
    for r in records:
        r.bucket = assign_bucket(r.height, r.width, r.num_frames, r.fps, buckets, frame_counts, fps)
        if r.bucket is not None:
            kept.append(r)
    if not kept:
        raise KinemaInputError(f"no clip is long enough for the shortest allowed length {min(frame_counts)} frames at {fps} fps")
    return kept


def resample_frames(frames: np.ndarray, src_fps: float, dst_fps: float, num_frames: int, start: int = 0) -> np.ndarray:
    """Pick `num_frames` frames at `dst_fps` (nearest source frame), beginning at source frame `start`."""
    step = src_fps / dst_fps if src_fps > 0 and dst_fps > 0 else 1.0
    idx = np.clip(np.round(start + np.arange(num_frames) * step).astype(np.int64), 0, len(frames) - 1)
    return frames[idx]


def resize_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to cover (height, width), antialiased, then centre-crop: uint8 [T,H,W,3] in and out."""
    t, h, w, _ = frames.shape
    if (h, w) == (height, width):
        return frames
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - height) // 2, (nw - width) // 2
    x = x[:, :, top : top + height, left : left + width]
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def load_clip(record: ClipRecord, fps: float, bucket: Bucket | None = None) -> np.ndarray:
    """Decode a clip and fit it to its bucket: uint8 [T, H, W, 3]."""
    from kinema.video.io import read_video

    b = bucket or record.bucket
    if b is None:
        raise ValueError(f"{record.video} has no bucket")
    frames, src_fps = read_video(record.video)
    src_fps = src_fps or record.fps
    frames = resample_frames(frames, src_fps, fps, b.num_frames)
    return resize_crop(frames, b.height, b.width)


def to_model_video(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [T,H,W,3] (or a batch [B,T,H,W,3]) -> float [B,3,T,H,W] in [-1, 1]."""
    if isinstance(frames, np.ndarray) and not frames.flags.writeable:
        frames = frames.copy()  # torch warns on (and must not alias) read-only arrays, e.g. from PIL
    x = torch.as_tensor(frames)
    if x.ndim == 4:
        x = x.unsqueeze(0)
    return x.permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)
