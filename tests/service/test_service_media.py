"""Media inputs over HTTP: image-to-video, last image, keyframes and video extension, by upload id or data URL.

The fake backend (service_helpers) runs the engine's real request resolution
(`resolve_common`), so images and videos are loaded and checked exactly as the
engine does; only the frames are fake.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

from media_helpers import data_url, mp4, png, png_header, stored_files, upload, wav  # noqa: E402
from service_helpers import FakeBackend, make_harness, wait_for  # noqa: E402

ALL_TASKS = ("image-to-video", "last-frame", "first-last-frame", "keyframes", "video-extension", "long-video")


@pytest.fixture
def h(tmp_path: Path):
    harness = make_harness(tmp_path, lambda: FakeBackend(tasks=ALL_TASKS), max_upload_bytes=200_000, max_media_upload_bytes=2_000_000)
    yield harness
    harness.client.__exit__(None, None, None)




def task_inputs(h, task_id: str) -> list[Path]:
    return stored_files(h.settings.inputs_dir / task_id)


def test_upload_kinds_are_read_from_the_content(h) -> None:
    image = upload(h, png(), name="photo.mp4").json()  # the name does not matter
    assert image["kind"] == "image" and image["media_type"] == "image/png" and (image["width"], image["height"]) == (40, 30)
    video = upload(h, mp4(frames=12, fps=8), name="clip.png").json()
    assert video["kind"] == "video" and video["frames"] == 12 and video["fps"] == pytest.approx(8) and video["seconds"] == pytest.approx(1.5)
    audio = upload(h, wav(0.5)).json()
    assert audio["kind"] == "audio" and audio["seconds"] == pytest.approx(0.5, abs=0.05)
    assert h.client.get(f"/v1/uploads/{video['id']}", headers=h.headers).json() == video
    assert h.client.delete(f"/v1/uploads/{video['id']}", headers=h.headers).status_code == 204
    r = h.client.get(f"/v1/uploads/{video['id']}", headers=h.headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "upload.not_found"
    assert h.client.delete(f"/v1/uploads/{video['id']}", headers=h.headers).status_code == 404


def test_every_conditioning_input_runs_from_uploads(h) -> None:
    first, last, key = (upload(h, png(color=c)).json()["id"] for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0)))
    video = upload(h, mp4(frames=16)).json()["id"]
    bodies = [
        {"prompt": "a ball", "image": first},
        {"prompt": "a ball", "last_image": last},
        {"prompt": "a ball", "image": first, "last_image": last},
        {"prompt": "a ball", "seconds": 1, "keyframes": [{"image": key, "seconds": 0.5}]},
        {"prompt": "a ball", "video": video, "seconds": 1},
    ]
    for body in bodies:
        q = h.client.post("/v1/quotes", json=body, headers=h.headers)
        assert q.status_code == 200, (body, q.text)
        r = h.client.post("/v1/tasks", json=body, headers=h.headers)
        assert r.status_code == 201, (body, r.text)
        task = r.json()
        assert task["request"] == {**body, "seed": task["request"]["seed"]}  # ids as sent, never server paths
        assert task_inputs(h, task["id"])  # the task's own copies
        done = wait_for(h.client, h.headers, task["id"], {"succeeded", "failed"})
        assert done["state"] == "succeeded", done
    # the extension's output is the given video followed by its continuation
    from kinema.video.io import read_video

    out = h.settings.outputs_dir / f"{task['id']}.mp4"
    assert read_video(out)[0].shape[0] > 16


def test_deleting_an_upload_does_not_break_a_queued_task_and_deleting_the_task_removes_its_inputs(tmp_path: Path) -> None:
    import threading

    gate = threading.Event()
    h = make_harness(tmp_path, lambda: FakeBackend(tasks=ALL_TASKS, gate=gate), plan="free")
    try:
        up = upload(h, png()).json()["id"]
        blocker = h.client.post("/v1/tasks", json={"prompt": "first"}, headers=h.headers).json()["id"]
        wait_for(h.client, h.headers, blocker, {"running"})
        queued = h.client.post("/v1/tasks", json={"prompt": "second", "image": up}, headers=h.headers).json()["id"]
        assert h.client.delete(f"/v1/uploads/{up}", headers=h.headers).status_code == 204
        assert stored_files(h.settings.uploads_dir) == []
        gate.set()
        assert wait_for(h.client, h.headers, queued, {"succeeded", "failed"})["state"] == "succeeded"
        assert task_inputs(h, queued)
        assert h.client.delete(f"/v1/tasks/{queued}", headers=h.headers).status_code == 204
        assert task_inputs(h, queued) == [] and not (h.settings.inputs_dir / queued).exists()
    finally:
        gate.set()
        h.client.__exit__(None, None, None)


def test_data_urls_work_inline_and_leave_only_the_tasks_copy(h) -> None:
    body = {"prompt": "a ball", "image": data_url(png()), "seconds": 1, "keyframes": [{"image": data_url(png(color=(9, 9, 9))), "seconds": 0.5}]}
    q = h.client.post("/v1/quotes", json=body, headers=h.headers)
    assert q.status_code == 200, q.text
    assert stored_files(h.settings.uploads_dir) == [] and stored_files(h.settings.inputs_dir) == []  # a quote stores nothing
    r = h.client.post("/v1/tasks", json=body, headers=h.headers)
    assert r.status_code == 201, r.text
    assert stored_files(h.settings.uploads_dir) == []  # the inline uploads are not kept as uploads
    assert len(task_inputs(h, r.json()["id"])) == 2
    assert wait_for(h.client, h.headers, r.json()["id"], {"succeeded", "failed"})["state"] == "succeeded"


BAD_UPLOADS = [
    (b"this is not an image", 422, "input.upload.unsupported"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, 422, "input.image.unreadable"),
    (png_header(10_000, 6_000), 422, "input.image.too_large"),  # 60 MP, refused from the header
    (png_header(3_000, 2_000), 422, "input.image.bomb"),  # 6 MP declared in ~80 bytes
    (b"\0\0\0\x18ftypisom" + b"\0" * 200, 422, "input.video.unreadable"),
    (b"RIFF\0\0\0\0WAVE" + b"\0" * 50, 422, "input.audio.unreadable"),
    (b"x" * 200_001, 413, "input.upload.too_large"),  # over the image limit (not a video, so not the media limit)
]


@pytest.mark.parametrize("data,status,code", BAD_UPLOADS)
def test_bad_uploads_are_coded_and_store_nothing(h, data: bytes, status: int, code: str) -> None:
    r = upload(h, data)
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text
    assert stored_files(h.settings.uploads_dir) == []


@pytest.mark.parametrize("data,status,code", [(d, s, c) for d, s, c in BAD_UPLOADS if s == 422 and c.startswith("input.image")])
def test_bad_inline_images_are_refused_with_the_same_codes_and_charge_nothing(h, data: bytes, status: int, code: str) -> None:
    before = h.balance()
    r = h.client.post("/v1/tasks", json={"prompt": "a ball", "image": data_url(data)}, headers=h.headers)
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text
    assert h.client.get("/v1/tasks", headers=h.headers).json()["items"] == [] and h.balance() == before
    assert stored_files(h.settings.uploads_dir) == [] and stored_files(h.settings.inputs_dir) == []


def test_a_too_short_video_is_refused_when_the_task_is_made(h) -> None:
    short = upload(h, mp4(frames=3)).json()["id"]  # 3 frames; extending needs 5 at the model's fps
    before = h.balance()
    r = h.client.post("/v1/tasks", json={"prompt": "more", "video": short}, headers=h.headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "input.video.too_short", r.text
    assert short in r.json()["error"]["message"] and str(h.settings.data_dir) not in r.json()["error"]["message"]  # no server paths
    assert h.client.get("/v1/tasks", headers=h.headers).json()["items"] == [] and h.balance() == before
    assert stored_files(h.settings.inputs_dir) == []


def test_references_must_be_own_uploads_of_the_right_kind(h) -> None:
    from kinema.service.accounts import create_account, create_key

    other = {"Authorization": f"Bearer {create_key(h.sessions, create_account(h.sessions, 'eve', 'pro'))}"}
    theirs = upload(h, png(), headers=other).json()["id"]
    mine_video = upload(h, mp4()).json()["id"]
    mine_image = upload(h, png()).json()["id"]
    cases = [
        ({"image": "/etc/passwd"}, "input.image.invalid"),
        ({"image": "upl_../../x"}, "input.image.invalid"),
        ({"image": theirs}, "input.image.not_found"),
        ({"last_image": "upl_" + "0" * 32}, "input.last_image.not_found"),
        ({"image": mine_video}, "input.image.invalid"),
        ({"video": mine_image}, "input.video.invalid"),
        ({"video": "/etc/passwd"}, "input.video.invalid"),
        ({"keyframes": [{"image": "../x.png", "seconds": 0}]}, "input.keyframes.invalid"),
        ({"image": "data:image/png;base64,%%%"}, "input.image.invalid"),
        ({"seconds": 1, "keyframes": [{"image": mine_image, "seconds": 5}]}, "input.keyframes.invalid"),  # past the end
    ]
    for extra, code in cases:
        r = h.client.post("/v1/tasks", json={"prompt": "a ball", **extra}, headers=h.headers)
        assert r.status_code == 422 and r.json()["error"]["code"] == code, (extra, r.text)
    assert h.client.get("/v1/tasks", headers=h.headers).json()["items"] == []
    assert h.client.get(f"/v1/uploads/{theirs}", headers=h.headers).status_code == 404
    assert h.client.delete(f"/v1/uploads/{theirs}", headers=h.headers).status_code == 404


def test_a_model_without_the_task_refuses_and_charges_nothing(tmp_path: Path) -> None:
    h = make_harness(tmp_path, FakeBackend)
    try:
        before = h.balance()
        for body in ({"image": upload(h, png()).json()["id"]}, {"video": upload(h, mp4()).json()["id"]}):
            r = h.client.post("/v1/tasks", json={"prompt": "a ball", **body}, headers=h.headers)
            assert r.status_code == 422 and r.json()["error"]["code"] == "input.task.unsupported", r.text
        assert h.balance() == before and stored_files(h.app.state.service.settings.inputs_dir) == []
    finally:
        h.client.__exit__(None, None, None)


# ---------------------------------------------------------------- image moderation


def test_the_default_image_rule_is_a_perceptual_hash_blocklist(tmp_path: Path) -> None:
    from PIL import Image

    from kinema.service.moderation import hash_distance, image_hash

    blocked = np.zeros((60, 80, 3), np.uint8)
    blocked[..., 0] = np.linspace(0, 255, 80, dtype=np.uint8)[None, :]
    blocked[20:40, 30:50] = 255
    resized = np.asarray(Image.fromarray(blocked).resize((160, 120)))
    assert hash_distance(image_hash(blocked), image_hash(resized)) <= 2  # near-duplicates stay near
    h = make_harness(tmp_path, lambda: FakeBackend(tasks=ALL_TASKS), moderation_image_hashes=(image_hash(blocked),))
    try:
        before = h.balance()
        import io

        buf = io.BytesIO()
        Image.fromarray(resized).save(buf, format="JPEG", quality=80)  # re-encoded and resized: still refused
        r = upload(h, buf.getvalue())
        assert r.status_code == 422 and r.json()["error"]["code"] == "moderation.image", r.text
        r = h.client.post("/v1/tasks", json={"prompt": "a ball", "image": data_url(buf.getvalue(), "image/jpeg")}, headers=h.headers)
        assert r.status_code == 422 and r.json()["error"]["code"] == "moderation.image", r.text
        video = np.tile(blocked[None], (12, 1, 1, 1))
        from media_helpers import stored_files as files

        from kinema.video.io import write_video

        path = write_video(video, tmp_path / "blocked.mp4", 8.0)
        r = upload(h, path.read_bytes())
        assert r.status_code == 422 and r.json()["error"]["code"] == "moderation.image", r.text
        assert files(h.app.state.service.settings.uploads_dir) == [] and h.balance() == before
        assert upload(h, png(pattern=False)).status_code == 201  # other images pass
    finally:
        h.client.__exit__(None, None, None)


def test_a_pluggable_image_check_refuses_tasks_and_charges_nothing(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from kinema.service.accounts import create_account, create_key
    from kinema.service.app import create_app
    from kinema.service.moderation import Verdict
    from kinema.service.settings import Settings

    class NoRed:
        """Prompts pass; mostly-red images are refused."""

        def __call__(self, request):
            return None

        def check_image(self, pixels):
            r, g, b = pixels[..., 0].mean(), pixels[..., 1].mean(), pixels[..., 2].mean()
            return Verdict("moderation.image", "too red") if r > 150 and g < 80 and b < 80 else None

    app = create_app(Settings(data_dir=tmp_path, poll_seconds=0.02, reap_seconds=0.1), lambda: FakeBackend(tasks=ALL_TASKS), moderator=NoRed())
    with TestClient(app) as client:
        key = create_key(app.state.service.sessions, create_account(app.state.service.sessions, "bob", "pro"))
        hdr = {"Authorization": f"Bearer {key}"}
        before = client.get("/v1/account", headers=hdr).json()["credits_available"]
        r = client.post("/v1/tasks", json={"prompt": "a nude figure", "image": data_url(png(color=(255, 0, 0)))}, headers=hdr)
        assert r.status_code == 422 and r.json()["error"] == {"code": "moderation.image", "message": "image: too red"}
        assert client.get("/v1/tasks", headers=hdr).json()["items"] == []
        assert client.get("/v1/account", headers=hdr).json()["credits_available"] == before
        ok = client.post("/v1/tasks", json={"prompt": "a nude figure", "image": data_url(png(color=(0, 0, 255)))}, headers=hdr)
        assert ok.status_code == 201, ok.text  # this moderator allows every prompt


def test_openapi_documents_uploads_and_storyboards(h) -> None:
    spec = h.client.get("/openapi.json").json()
    paths = spec["paths"]
    for p in ("/v1/uploads", "/v1/uploads/{upload_id}", "/v1/storyboards", "/v1/storyboards/quotes"):
        assert p in paths, p
    assert "multipart/form-data" in paths["/v1/uploads"]["post"]["requestBody"]["content"]
    assert {"get", "delete"} <= set(paths["/v1/uploads/{upload_id}"])
    schemas = spec["components"]["schemas"]
    assert "Storyboard" in schemas and "Shot" in schemas and "UploadView" in schemas and "StoryboardQuoteView" in schemas
    assert "kind" in schemas["TaskView"]["properties"]
