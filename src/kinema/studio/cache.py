"""Generated shots kept on disk, keyed by everything that determines their frames.

The key is a SHA-256 of the shot's request (every field, after the backend
filled its defaults), the *content* of every image it is conditioned on (not
the path: a regenerated reference frame with the same pixels is the same
input), and the model's fingerprint (its config files and weights). Editing
one shot changes only that shot's key, so only it is generated again.

Each entry is one `.npz` written to a temporary name and renamed, so a crash
or a failed shot never corrupts or removes the entries of other shots.

With `max_bytes` set, `prune()` (called by the studio once a film is written)
removes the least recently used files of the directory (shots, reference
frames, encoded segments) until it fits, but never one this cache object used:
a render never loses what it just made or read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from kinema.engine.backend import Video


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _canonical(value: Any) -> Any:
    """JSON-able, order-stable form of request data; arrays become digests of their bytes."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return _canonical(value.model_dump(mode="python"))
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, np.ndarray):
        return {"array": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest(), "shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, float):
        return repr(value)  # exact, and 1.0 != 1
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return repr(value)


def shot_key(request: Any, resolved: Any, media: dict[str, str], model: str) -> str:
    """`media` maps each conditioning field to the digest of its file's content."""
    request_data = _canonical(request)
    if isinstance(request_data, dict):  # paths are replaced by their content digests
        for name in media:
            request_data.pop(name, None)
        for kf in request_data.get("keyframes") or []:
            kf.pop("image", None)
    resolved_data = _canonical(resolved)
    if isinstance(resolved_data, dict):
        for name in media:
            resolved_data.pop(name, None)
    blob = json.dumps({"request": request_data, "resolved": resolved_data, "media": media, "model": model}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class ShotCache:
    """A directory of generated shots: `<key>.npz` (frames, fps, seed) plus PNG reference frames."""

    def __init__(self, directory: str | Path, max_bytes: int | None = None):
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"a cache size limit must be > 0 bytes, got {max_bytes}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._used: set[Path] = set()  # files this object read or wrote: prune() keeps them

    def mark_used(self, path: str | Path) -> None:
        """Keep `path` through prune() and make it the most recently used file."""
        p = Path(path)
        self._used.add(p.resolve())
        try:
            os.utime(p)
        except OSError:
            pass

    def prune(self) -> int:
        """Delete least-recently-used files until the directory fits `max_bytes`; returns bytes freed."""
        if self.max_bytes is None or not self.directory.is_dir():
            return 0
        files = []
        for p in self.directory.rglob("*"):
            if p.is_file() and not p.name.startswith("."):  # dot-names are writes in progress
                st = p.stat()
                files.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in files)
        freed = 0
        for _, size, p in sorted(files, key=lambda f: f[0]):
            if total - freed <= self.max_bytes:
                break
            if p.resolve() in self._used:
                continue
            try:
                p.unlink()
                freed += size
            except FileNotFoundError:  # another render pruned it first
                freed += size
        return freed

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npz"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> Video | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with np.load(p) as data:
                video = Video(frames=data["frames"], fps=float(data["fps"]), seed=int(data["seed"]))
            self.mark_used(p)
            return video
        except (OSError, ValueError, KeyError):  # unreadable entry: treat as missing, it will be rewritten
            return None

    def made_by(self, key: str) -> str:
        """Who generated an entry (`put`'s `made_by`, e.g. a service task id); "" when unknown or missing."""
        try:
            with np.load(self.path(key)) as data:
                return str(data["made_by"]) if "made_by" in data.files else ""
        except (OSError, ValueError, KeyError):
            return ""

    def put(self, key: str, video: Video, made_by: str = "") -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        p = self.path(key)
        tmp = self.directory / f".{key}.{uuid.uuid4().hex[:8]}.tmp.npz"
        try:
            np.savez(tmp, frames=video.frames, fps=np.float64(video.fps), seed=np.int64(video.seed), made_by=np.str_(made_by))
            os.replace(tmp, p)
        finally:
            if tmp.exists():
                tmp.unlink()
        self.mark_used(p)
        return p

    def put_image(self, frame: np.ndarray) -> Path:
        """A conditioning frame as a PNG named by its content (the request vocabulary takes image paths)."""
        from PIL import Image

        digest = hashlib.sha256(np.ascontiguousarray(frame).tobytes()).hexdigest()[:32]
        p = self.directory / "frames" / f"{digest}.png"
        if not p.is_file():
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.parent / f".{p.name}.{uuid.uuid4().hex[:8]}.tmp.png"
            try:
                Image.fromarray(frame).save(tmp)
                os.replace(tmp, p)
            finally:
                if tmp.exists():
                    tmp.unlink()
        self.mark_used(p)
        return p

    def keys(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.npz") if not p.name.startswith("."))
