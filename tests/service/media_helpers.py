"""Small media files for the service tests: real PNGs, crafted PNG headers, MP4s, WAVs, data URLs."""

from __future__ import annotations

import base64
import io
import struct
import tempfile
import wave
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def png(w: int = 40, h: int = 30, color: tuple[int, int, int] = (200, 200, 200), pattern: bool = False) -> bytes:
    pixels = np.zeros((h, w, 3), np.uint8)
    pixels[:] = color
    if pattern:  # a left-to-right ramp: gives the image a perceptual hash of its own
        pixels[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def png_header(w: int, h: int) -> bytes:
    """A tiny, well-formed PNG that *declares* w x h pixels (for the megapixel and bomb checks)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def mp4(frames: int = 16, w: int = 32, h: int = 32, fps: float = 8.0, color: tuple[int, int, int] | None = None) -> bytes:
    from kinema.video.io import write_video

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (frames, h, w, 3), dtype=np.uint8) if color is None else np.tile(np.array(color, np.uint8), (frames, h, w, 1))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(pixels, Path(tmp) / "v.mp4", fps)
        return path.read_bytes()


def wav(seconds: float = 1.0, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def upload(h, data: bytes, name: str = "x.bin", headers=None):
    return h.client.post("/v1/uploads", files={"file": (name, data, "application/octet-stream")}, headers=headers or h.headers)


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
