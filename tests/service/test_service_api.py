"""The /v1 API end to end through FastAPI's TestClient, with the fast fake backend (service_helpers)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from service_helpers import FakeBackend, make_harness, wait_for


@pytest.fixture
def h(tmp_path: Path):
    harness = make_harness(tmp_path, FakeBackend)
    yield harness
    harness.client.__exit__(None, None, None)



def test_create_run_download_and_charge_what_was_quoted(h) -> None:
    before = h.balance()
    quote = h.client.post("/v1/quotes", json={"prompt": "a red ball", "width": 64, "height": 32}, headers=h.headers).json()
    r = h.client.post("/v1/tasks", json={"prompt": "a red ball", "width": 64, "height": 32, "seed": 5}, headers=h.headers)
    assert r.status_code == 201, r.text
    task = r.json()
    assert task["state"] == "queued" and task["credits_reserved"] == quote["credits"] > 0
    done = wait_for(h.client, h.headers, task["id"], {"succeeded", "failed"})
    assert done["state"] == "succeeded" and done["progress"] == 1.0 and done["step"] == done["total_steps"] == 4
    assert done["credits_charged"] == quote["credits"]
    assert h.balance() == before - quote["credits"]
    video = h.client.get(done["download_url"], headers=h.headers)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert f'kinema-{task["id"]}.mp4' in video.headers["content-disposition"]
    assert video.content[4:8] == b"ftyp"


def test_quote_counts_guidance_steps_and_size(h) -> None:
    def q(**kw):
        return h.client.post("/v1/quotes", json={"prompt": "x", **kw}, headers=h.headers).json()

    base = q()
    assert q(guidance=1.0)["tflops"] == pytest.approx(base["tflops"] / 2)  # one forward per step instead of two
    assert q(steps=8)["tflops"] == pytest.approx(base["tflops"] * 2)
    assert q(width=64, height=32)["tflops"] == pytest.approx(base["tflops"] * 2)


BAD = [
    ("not json", 400, "input.json.malformed"),
    ("[1, 2]", 400, "input.json.malformed"),
    (json.dumps({"prompt": "x", "colour": "red"}), 422, "input.field.unknown"),
    (json.dumps({"prompt": "x" * 1001}), 422, "input.prompt.too_long"),
    (json.dumps({"prompt": "one two three four five six seven eight nine ten eleven twelve thirteen"}), 422, "input.prompt.too_long"),
    (json.dumps({"prompt": "   "}), 422, "input.prompt.empty"),
    (json.dumps({"prompt": "x", "width": 48, "height": 32}), 422, "input.size.unsupported"),
    (json.dumps({"prompt": "x", "width": 96, "height": 96}), 422, "input.size.unsupported"),
    (json.dumps({"prompt": "x", "steps": 0}), 422, "input.steps.invalid"),
    (json.dumps({"prompt": "a nude figure"}), 422, "moderation.prompt"),
    (json.dumps({"prompt": "x", "negative_prompt": "gore"}), 422, "moderation.negative_prompt"),
    (json.dumps({"prompt": "x", "image": "/etc/passwd"}), 422, "input.image.invalid"),
    (json.dumps({"prompt": "x", "video": "/etc/passwd"}), 422, "input.video.invalid"),
    (json.dumps({"prompt": "x", "callback_url": "http://127.0.0.1:9/hook"}), 422, "input.callback_url.private"),
    (json.dumps({"prompt": "x", "callback_url": "http://169.254.169.254/latest"}), 422, "input.callback_url.private"),
    (json.dumps({"prompt": "x", "callback_url": "file:///etc/passwd"}), 422, "input.callback_url.invalid"),
    (json.dumps({"prompt": "x", "format": "png"}), 422, "input.format.invalid"),
    (json.dumps({"prompt": "x" * 70_000}), 413, "input.body.too_large"),
]


@pytest.mark.parametrize("body,status,code", BAD)
def test_bad_input_is_a_coded_4xx_that_stores_and_charges_nothing(h, body: str, status: int, code: str) -> None:
    before = h.balance()
    r = h.client.post("/v1/tasks", content=body, headers={**h.headers, "content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert h.client.get("/v1/tasks", headers=h.headers).json()["items"] == []
    assert h.balance() == before


@pytest.fixture
def api_only(tmp_path: Path):
    """An API-only process (`kinema serve --workers 0`): creates are stored on the event loop (LoopWriter)."""
    harness = make_harness(tmp_path, FakeBackend, workers=0)
    yield harness
    harness.client.__exit__(None, None, None)


def test_an_api_only_process_answers_creates_the_same(api_only) -> None:
    from kinema.service.submissions import LoopWriter

    assert isinstance(api_only.app.state.service.submissions, LoopWriter)
    for body, status, code in BAD:
        test_bad_input_is_a_coded_4xx_that_stores_and_charges_nothing(api_only, body, status, code)
    test_auth_is_required_and_checked(api_only)
    test_idempotency_key_same_body_same_task_other_body_422(api_only)
    test_not_enough_credits_is_402_and_stores_nothing(api_only)
    r = api_only.client.post("/v1/tasks", json={"prompt": "a ball", "seed": 3}, headers=api_only.headers)
    assert r.status_code == 201 and r.json()["state"] == "queued" and r.json()["credits_reserved"] > 0


def test_auth_is_required_and_checked(h) -> None:
    assert h.client.get("/v1/tasks").json()["error"]["code"] == "auth.missing"
    r = h.client.get("/v1/tasks", headers={"Authorization": "Bearer kn_wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "auth.invalid"


def test_idempotency_key_same_body_same_task_other_body_422(h) -> None:
    hdr = {**h.headers, "Idempotency-Key": "k1"}
    a = h.client.post("/v1/tasks", json={"prompt": "a ball", "seed": 1}, headers=hdr)
    b = h.client.post("/v1/tasks", json={"prompt": "a ball", "seed": 1}, headers=hdr)
    assert a.status_code == 201 and b.status_code == 200 and a.json()["id"] == b.json()["id"]
    c = h.client.post("/v1/tasks", json={"prompt": "a box", "seed": 1}, headers=hdr)
    assert c.status_code == 422 and c.json()["error"]["code"] == "idempotency.key_reused"
    assert len(h.client.get("/v1/tasks", headers=h.headers).json()["items"]) == 1


def test_not_enough_credits_is_402_and_stores_nothing(h) -> None:
    from kinema.service.accounts import create_account, create_key, upsert_plan

    upsert_plan(h.sessions, "empty", monthly_credits=0, concurrency=1, priority=0)  # the monthly top-up (housekeeping) grants nothing either
    poor = create_key(h.sessions, create_account(h.sessions, "poor", "empty", grant_monthly=False))
    r = h.client.post("/v1/tasks", json={"prompt": "x"}, headers={"Authorization": f"Bearer {poor}"})
    assert r.status_code == 402 and r.json()["error"]["code"] == "credits.insufficient"
    assert h.client.get("/v1/tasks", headers={"Authorization": f"Bearer {poor}"}).json()["items"] == []


def test_list_is_paged_filtered_and_private_to_the_account(h) -> None:
    ids = [h.client.post("/v1/tasks", json={"prompt": f"ball {i}"}, headers=h.headers).json()["id"] for i in range(5)]
    for i in ids:
        wait_for(h.client, h.headers, i, {"succeeded"})
    seen, cursor = [], None
    while True:
        page = h.client.get("/v1/tasks", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=h.headers).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    assert len(h.client.get("/v1/tasks", params={"state": "succeeded"}, headers=h.headers).json()["items"]) == 5
    assert h.client.get("/v1/tasks", params={"state": "failed"}, headers=h.headers).json()["items"] == []
    assert h.client.get("/v1/tasks", params={"state": "bogus"}, headers=h.headers).json()["error"]["code"] == "input.state.invalid"
    from kinema.service.accounts import create_account, create_key

    other = {"Authorization": f"Bearer {create_key(h.sessions, create_account(h.sessions, 'eve', 'free'))}"}
    assert h.client.get("/v1/tasks", headers=other).json()["items"] == []
    assert h.client.get(f"/v1/tasks/{ids[0]}", headers=other).json()["error"]["code"] == "task.not_found"


@pytest.mark.parametrize("name", ["..%2F..%2Fetc%2Fpasswd", "..", "x" * 32, "%00", "ABCDEF0123456789ABCDEF0123456789"])
def test_download_names_cannot_escape(h, name: str) -> None:
    r = h.client.get(f"/v1/tasks/{name}/download", headers=h.headers)
    assert r.status_code == 404 and r.json()["error"]["code"] in ("task.not_found", "not_found")


def test_delete_only_when_finished_and_the_file_goes(h) -> None:
    tid = h.client.post("/v1/tasks", json={"prompt": "x"}, headers=h.headers).json()["id"]
    wait_for(h.client, h.headers, tid, {"succeeded"})
    path = h.app.state.service.settings.outputs_dir / f"{tid}.mp4"
    assert path.is_file()
    assert h.client.delete(f"/v1/tasks/{tid}", headers=h.headers).status_code == 204
    assert not path.exists()
    assert h.client.get(f"/v1/tasks/{tid}", headers=h.headers).status_code == 404


def test_failed_generation_releases_credits(tmp_path: Path) -> None:
    h = make_harness(tmp_path, lambda: FakeBackend(fail_with=RuntimeError("boom")))
    try:
        before = h.balance()
        tid = h.client.post("/v1/tasks", json={"prompt": "x"}, headers=h.headers).json()["id"]
        done = wait_for(h.client, h.headers, tid, {"failed", "succeeded"})
        assert done["state"] == "failed" and done["error"]["code"] == "internal.generation"
        assert done["credits_charged"] == 0 and h.balance() == before
    finally:
        h.client.__exit__(None, None, None)


def test_cancel_queued_and_running_release_credits_and_stop_within_a_step(tmp_path: Path) -> None:
    gate = threading.Event()
    runs: dict[str, int] = {}
    h = make_harness(tmp_path, lambda: FakeBackend(gate=gate, runs=runs), plan="free")  # free: one at a time
    try:
        before = h.balance()
        running = h.client.post("/v1/tasks", json={"prompt": "first", "steps": 20}, headers=h.headers).json()["id"]
        assert wait_for(h.client, h.headers, running, {"running"})["state"] == "running"
        queued = h.client.post("/v1/tasks", json={"prompt": "second"}, headers=h.headers).json()["id"]
        assert h.client.post(f"/v1/tasks/{queued}/cancel", headers=h.headers).json()["state"] == "cancelled"
        h.client.post(f"/v1/tasks/{running}/cancel", headers=h.headers)
        done = wait_for(h.client, h.headers, running, {"cancelled", "succeeded", "failed"})
        assert done["state"] == "cancelled" and done["step"] <= 2 < done["total_steps"]  # held at step 1; stopped at once
        assert done["credits_charged"] == 0 and h.balance() == before
        assert runs.get("second", 0) == 0
    finally:
        gate.set()
        h.client.__exit__(None, None, None)


def test_events_stream_progress_until_terminal(h) -> None:
    tid = h.client.post("/v1/tasks", json={"prompt": "x"}, headers=h.headers).json()["id"]
    states = []
    with h.client.stream("GET", f"/v1/tasks/{tid}/events", headers=h.headers) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                states.append(json.loads(line[6:])["state"])
    assert states[-1] == "succeeded"


def test_openapi_documents_every_route(h) -> None:
    paths = h.client.get("/openapi.json").json()["paths"]
    for p in ("/v1/tasks", "/v1/tasks/{task_id}", "/v1/tasks/{task_id}/cancel", "/v1/tasks/{task_id}/download", "/v1/tasks/{task_id}/events", "/v1/quotes", "/v1/account"):
        assert p in paths


def test_tiny_real_model_end_to_end_priced_by_its_dit_flops(tmp_path: Path, one_thread) -> None:
    from conftest import build_tiny_model

    from kinema.engine.native import NativeBackend
    from kinema.video.io import read_video

    model = build_tiny_model(tmp_path / "model")
    h = make_harness(tmp_path / "svc", lambda: NativeBackend(model))
    try:
        q = h.client.post("/v1/quotes", json={"prompt": "a red ball"}, headers=h.headers).json()
        assert q["credits"] >= 1 and q["tflops"] > 0 and q["steps"] == 3
        tid = h.client.post("/v1/tasks", json={"prompt": "a red ball", "seed": 1}, headers=h.headers).json()["id"]
        done = wait_for(h.client, h.headers, tid, {"succeeded", "failed"}, timeout=300)
        assert done["state"] == "succeeded", done
        out = tmp_path / "out.mp4"
        out.write_bytes(h.client.get(done["download_url"], headers=h.headers).content)
        assert read_video(out)[0].shape[1:] == (32, 32, 3)
    finally:
        h.client.__exit__(None, None, None)
