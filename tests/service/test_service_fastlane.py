"""The create fast lane (fastlane.py): answers well-formed creates itself, hands everything else to the app unchanged."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

pytest.importorskip("fastapi")

from pydantic import BaseModel, ConfigDict

from kinema.service.errors import ApiError
from kinema.service.fastlane import CreateFastLane


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str


class View(BaseModel):
    id: str
    prompt: str
    account: str
    key: str | None


class Downstream:
    """The FastAPI app behind the lane: records what reached it, answers 299."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})


async def authenticate(header: str | None) -> str:
    if header != "Bearer good":
        raise ApiError(401, "auth.invalid", "this API key is not valid")
    return "acct-1"


async def create(body: Body, account: str, key: str | None) -> tuple[int, View]:
    if body.prompt == "poor":
        raise ApiError(402, "credits.insufficient", "this task costs 4 credits; the balance is 0")
    return (200 if key == "seen" else 201), View(id="t1", prompt=body.prompt, account=account, key=key)


def call(app: Any, *, path: str = "/v1/tasks", method: str = "POST", body: bytes = b"", headers: dict[str, str] | None = None, chunks: int = 1) -> tuple[int, bytes]:
    """One HTTP request through an ASGI app; the body arrives in `chunks` messages."""
    sent: list[dict[str, Any]] = []
    parts = [body[i * len(body) // chunks : (i + 1) * len(body) // chunks] for i in range(chunks)]
    messages = [{"type": "http.request", "body": p, "more_body": i < chunks - 1} for i, p in enumerate(parts)]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # nothing more: the client waits
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw = [(k.lower().encode(), v.encode()) for k, v in {"content-type": "application/json", **(headers or {})}.items()]
    scope = {"type": "http", "method": method, "path": path, "headers": raw}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.fixture
def lane() -> tuple[CreateFastLane, Downstream]:
    app = Downstream()
    return CreateFastLane(app, create=create, authenticate=authenticate, body_model=Body), app


def test_a_well_formed_create_is_answered_by_the_lane(lane) -> None:
    fast, app = lane
    status, body = call(fast, body=b'{"prompt": "a ball"}', headers={"authorization": "Bearer good", "idempotency-key": "k1"}, chunks=3)
    assert status == 201 and json.loads(body) == {"id": "t1", "prompt": "a ball", "account": "acct-1", "key": "k1"}
    status, _ = call(fast, body=b'{"prompt": "a ball"}', headers={"authorization": "Bearer good", "idempotency-key": "seen"})
    assert status == 200 and app.bodies == []


def test_api_errors_are_answered_as_the_app_would(lane) -> None:
    fast, app = lane
    status, body = call(fast, body=b'{"prompt": "a ball"}', headers={"authorization": "Bearer bad"})
    assert status == 401 and json.loads(body) == {"error": {"code": "auth.invalid", "message": "this API key is not valid"}}
    status, body = call(fast, body=b'{"prompt": "poor"}', headers={"authorization": "Bearer good"})
    assert status == 402 and json.loads(body)["error"]["code"] == "credits.insufficient"
    assert app.bodies == []


@pytest.mark.parametrize(
    "body, headers",
    [
        (b'{"prompt": ', {}),  # invalid JSON
        (b'{"prompt": "a", "extra": 1}', {}),  # fails validation
        (b'["a"]', {}),  # not an object
        (b'{"prompt": "a"}', {"content-type": "text/plain"}),  # not JSON
        (b'{"prompt": "a"}', {"idempotency-key": "k" * 201}),  # over the route's limit
    ],
)
def test_everything_else_reaches_the_app_with_its_body(lane, body: bytes, headers: dict[str, str]) -> None:
    fast, app = lane
    status, answer = call(fast, body=body, headers={"authorization": "Bearer good", **headers}, chunks=2)
    assert (status, answer) == (299, b"app") and app.bodies == [body]


@pytest.mark.parametrize("method, path", [("GET", "/v1/tasks"), ("POST", "/v1/quotes"), ("POST", "/v1/tasks/x/cancel")])
def test_other_routes_pass_through_untouched(lane, method: str, path: str) -> None:
    fast, app = lane
    assert call(fast, method=method, path=path, body=b'{"prompt": "a"}', headers={"authorization": "Bearer good"}) == (299, b"app")
    assert app.bodies == [b'{"prompt": "a"}']
