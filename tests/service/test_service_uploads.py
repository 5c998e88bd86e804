"""POST /v1/uploads: images for image-to-video, checked, private to the account, referenced by id."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

from PIL import Image  # noqa: E402
from service_helpers import FakeBackend, make_harness, wait_for  # noqa: E402


def png(w: int = 40, h: int = 30) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 200, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def h(tmp_path: Path):
    harness = make_harness(tmp_path, lambda: FakeBackend(tasks=("image-to-video",)), max_upload_bytes=100_000)
    yield harness
    harness.client.__exit__(None, None, None)


def upload(h, data: bytes, headers=None):
    return h.client.post("/v1/uploads", files={"file": ("x.png", data, "image/png")}, headers=headers or h.headers)


def test_an_uploaded_image_drives_an_image_to_video_task(h) -> None:
    r = upload(h, png())
    assert r.status_code == 201, r.text
    up = r.json()
    assert up["id"].startswith("upl_") and (up["width"], up["height"]) == (40, 30)
    t = h.client.post("/v1/tasks", json={"prompt": "a ball", "image": up["id"]}, headers=h.headers)
    assert t.status_code == 201, t.text
    assert t.json()["request"]["image"] == up["id"]  # the view shows the id, never a server path
    assert wait_for(h.client, h.headers, t.json()["id"], {"succeeded", "failed"})["state"] == "succeeded"


@pytest.mark.parametrize("data,status,code", [
    (b"this is not an image", 422, "input.upload.unsupported"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, 422, "input.image.unreadable"),
    (b"x" * 100_001, 413, "input.upload.too_large"),
])  # fmt: skip
def test_bad_uploads_are_refused_and_leave_nothing(h, data: bytes, status: int, code: str) -> None:
    r = upload(h, data)
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text
    folder = h.app.state.service.settings.uploads_dir / h.account_id
    assert not folder.exists() or list(folder.iterdir()) == []


def test_image_must_be_an_own_upload_id(h) -> None:
    from kinema.service.accounts import create_account, create_key

    other = {"Authorization": f"Bearer {create_key(h.sessions, create_account(h.sessions, 'eve', 'pro'))}"}
    theirs = upload(h, png(), headers=other).json()["id"]
    cases = [("/etc/passwd", "input.image.invalid"), ("upl_../../x", "input.image.invalid"), (theirs, "input.image.not_found"), ("upl_" + "0" * 32, "input.image.not_found")]
    for value, code in cases:
        r = h.client.post("/v1/tasks", json={"prompt": "a ball", "image": value}, headers=h.headers)
        assert r.status_code == 422 and r.json()["error"]["code"] == code, (value, r.text)
    assert h.client.get("/v1/tasks", headers=h.headers).json()["items"] == []


def test_a_text_only_model_refuses_an_image_and_charges_nothing(tmp_path: Path) -> None:
    h = make_harness(tmp_path, FakeBackend)
    try:
        before = h.balance()
        up = upload(h, png()).json()["id"]
        r = h.client.post("/v1/tasks", json={"prompt": "a ball", "image": up}, headers=h.headers)
        assert r.status_code == 422 and r.json()["error"]["code"] == "input.task.unsupported", r.text
        assert h.balance() == before
    finally:
        h.client.__exit__(None, None, None)
