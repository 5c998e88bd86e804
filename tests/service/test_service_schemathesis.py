"""Schemathesis fuzzes every operation of the OpenAPI schema: no input may cause a 5xx.

The app runs in-process (ASGI) with the fast fake backend; an account with a
valid key is used so the fuzz reaches past authentication into validation.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, settings
from service_helpers import FakeBackend

from kinema.service.accounts import create_account, create_key
from kinema.service.app import create_app
from kinema.service.settings import Settings

_DATA = Path(tempfile.mkdtemp(prefix="kinema-schemathesis-"))
APP = create_app(Settings(data_dir=_DATA), FakeBackend, run_workers=False)
KEY = create_key(APP.state.service.sessions, create_account(APP.state.service.sessions, "fuzz", "pro"))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error(case) -> None:
    headers = dict(case.headers or {})
    if not any(k.lower() == "authorization" for k in headers):
        headers["Authorization"] = f"Bearer {KEY}"
    response = case.call(headers=headers)
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    content_type = response.headers.get("content-type", [""])
    if 400 <= response.status_code < 500 and "application/json" in str(content_type):
        assert "code" in response.json().get("error", {}), response.text[:300]
