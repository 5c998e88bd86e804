"""The web studio in headless Chromium (Debian's /usr/bin/chromium driven by Playwright), against a live app.

The app runs under uvicorn on a free port of 127.0.0.1 with in-process
workers and the service tests' fast fake backend (seeded noise frames, written
to a real MP4 by the service), behind a gate the test opens: a job reports
its first step and then waits, so "progress is shown live" and "cancel stops a running job" are checked deterministically,
not by racing a fast backend. Everything is checked the way a person would see
it: the price on the page equals the API's quote, the progress bar moves, the
finished video plays in the page's <video> at the requested size, the
downloaded file is a real video, errors show their machine-readable code, the
key survives a reload, and the page fetched nothing from any other origin.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("playwright")
pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402
from service_helpers import FAKE_CAPS, FakeBackend  # noqa: E402

from kinema.engine.backend import Capabilities, ResolvedRequest, resolve_common  # noqa: E402
from kinema.request import GenerationRequest  # noqa: E402
from kinema.video.io import read_video  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WAIT_MS = 180_000  # generous: this is a wait for the page, not a speed limit (the machine may be very busy)

expect.set_options(timeout=WAIT_MS)

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)")


CAMERA_CAPS = dataclasses.replace(FAKE_CAPS, tasks=frozenset({"text-to-video", "camera-control"}))


class CameraFakeBackend(FakeBackend):
    """The service tests' fast fake backend, also accepting a camera (the studio sends one)."""

    def capabilities(self) -> Capabilities:
        return CAMERA_CAPS

    def validate(self, request: GenerationRequest) -> ResolvedRequest:
        return resolve_common(request, CAMERA_CAPS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveService:
    """The app under uvicorn in a thread, an account with credits, and the gate its jobs wait at."""

    url: str
    api_key: str
    backend: Any
    server: Any
    thread: threading.Thread
    gate: threading.Event
    codes: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def size_for(self, aspect: str) -> tuple[int, int]:
        """(width, height) the model makes for an aspect ratio, by the engine's own rule."""
        from kinema.engine.backend import resolve_size
        from kinema.request import make_request

        height, width, _ = resolve_size(make_request(prompt="x", aspect_ratio=aspect), self.backend.capabilities())
        return width, height

    def stop(self) -> None:
        self.gate.set()
        self.server.should_exit = True
        self.thread.join()


def serve_in_thread(app: Any) -> tuple[Any, threading.Thread, str]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="studio-uvicorn", daemon=True)
    thread.start()
    while not server.started:  # uvicorn sets this once the socket listens
        if not thread.is_alive():
            raise RuntimeError("uvicorn stopped before it started")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def start_live_service(root: Path) -> LiveService:
    """`kinema serve` as its command builds it (create_app + uvicorn), with the gated fake backend and one account."""
    from kinema.service.accounts import create_account, create_key
    from kinema.service.app import create_app
    from kinema.service.settings import Settings

    gate = threading.Event()
    gate.set()
    settings = Settings(data_dir=root, workers=1, reap_seconds=0.1, poll_seconds=0.02, lease_seconds=10.0)
    app = create_app(settings, lambda: CameraFakeBackend(step_delay=0.05, gate=gate))
    sessions = app.state.service.sessions
    account = create_account(sessions, "studio-user", "standard")
    key = create_key(sessions, account)
    server, thread, url = serve_in_thread(app)
    return LiveService(
        url=url, api_key=key, backend=app.state.service.backend, server=server, thread=thread, gate=gate,
        codes={"bad_key": "auth.invalid", "over_length": "input.seconds.unsupported"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    live = start_live_service(tmp_path_factory.mktemp("studio"))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        # --no-sandbox: Chromium's sandbox refuses to start as root, which CI here is.
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, service: LiveService) -> Iterator[Page]:
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(WAIT_MS)
    pg = context.new_page()
    requested: list[str] = []
    pg.on("request", lambda r: requested.append(r.url))
    script_errors: list[str] = []
    pg.on("pageerror", lambda e: script_errors.append(str(e)))
    pg.requested = requested  # type: ignore[attr-defined]
    yield pg
    context.close()
    assert script_errors == [], f"JavaScript errors on the page: {script_errors}"


def open_studio(page: Page, service: LiveService, key: str | None) -> None:
    page.goto(service.url + "/studio/")
    if key is not None:
        page.fill("#api-key", key)
        page.click("#key-save")


def compose(page: Page, prompt: str, *, aspect: str = "16:9", seconds: str = "1", seed: str = "7", camera: str = "pan-left") -> None:
    page.fill("#prompt", prompt)
    page.select_option("#aspect", aspect)
    page.fill("#seconds", seconds)
    page.fill("#seed", seed)
    page.select_option("#camera", camera)


def test_the_whole_flow_from_prompt_to_a_playable_download(page: Page, service: LiveService, tmp_path: Path) -> None:
    open_studio(page, service, key=None)
    expect(page.locator("#price-detail")).to_contain_text("write a prompt")
    page.fill("#prompt", "a red ball moving left")
    expect(page.locator("#price-detail")).to_contain_text("API key")  # no key yet: no price, and the page says why

    page.fill("#api-key", service.api_key)
    page.click("#key-save")
    assert page.evaluate("localStorage.getItem('kinema.apiKey')") == service.api_key
    expect(page.locator("#account")).to_contain_text("credits")
    credits_before = float(page.locator("#account").get_attribute("data-credits") or "nan")

    # Price before paying: what the page shows is exactly the API's quote for the same request.
    compose(page, "a red ball moving left")
    expect(page.locator("#price")).to_have_attribute("data-state", "ok")
    shown = float(page.locator("#price").get_attribute("data-credits") or "nan")
    body = {"prompt": "a red ball moving left", "aspect_ratio": "16:9", "seconds": 1, "seed": 7, "camera": {"pan": -1, "tilt": 0, "zoom": 0}}
    quote = httpx.post(service.url + "/v1/quotes", json=body, headers=service.headers).json()
    assert shown == pytest.approx(float(quote["credits"]))
    assert shown > 0

    # Submit; the job reports its first step and waits at the gate: the card must show that live.
    page.evaluate(
        """() => { window.__progress = [];
        new MutationObserver(ms => ms.forEach(m => window.__progress.push(Number(m.target.dataset.progress))))
          .observe(document.getElementById('tasks'), {subtree: true, attributes: true, attributeFilter: ['data-progress']}); }"""
    )
    service.gate.clear()
    page.click("#submit")
    card = page.locator(".task").first
    expect(card).to_have_attribute("data-state", "running")
    page.wait_for_function("() => window.__progress.some(p => p > 0 && p < 1)")
    expect(card.locator(".step")).to_contain_text("%")
    service.gate.set()

    expect(card).to_have_attribute("data-state", "succeeded")
    video = card.locator("video")
    handle = video.element_handle()
    page.wait_for_function("v => v.readyState >= 2 && v.videoWidth > 0", arg=handle)
    width, height, duration = page.evaluate("v => [v.videoWidth, v.videoHeight, v.duration]", handle)
    assert (width, height) == service.size_for("16:9")  # the model's nearest 16:9 bucket
    assert duration > 0

    with page.expect_download() as info:
        card.locator(".download").click()
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    frames, _fps = read_video(saved)
    assert frames.shape[1:3] == (height, width) and frames.shape[0] >= 1

    expect(page.locator("#account")).not_to_have_attribute("data-credits", str(credits_before))  # the charge shows

    # The key survives a reload, and the gallery lists the finished video again.
    page.reload()
    assert page.input_value("#api-key") == service.api_key
    again = page.locator(".task[data-state=succeeded]").first
    expect(again.locator("video")).to_have_count(1)

    # Nothing came from anywhere but the app itself (no CDN, no fonts, no analytics).
    foreign = [u for u in page.requested if not (u.startswith(service.url) or u.startswith("blob:") or u.startswith("data:"))]  # type: ignore[attr-defined]
    assert foreign == []


def test_cancel_stops_a_running_task(page: Page, service: LiveService) -> None:
    open_studio(page, service, key=service.api_key)
    compose(page, "a blue square moving up", seed="3")
    expect(page.locator("#price")).to_have_attribute("data-state", "ok")
    service.gate.clear()
    page.click("#submit")
    card = page.locator(".task").first
    expect(card).to_have_attribute("data-state", "running")
    card.locator(".cancel").click()
    try:
        expect(card).to_have_attribute("data-state", "cancelled")
    finally:
        service.gate.set()
    expect(card.locator(".cancel")).to_be_hidden()
    expect(card.locator("video")).to_have_count(0)


def test_errors_show_the_apis_machine_readable_code(page: Page, service: LiveService) -> None:
    # A key the service does not know.
    open_studio(page, service, key="not-a-real-key")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-code")).to_have_text(service.codes["bad_key"])
    expect(page.locator("#error-title")).to_have_text("Check your API key.")

    # A request the model cannot make: the price box refuses before anything is submitted.
    page.fill("#api-key", service.api_key)
    page.click("#key-save")
    expect(page.locator("#error")).to_be_hidden()
    def stored_tasks() -> int:
        return len(httpx.get(service.url + "/v1/tasks?limit=100", headers=service.headers).json()["items"])

    before = stored_tasks()
    compose(page, "a yellow star spinning", seconds="5")  # the model's limit is 2 s
    expect(page.locator("#price")).to_have_attribute("data-state", "error")
    expect(page.locator("#error-code")).to_have_text(service.codes["over_length"])
    expect(page.locator("#error-title")).to_have_text("Please fix the request.")
    with page.expect_response(lambda r: r.url.endswith("/v1/tasks") and r.request.method == "POST") as refused:
        page.click("#submit")
    assert refused.value.status == 422
    expect(page.locator("#error-code")).to_have_text(service.codes["over_length"])
    assert stored_tasks() == before  # nothing was created


def test_the_studio_is_served_by_the_app_with_nothing_from_outside(service: LiveService) -> None:
    for name, kind in (("", "text/html"), ("app.js", "javascript"), ("style.css", "text/css")):
        r = httpx.get(f"{service.url}/studio/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
        assert "http://" not in r.text and "https://" not in r.text  # no CDN, no web fonts


def test_every_aspect_and_camera_menu_offers_the_same_choices(page: Page, service: LiveService) -> None:
    open_studio(page, service, key=None)
    options = "s => [...document.querySelector(s).options].map(o => o.value)"
    aspects = page.evaluate(options, "#aspect")
    assert aspects == page.evaluate(options, "#story-aspect")
    assert {"16:9", "9:16", "1:1"} <= set(aspects)
    # Each menu keeps its own default: a single clip starts square, a film landscape.
    assert page.locator("#aspect").input_value() == "1:1"
    assert page.locator("#story-aspect").input_value() == "16:9"
    shot_cameras = page.evaluate("() => [...document.querySelector('#shot-template').content.querySelector('.shot-camera').options].map(o => o.value)")
    assert page.evaluate(options, "#camera") == shot_cameras
