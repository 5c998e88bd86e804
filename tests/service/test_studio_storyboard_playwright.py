"""The web studio's storyboard editor in headless Chromium, against a live app (the fixtures of test_studio_playwright).

A person builds a film: adds, edits, reorders and deletes shots, sees the price
(the API's storyboard quote, per shot and in total), previews a shot (a video
task with the film's request for that shot), renders the film (a storyboard
task whose progress shows live), plays and downloads it; a shot the model
cannot make is pointed at, with the API's code, and nothing is submitted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright")
pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from playwright.sync_api import Page, expect  # noqa: E402
from test_studio_playwright import (  # noqa: E402,F401  (fixtures: browser, page, service)
    CHROMIUM,
    LiveService,
    browser,
    open_studio,
    page,
    pytestmark,
    service,
)

from kinema.studio.mux import stream_report  # noqa: E402
from kinema.video.io import read_video  # noqa: E402


def shot(page: Page, n: int) -> Any:
    return page.locator("#shots > .shot").nth(n)


def fill_shot(page: Page, n: int, prompt: str, seconds: str = "1", camera: str | None = None, caption: str | None = None) -> None:
    card = shot(page, n)
    card.locator(".shot-prompt").fill(prompt)
    card.locator(".shot-duration").fill(seconds)
    if camera is not None:
        card.locator(".shot-camera").select_option(camera)
    if caption is not None:
        card.locator(".shot-caption").fill(caption)


def prompts(page: Page) -> list[str]:
    return page.locator("#shots .shot-prompt").evaluate_all("els => els.map(e => e.value)")


def last_quote_body(page: Page) -> dict[str, Any]:
    return json.loads(page.evaluate("window.__quotes[window.__quotes.length - 1]"))


def record_quotes(page: Page) -> None:
    page.evaluate(
        """() => { window.__quotes = []; const f = window.fetch;
        window.fetch = (url, opts) => { if (String(url).endsWith('/v1/storyboards/quotes')) window.__quotes.push(opts.body); return f(url, opts); }; }"""
    )


def test_build_price_preview_and_render_a_film(page: Page, service: LiveService, tmp_path: Path) -> None:
    open_studio(page, service, key=service.api_key)
    record_quotes(page)
    page.click("#tab-story")
    expect(page.locator("#panel-story")).to_be_visible()
    expect(page.locator("#panel-video")).to_be_hidden()
    expect(page.locator("#film-price")).to_have_attribute("data-state", "empty")  # one empty shot: asks for a prompt

    # Add three shots, edit one, move the last one up, add and delete a fourth.
    page.fill("#story-title", "The red ball")
    page.check("#story-music")
    page.select_option("#story-transition", "crossfade")
    fill_shot(page, 0, "a red ball moving left", camera="pan-left", caption="off it goes")
    page.click("#shot-add")
    fill_shot(page, 1, "a blue square")
    page.click("#shot-add")
    fill_shot(page, 2, "a green triangle", seconds="1.5")
    shot(page, 1).locator(".shot-prompt").fill("a blue square spinning")
    shot(page, 2).locator(".shot-up").click()
    assert prompts(page) == ["a red ball moving left", "a green triangle", "a blue square spinning"]
    page.click("#shot-add")
    fill_shot(page, 3, "a shot to drop")
    expect(page.locator("#shots > .shot")).to_have_count(4)
    shot(page, 3).locator(".shot-delete").click()
    expect(page.locator("#shots > .shot")).to_have_count(3)
    expect(shot(page, 0).locator(".shot-up")).to_be_disabled()
    expect(shot(page, 2).locator(".shot-down")).to_be_disabled()

    # The price shown is the API's quote for exactly this film, shot by shot and in total.
    expect(page.locator("#film-price")).to_have_attribute("data-state", "ok")
    body = last_quote_body(page)
    assert [s["prompt"] for s in body["storyboard"]["shots"]] == prompts(page)
    assert body["storyboard"]["title"] == "The red ball" and body["storyboard"]["transition"] == "crossfade"
    assert body["storyboard"]["shots"][0]["camera"] == {"pan": -1, "tilt": 0, "zoom": 0}
    assert body["storyboard"]["soundtrack"] == {"music": {"volume": 0.25}}
    quote = httpx.post(service.url + "/v1/storyboards/quotes", json=body, headers=service.headers).json()
    assert float(page.locator("#film-price").get_attribute("data-credits") or "nan") == pytest.approx(quote["credits"])
    for i, q in enumerate(quote["shots"]):
        expect(shot(page, i).locator(".shot-price")).to_have_attribute("data-credits", str(q["credits"]))
    expect(page.locator("#film-price-detail")).to_contain_text("3 shots")

    # Preview the second shot alone: a video task with the film's request (and seed) for it.
    shot(page, 1).locator(".shot-preview-button").click()
    expect(shot(page, 1)).to_have_attribute("data-preview-state", "succeeded")
    video = shot(page, 1).locator(".shot-media video")
    page.wait_for_function("v => v.readyState >= 2 && v.videoWidth > 0", arg=video.element_handle())
    assert page.evaluate("v => [v.videoWidth, v.videoHeight]", video.element_handle()) == [quote["generation_width"], quote["generation_height"]]
    tasks = httpx.get(service.url + "/v1/tasks?limit=100", headers=service.headers).json()["items"]
    preview = next(t for t in tasks if t["kind"] == "video" and t["request"]["prompt"] == "a green triangle")
    assert preview["request"]["seed"] == quote["shots"][1]["seed"] and preview["credits_charged"] == quote["shots"][1]["credits"]

    # Render the film: a storyboard task in the gallery, its progress live, then a playable, downloadable film.
    page.evaluate(
        """() => { window.__film = [];
        new MutationObserver(ms => ms.forEach(m => { if (m.target.dataset.kind === 'storyboard') window.__film.push(Number(m.target.dataset.progress)); }))
          .observe(document.getElementById('tasks'), {subtree: true, attributes: true, attributeFilter: ['data-progress']}); }"""
    )
    service.gate.clear()
    page.click("#film-render")
    card = page.locator(".task[data-kind=storyboard]").first
    expect(card).to_have_attribute("data-state", "running")
    expect(card.locator(".prompt-text")).to_contain_text("Film: The red ball (3 shots)")
    page.wait_for_function("() => window.__film.some(p => p > 0 && p < 1)")
    service.gate.set()
    expect(card).to_have_attribute("data-state", "succeeded")
    film = card.locator("video")
    page.wait_for_function("v => v.readyState >= 2 && v.videoWidth > 0", arg=film.element_handle())
    width, height, duration = page.evaluate("v => [v.videoWidth, v.videoHeight, v.duration]", film.element_handle())
    assert (width, height) == (quote["width"], quote["height"])
    assert duration == pytest.approx(quote["duration"], abs=0.1)
    with page.expect_download() as info:
        card.locator(".download").click()
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    assert "audio" in stream_report(saved)  # the music bed
    frames, fps = read_video(saved)
    assert frames.shape[1:3] == (quote["height"], quote["width"]) and len(frames) == round(quote["duration"] * fps)
    done = httpx.get(service.url + f"/v1/tasks/{card.get_attribute('data-id')}", headers=service.headers).json()
    assert done["kind"] == "storyboard" and done["credits_charged"] == quote["credits"]

    # The draft survives a reload, on the tab it was left on.
    page.reload()
    expect(page.locator("#panel-story")).to_be_visible()
    assert prompts(page) == ["a red ball moving left", "a green triangle", "a blue square spinning"]
    assert page.input_value("#story-title") == "The red ball" and page.is_checked("#story-music")
    page.screenshot(path=str(tmp_path / "storyboard.png"), full_page=True)


def test_a_shot_the_model_cannot_make_is_pointed_at_and_nothing_is_submitted(page: Page, service: LiveService) -> None:
    open_studio(page, service, key=service.api_key)
    page.click("#tab-story")
    fill_shot(page, 0, "a red ball")
    page.click("#shot-add")
    fill_shot(page, 1, "a yellow star", seconds="5")  # the model's limit is 2 s
    expect(page.locator("#film-price")).to_have_attribute("data-state", "error")
    expect(page.locator("#error-code")).to_have_text("input.seconds.unsupported")
    expect(page.locator("#error-message")).to_contain_text("shots[1]")
    expect(shot(page, 1)).to_have_attribute("data-invalid", "true")
    expect(shot(page, 0)).not_to_have_attribute("data-invalid", "true")

    def stored() -> int:
        return len(httpx.get(service.url + "/v1/tasks?limit=100", headers=service.headers).json()["items"])

    before = stored()
    with page.expect_response(lambda r: r.url.endswith("/v1/storyboards") and r.request.method == "POST") as refused:
        page.click("#film-render")
    assert refused.value.status == 422
    assert stored() == before

    # Fixing the shot clears the mark and brings the price back.
    shot(page, 1).locator(".shot-duration").fill("1")
    expect(page.locator("#film-price")).to_have_attribute("data-state", "ok")
    expect(shot(page, 1)).not_to_have_attribute("data-invalid", "true")
    expect(page.locator("#error")).to_be_hidden()


assert CHROMIUM  # imported with the fixtures: the same browser binary
