"""Standard Webhooks signing, private-address refusal, outbox delivery with retries, moderation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from service_helpers import FakeBackend, make_harness, wait_for

from kinema.service.webhooks import WebhookUrlError, check_url, sign, verify


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # The example in the Standard Webhooks specification's reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}') == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://localhost:8080/", "http://10.1.2.3/", "http://192.168.0.1/", "http://169.254.169.254/",
                                 "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/"])  # fmt: skip
def test_inside_addresses_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(WebhookUrlError) as err:
        check_url(url, allow_private=False)
    assert err.value.code == "input.callback_url.private"
    check_url(url, allow_private=True)


@pytest.mark.parametrize("url", ["ftp://example.com/", "http:///nohost", "javascript:alert(1)", "http://example.com:99999/"])
def test_non_http_urls_are_refused(url: str) -> None:
    with pytest.raises(WebhookUrlError):
        check_url(url, allow_private=True)


def test_terminal_task_webhook_is_signed_retried_and_delivered_once(tmp_path: Path) -> None:
    h = make_harness(tmp_path, FakeBackend, webhook_allow_private=True, webhook_backoff_seconds=0.01)
    try:
        svc = h.app.state.service
        calls: list[tuple[str, str, dict[str, str]]] = []

        def post(url: str, body: str, headers: dict[str, str]) -> int:
            calls.append((url, body, headers))
            return 500 if len(calls) == 1 else 204  # the receiver fails once

        svc.workers.sender.post = post
        tid = h.client.post("/v1/tasks", json={"prompt": "x", "callback_url": "http://127.0.0.1:1/hook"}, headers=h.headers).json()["id"]
        wait_for(h.client, h.headers, tid, {"succeeded"})
        import time

        deadline = time.monotonic() + 60
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert len(calls) == 2  # one failure, one success, then nothing more
        url, body, headers = calls[1]
        assert calls[0][2]["webhook-id"] == headers["webhook-id"]  # a retry keeps its id (receivers dedupe on it)
        secret = h.client.get("/v1/account", headers=h.headers).json()["webhook_secret"]
        assert secret.startswith("whsec_") and verify(secret, headers, body)
        assert not verify(secret, headers, body.replace("succeeded", "failed"))
        event = json.loads(body)
        assert event["type"] == "task.succeeded" and event["data"]["id"] == tid
    finally:
        h.client.__exit__(None, None, None)


def test_custom_moderator_refuses_and_charges_nothing(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from kinema.service.accounts import create_account, create_key
    from kinema.service.app import create_app
    from kinema.service.moderation import Verdict
    from kinema.service.settings import Settings

    def no_cats(req):
        return Verdict("moderation.prompt", "no cats") if "cat" in req.prompt else None

    app = create_app(Settings(data_dir=tmp_path, poll_seconds=0.02), FakeBackend, moderator=no_cats)
    with TestClient(app) as client:
        key = create_key(app.state.service.sessions, create_account(app.state.service.sessions, "a", "free"))
        hdr = {"Authorization": f"Bearer {key}"}
        r = client.post("/v1/tasks", json={"prompt": "a cat"}, headers=hdr)
        assert r.status_code == 422 and r.json()["error"] == {"code": "moderation.prompt", "message": "no cats"}
        assert client.get("/v1/account", headers=hdr).json()["credits_available"] == 100
        assert client.post("/v1/tasks", json={"prompt": "a dog"}, headers=hdr).status_code == 201
