"""The create route's fast lane: `POST /v1/tasks` answered without the framework's per-request machinery.

Why: under load a create spent more CPU in the framework (middleware chain, routing,
dependency solving, response validation) than in its own work, all of it on the one
event loop (holding the GIL the writer of creates needs too, submissions.py), so it set
the service's ceiling in creates per second. This ASGI middleware answers a well-formed JSON create itself,
through the very function the FastAPI route calls (`create` in app.add_routes), and
hands everything else to the FastAPI app with the body replayed: invalid JSON, a body
that fails validation, an over-long Idempotency-Key. So every error is still the
framework's, word for word, and the OpenAPI schema still documents the route.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import ValidationError

from kinema.service.errors import ApiError

MAX_IDEMPOTENCY_KEY = 200  # the route's Header(max_length=...): a longer key goes to the framework, which words the 422

Create = Callable[[Any, Any, str | None], Awaitable[tuple[int, Any]]]
Authenticate = Callable[[str | None], Awaitable[Any]]


class CreateFastLane:
    """ASGI middleware: `create(body, account, idempotency_key) -> (status, view)` for `POST /v1/tasks`.

    `body_model` is the route's body model (app.TaskCreate); `authenticate(authorization header)`
    returns the account or raises ApiError, as the route's dependency does.
    """

    def __init__(self, app: Any, *, create: Create, authenticate: Authenticate, body_model: Any) -> None:
        self.app = app
        self.create = create
        self.authenticate = authenticate
        self.body_model = body_model

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/v1/tasks":
            await self.app(scope, receive, send)
            return
        headers = first_values(scope["headers"])
        body, disconnected = await read_body(receive)
        if disconnected:
            return
        replay = replayed(body, receive)
        key = headers.get(b"idempotency-key")
        if not is_json(headers.get(b"content-type")) or (key is not None and len(key) > MAX_IDEMPOTENCY_KEY):
            await self.app(scope, replay, send)
            return
        try:
            parsed = self.body_model.model_validate(json.loads(body))
        except (ValueError, ValidationError):  # (ValidationError is a ValueError; named for the reader)
            await self.app(scope, replay, send)
            return
        try:
            auth = headers.get(b"authorization")
            account = await self.authenticate(None if auth is None else auth.decode("latin-1"))
            status, view = await self.create(parsed, account, None if key is None else key.decode("latin-1"))
        except ApiError as exc:  # as the app's ApiError handler answers it
            await JSONResponse(exc.body(), status_code=exc.status)(scope, replay, send)
            return
        payload = view.model_dump_json().encode()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]})
        await send({"type": "http.response.body", "body": payload})


def first_values(raw: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Header name (lower case) -> its first value, as the framework's `Header()` reads a repeated header."""
    out: dict[bytes, bytes] = {}
    for name, value in raw:
        out.setdefault(name, value)
    return out


def is_json(content_type: bytes | None) -> bool:
    return content_type is not None and content_type.split(b";", 1)[0].strip().lower() == b"application/json"


async def read_body(receive: Any) -> tuple[bytes, bool]:
    """The whole request body, and whether the client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


def replayed(body: bytes, receive: Any) -> Callable[[], Awaitable[dict[str, Any]]]:
    """A `receive` that gives the already-read body once, then waits on the client as before (for a disconnect)."""
    sent = False

    async def again() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
