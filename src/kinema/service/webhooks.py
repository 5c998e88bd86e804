"""Webhooks per Standard Webhooks: signed, from an outbox, retried with back-off, never to inside addresses.

Signature: `v1,` + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}")),
where the secret is the base64 after `whsec_`. Headers `webhook-id`,
`webhook-timestamp`, `webhook-signature`. The outbox row is written in the
same transaction as the task's terminal state, so a crash cannot lose (or
invent) a notification; the sender delivers due rows and reschedules
failures with exponential back-off until `webhook_max_attempts`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from kinema.service.db import Task, WebhookOutbox, WebhookSecret, now

MAX_URL_CHARS = 2000


class WebhookUrlError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, headers: dict[str, str], body: str) -> bool:
    """What a receiver does (used by the tests): recompute and compare in constant time."""
    expected = sign(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    return any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split())


def _is_inside(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified


def check_url(url: str, allow_private: bool) -> None:
    """Refuse what is not http(s), and (unless allowed) any host that resolves to a loopback/private/link-local address."""
    if len(url) > MAX_URL_CHARS:
        raise WebhookUrlError("input.callback_url.too_long", f"callback_url is {len(url)} characters; the limit is {MAX_URL_CHARS}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookUrlError("input.callback_url.invalid", "callback_url must be an http(s) URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise WebhookUrlError("input.callback_url.invalid", "callback_url has an invalid port") from None
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise WebhookUrlError("input.callback_url.unresolvable", f"callback_url host {parts.hostname!r} does not resolve") from None
    for info in infos:
        if _is_inside(str(info[4][0])):
            raise WebhookUrlError("input.callback_url.private", f"callback_url {parts.hostname!r} points to a private, loopback or link-local address")


def secret_for(session: Session, account_id: str) -> str:
    row = session.get(WebhookSecret, account_id)
    if row is None:
        row = WebhookSecret(account_id=account_id, secret=new_secret())
        session.add(row)
        session.flush()
    return row.secret


def task_event(task: Task) -> dict[str, Any]:
    data: dict[str, Any] = {"id": task.id, "state": task.state, "credits_reserved": task.credits_reserved, "credits_charged": task.credits_charged}
    if task.error_code:
        data["error"] = {"code": task.error_code, "message": task.error_message}
    return {"type": f"task.{task.state}", "timestamp": now(), "data": data}


def enqueue(session: Session, task: Task) -> None:
    """Called inside the transaction that makes a task terminal."""
    if not task.callback_url:
        return
    payload = task_event(task)
    session.add(
        WebhookOutbox(
            id="msg_" + secrets.token_hex(12), task_id=task.id, account_id=task.account_id, url=task.callback_url,
            event_type=payload["type"], payload=json.dumps(payload, separators=(",", ":")), next_attempt_at=now(),
        )  # fmt: skip
    )


class WebhookSender:
    """Delivers due outbox rows. `post(url, body, headers) -> status` is injectable for tests."""

    def __init__(self, sessions: sessionmaker[Any], *, readers: sessionmaker[Any] | None = None, allow_private: bool, max_attempts: int, backoff_seconds: float, timeout: float, post: Any = None) -> None:
        self.sessions = sessions
        self.readers = readers or sessions
        self.allow_private = allow_private
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.timeout = timeout
        self.post = post or self._http_post

    def _http_post(self, url: str, body: str, headers: dict[str, str]) -> int:
        import httpx

        return httpx.post(url, content=body, headers=headers, timeout=self.timeout, follow_redirects=False).status_code

    def deliver_due(self, limit: int = 20) -> int:
        """Try every due row once; returns how many were delivered."""
        with self.readers() as s:
            due = s.scalars(
                select(WebhookOutbox.id).where(WebhookOutbox.state == "pending", WebhookOutbox.next_attempt_at <= now()).order_by(WebhookOutbox.next_attempt_at).limit(limit)
            ).all()
        return sum(self._deliver(msg_id) for msg_id in due)

    def _deliver(self, msg_id: str) -> bool:
        with self.sessions() as s:
            row = s.get(WebhookOutbox, msg_id)
            if row is None or row.state != "pending":
                return False
            secret = secret_for(s, row.account_id)
            s.commit()
            url, body = row.url, row.payload
        ts = int(now())
        headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sign(secret, msg_id, ts, body)}
        error: str | None = None
        try:
            check_url(url, self.allow_private)  # again at send time: DNS may have changed since submit
            status = self.post(url, body, headers)
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except WebhookUrlError as exc:
            error = str(exc)
        except Exception as exc:  # network errors of any kind are retried
            error = f"{type(exc).__name__}: {exc}"[:500]
        with self.sessions.begin() as s:
            row = s.get(WebhookOutbox, msg_id)
            assert row is not None
            row.attempts += 1
            if error is None:
                row.state, row.delivered_at = "delivered", now()
                return True
            row.last_error = error[:500]
            if row.attempts >= self.max_attempts:
                row.state = "dead"
            else:
                row.next_attempt_at = now() + self.backoff_seconds * 2 ** (row.attempts - 1)
        return False
