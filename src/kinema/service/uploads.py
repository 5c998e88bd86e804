"""Media over HTTP: uploads (images, videos, audio), inline data URLs, and each task's own copies.

    POST   /v1/uploads          multipart field `file` -> {id: "upl_...", kind, media_type, bytes, width, height, ...}
    GET    /v1/uploads/{id}     what was stored
    DELETE /v1/uploads/{id}     gone (tasks made from it keep their own copies)

A request names its media by upload id (`image`, `last_image`,
`keyframes[].image`, `video`; in a storyboard also `subjects[].image` and
`soundtrack.file`), or inline as a base64 `data:` URL, which is ingested
exactly like an upload (same checks, same moderation) and removed again when
the request is answered. Ingesting means: the type is read from the bytes
(never from the name or the declared type) and only these are taken:

    images  PNG, JPEG, WebP        decoded by kinema.conditioning.images.load_image (> 50 MP and
                                   decompression bombs refused from the header), re-encoded as PNG
    videos  MP4/MOV, WebM/MKV, AVI  demuxer forced from the magic bytes, every frame decoded once
    audio   MP3, WAV, Ogg, FLAC, M4A

then the moderator's image check runs on the image (or sampled video
frames), and only then is anything written: the file and a JSON sidecar with
what was measured, under `uploads/<account>/`. A refusal is a coded 4xx
(`input.image.unreadable`, `input.image.too_large`, `input.image.bomb`,
`input.video.unreadable`, `input.video.too_long`, `input.audio.unreadable`,
`input.upload.unsupported`, `input.upload.too_large` (413),
`moderation.image`) and stores nothing.

When a task is created its inputs are hard-linked (copied across file
systems) into `inputs/<task id>/`, and the stored request names those
copies: a queued task does not depend on the upload surviving, deleting an
upload never breaks a task, and deleting the task removes its copies.
`Staging` does that per HTTP request (a FastAPI dependency): what it staged is
removed when the request ends unless the task was committed.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, File, Request, Response, UploadFile
from pydantic import BaseModel

from kinema.errors import KinemaInputError
from kinema.request import GenerationRequest
from kinema.service.db import new_id
from kinema.service.errors import ApiError
from kinema.service.moderation import check_image
from kinema.service.settings import Settings

UPLOAD_ID = re.compile(r"^upl_[0-9a-f]{32}$")
DATA_URL = re.compile(r"^data:([A-Za-z0-9.+-]+/[A-Za-z0-9.+-]+)?((?:;[A-Za-z0-9.+=-]+)*);base64,(.*)$", re.DOTALL)

# Videos are decoded whole when a task extends them, so their size is bounded at upload.
MAX_VIDEO_MEGAPIXELS = 8.3  # per frame: 3840x2160
MAX_VIDEO_SECONDS = 120.0
MAX_VIDEO_FRAMES = 3600
MAX_VIDEO_DECODED_PIXELS = 300e6  # frames x pixels: ~0.9 GB as uint8 RGB
MAX_AUDIO_SECONDS = 3600.0  # a soundtrack as long as the longest film
VIDEO_MODERATION_SAMPLES = 16  # frames of a video shown to the image check: first, one a second, last

Kind = Literal["image", "video", "audio"]


class UploadView(BaseModel):
    id: str
    kind: Kind
    media_type: str
    bytes: int
    width: int | None = None  # images and videos
    height: int | None = None
    frames: int | None = None  # videos
    fps: float | None = None
    seconds: float | None = None  # videos and audio
    created_at: float


# ---------------------------------------------------------------- what the bytes are


def sniff(data: bytes) -> tuple[str, str, str, str] | None:
    """(family, container or PIL format, file extension, media type) from magic bytes; None if not taken.

    family: "image", "video" (may turn out to be audio only) or "audio".
    """
    head = data[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "PNG", "png", "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "JPEG", "jpg", "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "WEBP", "webp", "image/webp"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B "):
            return "audio", "mp4", "m4a", "audio/mp4"
        return ("video", "mp4", "mov", "video/quicktime") if brand == b"qt  " else ("video", "mp4", "mp4", "video/mp4")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ("video", "matroska", "webm", "video/webm") if b"webm" in data[:4096] else ("video", "matroska", "mkv", "video/x-matroska")
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video", "avi", "avi", "video/x-msvideo"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio", "wav", "wav", "audio/wav"
    if head.startswith(b"OggS"):
        return "audio", "ogg", "ogg", "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio", "flac", "flac", "audio/flac"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio", "mp3", "mp3", "audio/mpeg"
    return None


def decode_data_url(value: str, code_field: str, where: str) -> bytes:
    m = DATA_URL.match(value)
    if m is None:
        raise ApiError(422, f"input.{code_field}.invalid", f"{where}: a data URL must be data:<type>;base64,<data>")
    try:
        return base64.b64decode(m.group(3), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, f"input.{code_field}.invalid", f"{where}: the data URL is not valid base64") from None


# ---------------------------------------------------------------- ingesting (checks, moderation, storage)


class Uploads:
    """The account-private upload store under `settings.uploads_dir`."""

    def __init__(self, settings: Settings, moderator: Any) -> None:
        self.settings = settings
        self.moderator = moderator

    def folder(self, account_id: str) -> Path:
        return (self.settings.uploads_dir / account_id).absolute()  # absolute: requests and storyboards name these files

    def meta_path(self, account_id: str, upload_id: str) -> Path:
        return self.folder(account_id) / f"{upload_id}.json"

    def get(self, account_id: str, upload_id: str) -> tuple[UploadView, Path] | None:
        if not UPLOAD_ID.match(upload_id):
            return None
        try:
            meta = json.loads(self.meta_path(account_id, upload_id).read_text())
        except (OSError, ValueError):
            return None
        path = self.folder(account_id) / meta.pop("file")
        if not path.is_file():
            return None
        return UploadView(**meta), path

    def delete(self, account_id: str, upload_id: str) -> bool:
        found = self.get(account_id, upload_id)
        if found is None:
            return False
        self.meta_path(account_id, upload_id).unlink(missing_ok=True)  # first: without it the upload is gone
        found[1].unlink(missing_ok=True)
        return True

    def ingest(self, account_id: str, data: bytes, where: str = "the upload") -> tuple[UploadView, Path]:
        """Check, moderate and store one file. Raises ApiError (nothing stored) when refused."""
        kind = sniff(data)
        limit = self.settings.max_upload_bytes if kind is None or kind[0] == "image" else self.settings.max_media_upload_bytes
        if len(data) > limit:
            raise ApiError(413, "input.upload.too_large", f"{where} is {len(data)} bytes; the limit for this type is {limit}")
        if kind is None:
            raise ApiError(
                422, "input.upload.unsupported",
                f"{where} is not a PNG, JPEG or WebP image, an MP4/MOV, WebM/MKV or AVI video, or MP3, WAV, Ogg, FLAC or M4A audio",
            )  # fmt: skip
        family, fmt, ext, media_type = kind
        folder = self.folder(account_id)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=".in-", suffix=f".{ext}")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            upload_id = "upl_" + os.urandom(16).hex()
            if family == "image":
                view, final = self._image(tmp, fmt, upload_id, folder, len(data), where)
            else:
                view, final = self._av(tmp, family, fmt, ext, media_type, upload_id, folder, where)
            meta = {**view.model_dump(), "file": final.name}
            part = self.meta_path(account_id, upload_id).with_suffix(".json.part")
            part.write_text(json.dumps(meta))
            os.replace(part, self.meta_path(account_id, upload_id))
            return view, final
        finally:
            tmp.unlink(missing_ok=True)

    def _refuse_image(self, pixels: np.ndarray, where: str) -> None:
        verdict = check_image(self.moderator, pixels)
        if verdict is not None:
            raise ApiError(422, verdict.code, f"{where}: {verdict.message}")

    def _image(self, tmp: Path, fmt: str, upload_id: str, folder: Path, size: int, where: str) -> tuple[UploadView, Path]:
        from PIL import Image

        from kinema.conditioning.images import load_image

        try:
            pixels = load_image(tmp)
        except KinemaInputError as exc:
            message = str(exc).replace(str(tmp), where)
            if "decompression bomb" in message:
                raise ApiError(422, "input.image.bomb", message) from None
            if "megapixels" in message:
                raise ApiError(422, "input.image.too_large", message) from None
            raise ApiError(422, "input.image.unreadable", message) from None
        self._refuse_image(pixels, where)
        final = folder / f"{upload_id}.png"
        part = folder / f".{upload_id}.png.part"
        Image.fromarray(np.ascontiguousarray(pixels)).save(part, format="PNG")  # re-encoded: no metadata of the original is kept
        os.replace(part, final)
        h, w = pixels.shape[:2]
        return UploadView(id=upload_id, kind="image", media_type="image/png", bytes=final.stat().st_size, width=int(w), height=int(h), created_at=time.time()), final

    def _av(self, tmp: Path, family: str, fmt: str, ext: str, media_type: str, upload_id: str, folder: Path, where: str) -> tuple[UploadView, Path]:
        import av

        unreadable = "input.audio.unreadable" if family == "audio" else "input.video.unreadable"
        try:
            with av.open(str(tmp), format=fmt) as container:
                if container.streams.video and family == "video":
                    view = self._video(container, upload_id, media_type, where)
                elif container.streams.audio:
                    view = self._audio(container, upload_id, media_type, where)
                    family = "audio"
                else:
                    raise ApiError(422, unreadable, f"{where} has no video or audio stream")
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - PyAV raises many error types for broken files
            raise ApiError(422, unreadable, f"cannot read {where} as {'audio' if family == 'audio' else 'a video'}: {type(exc).__name__}") from None
        final = folder / f"{upload_id}.{ext}"
        _link_or_copy(tmp, final)
        view = view.model_copy(update={"bytes": final.stat().st_size})
        return view, final

    def _video(self, container: Any, upload_id: str, media_type: str, where: str) -> UploadView:
        stream = container.streams.video[0]
        w, h = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        if w * h > MAX_VIDEO_MEGAPIXELS * 1e6:
            raise ApiError(422, "input.video.too_large", f"{where} is {w}x{h}; the limit is {MAX_VIDEO_MEGAPIXELS:g} megapixels a frame")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        step = max(1, round(fps)) if fps > 0 else 8
        count, decoded, last = 0, 0.0, None
        for frame in container.decode(stream):
            pixels = frame.to_ndarray(format="rgb24")
            count += 1
            decoded += pixels.shape[0] * pixels.shape[1]
            too_long = count > MAX_VIDEO_FRAMES or decoded > MAX_VIDEO_DECODED_PIXELS or (fps > 0 and count / fps > MAX_VIDEO_SECONDS)
            if too_long:
                raise ApiError(
                    422, "input.video.too_long",
                    f"{where} is over the limits for a video input ({MAX_VIDEO_SECONDS:g} s, {MAX_VIDEO_FRAMES} frames, {MAX_VIDEO_DECODED_PIXELS / 1e6:g} megapixels decoded)",
                )  # fmt: skip
            if (count - 1) % step == 0 and (count - 1) // step < VIDEO_MODERATION_SAMPLES - 1:
                self._refuse_image(pixels, where)
            last = pixels
            w, h = pixels.shape[1], pixels.shape[0]
        if last is None:
            raise ApiError(422, "input.video.unreadable", f"{where} has no video frames")
        self._refuse_image(last, where)
        if fps <= 0:
            raise ApiError(422, "input.video.unreadable", f"{where} does not state its frame rate")
        return UploadView(
            id=upload_id, kind="video", media_type=media_type, bytes=0, width=int(w), height=int(h), frames=count, fps=fps,
            seconds=count / fps, created_at=time.time(),
        )  # fmt: skip

    def _audio(self, container: Any, upload_id: str, media_type: str, where: str) -> UploadView:
        stream = container.streams.audio[0]
        samples, rate = 0, int(stream.rate or stream.codec_context.sample_rate or 0)
        for frame in container.decode(stream):
            samples += frame.samples
            rate = rate or frame.sample_rate
            if rate and samples / rate > MAX_AUDIO_SECONDS:
                raise ApiError(422, "input.audio.too_long", f"{where} lasts over {MAX_AUDIO_SECONDS:g} s")
        if samples == 0 or not rate:
            raise ApiError(422, "input.audio.unreadable", f"{where} has no audio samples")
        return UploadView(id=upload_id, kind="audio", media_type=media_type, bytes=0, seconds=samples / rate, created_at=time.time())


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


# ---------------------------------------------------------------- one HTTP request's media


class Staging:
    """The media of one create/quote request: resolves references, pins them for a task, cleans up.

    `resolve` turns an upload id or a data URL into a server path (data URLs are
    ingested as uploads that live only as long as this request). `pin` links a
    resolved file into `inputs/<task_id>/` and returns the path the stored
    request will name. `close` (the dependency's exit) removes the inline
    uploads always, and the pinned files unless `commit` was called.
    """

    def __init__(self, settings: Settings, store: Uploads) -> None:
        self.settings = settings
        self.store = store
        self.task_id = new_id()
        self.origins: dict[str, str] = {}  # server path -> what the client sent (for messages)
        self._inline: list[tuple[str, str]] = []  # (account id, upload id)
        self._pinned: dict[str, str] = {}
        self._committed = False

    @property
    def task_dir(self) -> Path:
        return (self.settings.inputs_dir / self.task_id).absolute()

    def resolve(self, account_id: str, value: Any, kinds: tuple[str, ...], code_field: str, where: str) -> str:
        if not isinstance(value, str):
            raise ApiError(422, f"input.{code_field}.invalid", f"{where} must be an upload id (upl_...) or a data URL")
        if value.startswith("data:"):
            view, path = self.store.ingest(account_id, decode_data_url(value, code_field, where), where)
            self._inline.append((account_id, view.id))
            label = f"{where} (data URL)"
        elif UPLOAD_ID.match(value):
            found = self.store.get(account_id, value)
            if found is None:
                raise ApiError(422, f"input.{code_field}.not_found", f"{where}: no upload {value} on this account")
            view, path = found
            label = value
        else:
            raise ApiError(422, f"input.{code_field}.invalid", f"{where} must be an upload id (upl_...) from POST /v1/uploads, or a base64 data URL")
        if view.kind not in kinds:
            raise ApiError(422, f"input.{code_field}.invalid", f"{where}: {label} is {'an' if view.kind == 'image' or view.kind == 'audio' else 'a'} {view.kind}; this field takes {' or '.join(kinds)}")
        self.origins[str(path)] = label
        return str(path)

    def pin(self, path: str) -> str:
        """The task's own copy of a resolved file (idempotent per path)."""
        if path in self._pinned:
            return self._pinned[path]
        src = Path(path)
        self.task_dir.mkdir(parents=True, exist_ok=True)
        dst = self.task_dir / f"{len(self._pinned)}-{src.name}"
        try:
            _link_or_copy(src, dst)
        except FileNotFoundError:
            raise ApiError(422, "input.upload.not_found", f"{self.origins.get(path, 'an upload')} was deleted while the task was being created") from None
        self._pinned[path] = str(dst)
        return str(dst)

    def scrub(self, message: str) -> str:
        """A message without server paths: each is replaced by what the client sent."""
        for path, label in sorted(self.origins.items(), key=lambda kv: -len(kv[0])):
            message = message.replace(path, label)
        for path in self._pinned.values():
            message = message.replace(path, "an input")
        return message

    def commit(self) -> None:
        self._committed = True

    def close(self) -> None:
        for account_id, upload_id in self._inline:
            self.store.delete(account_id, upload_id)
        if not self._committed and self._pinned:
            shutil.rmtree(self.task_dir, ignore_errors=True)


def new_staging(svc: Any) -> Staging:
    """A Staging for one request of the service `svc`; the caller closes it (`contextlib.closing`)."""
    return Staging(svc.settings, Uploads(svc.settings, svc.moderator))


async def staging(request: Request) -> AsyncIterator[Staging]:
    """FastAPI dependency: one Staging per request, cleaned up when the request ends."""
    stage = new_staging(request.app.state.service)
    try:
        yield stage
    finally:
        stage.close()


# ---------------------------------------------------------------- GenerationRequest media


def resolve_request_media(stage: Staging, account_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """`image`, `last_image`, `keyframes[].image` and `video` of a request body: references -> server paths."""
    out = dict(fields)
    for name in ("image", "last_image"):
        if out.get(name) is not None:
            out[name] = stage.resolve(account_id, out[name], ("image",), name, name)
    if out.get("video") is not None:
        out["video"] = stage.resolve(account_id, out["video"], ("video",), "video", "video")
    if out.get("keyframes"):
        out["keyframes"] = [
            {**dict(k), "image": stage.resolve(account_id, dict(k).get("image"), ("image",), "keyframes", f"keyframes[{j}].image")}
            for j, k in enumerate(out["keyframes"])
        ]
    return out


def pin_request(stage: Staging, request: GenerationRequest) -> GenerationRequest:
    """The request as stored for the worker: every media path is the task's own copy."""
    update: dict[str, Any] = {}
    for name in ("image", "last_image", "video"):
        value = getattr(request, name)
        if value is not None:
            update[name] = stage.pin(value)
    if request.keyframes:
        update["keyframes"] = tuple(k.model_copy(update={"image": stage.pin(k.image)}) for k in request.keyframes)
    return request.model_copy(update=update) if update else request


def remove_task_inputs(settings: Settings, task_id: str) -> None:
    """Delete a task's own media copies (called when the task is deleted)."""
    if re.fullmatch(r"[0-9a-f]{32}", task_id):
        shutil.rmtree(settings.inputs_dir / task_id, ignore_errors=True)


# ---------------------------------------------------------------- routes


def add_routes(app: FastAPI, svc: Any, account: Callable[..., Any], errors: dict[int | str, dict[str, Any]]) -> None:
    settings = svc.settings

    def store() -> Uploads:
        return Uploads(settings, svc.moderator)

    @app.post("/v1/uploads", response_model=UploadView, status_code=201, responses=errors, tags=["uploads"])
    def upload(
        file: UploadFile = File(..., description="PNG, JPEG or WebP image (at most 8 MiB); MP4/MOV, WebM/MKV or AVI video, or MP3/WAV/Ogg/FLAC/M4A audio (at most 64 MiB)"),
        acct: Any = Depends(account),
    ) -> UploadView:  # fmt: skip
        """Store a file for `image`, `last_image`, `keyframes[].image` (images), `video` (videos) or a storyboard's
        `soundtrack.file` (audio or video). The type is read from the content; images are checked (a real image,
        at most 50 MP, not a decompression bomb) and re-encoded as PNG; videos are decoded once; images and video frames
        go through the moderation hook. Private to the account; pass the returned id in a task, quote or storyboard."""
        limit = max(settings.max_upload_bytes, settings.max_media_upload_bytes)
        data = file.file.read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, "input.upload.too_large", f"the upload is over {limit} bytes")
        view, _ = store().ingest(acct.id, data)
        return view

    @app.get("/v1/uploads/{upload_id}", response_model=UploadView, responses=errors, tags=["uploads"])
    def get_upload(upload_id: str, acct: Any = Depends(account)) -> UploadView:
        found = store().get(acct.id, upload_id)
        if found is None:
            raise ApiError(404, "upload.not_found", "no such upload")
        return found[0]

    @app.delete("/v1/uploads/{upload_id}", status_code=204, responses=errors, tags=["uploads"])
    def delete_upload(upload_id: str, acct: Any = Depends(account)) -> Response:
        """The file is removed. Tasks already created from it keep their own copy and run as submitted."""
        if not store().delete(acct.id, upload_id):
            raise ApiError(404, "upload.not_found", "no such upload")
        return Response(status_code=204)
