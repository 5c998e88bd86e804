"""Storyboard tasks over the API: quote from the studio's plan, the same queue and workers, a downloadable film.

The fake backend (service_helpers) makes seeded noise frames in no time; the
studio composes and encodes a real MP4 (H.264 + AAC + subtitles), so what is
downloaded is checked as a film: its size, length and sound.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from media_helpers import png, stored_files, upload, wav  # noqa: E402
from service_helpers import FakeBackend, make_harness, wait_for  # noqa: E402


def board(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "title": "The red ball",
        "aspect_ratio": "16:9",
        "fps": 8,
        "output": {"height": 36},
        "shots": [
            {"prompt": "the red ball moves left", "duration": 1, "caption": "off it goes", "transition": "crossfade"},
            {"prompt": "a blue square", "duration": 0.5, "camera": "static"},
            {"prompt": "the red ball stops", "duration": 1},
        ],
    }
    data.update(extra)
    return data


@pytest.fixture
def runs() -> dict[str, int]:
    return {}


@pytest.fixture
def h(tmp_path: Path, runs: dict[str, int]):
    harness = make_harness(tmp_path, lambda: FakeBackend(runs=runs, tasks=("image-to-video", "camera-control")))
    yield harness
    harness.client.__exit__(None, None, None)




def test_the_quote_is_the_sum_of_each_shots_video_task_price(h) -> None:
    r = h.client.post("/v1/storyboards/quotes", json={"storyboard": board()}, headers=h.headers)
    assert r.status_code == 200, r.text
    q = r.json()
    assert [s["prompt"] for s in q["shots"]] == ["the red ball moves left", "a blue square", "the red ball stops"]
    assert (q["width"], q["height"], q["fps"]) == (64, 36, 8) and (q["generation_width"], q["generation_height"]) == (64, 32)
    assert q["duration"] == pytest.approx(2.5 - 0.5)  # the crossfade overlaps two items by 0.5 s
    for shot in q["shots"]:
        alone = h.client.post("/v1/quotes", json=shot["request"], headers=h.headers)  # the shot previewed as a video task
        assert alone.status_code == 200, alone.text
        assert alone.json()["credits"] == shot["credits"] and alone.json()["seed"] == shot["seed"]
    assert q["credits"] == sum(s["credits"] for s in q["shots"]) > 0
    assert q["steps"] == sum(s["steps"] for s in q["shots"])
    assert q["shots"][1]["request"]["camera"] == {"pan": 0.0, "tilt": 0.0, "zoom": 0.0}


def test_a_storyboard_task_runs_in_the_queue_is_charged_its_quote_and_downloads_as_a_film(h, runs, tmp_path: Path) -> None:
    from kinema.studio.mux import stream_report
    from kinema.video.io import read_video

    before = h.balance()
    quote = h.client.post("/v1/storyboards/quotes", json={"storyboard": board()}, headers=h.headers).json()
    r = h.client.post("/v1/storyboards", json={"storyboard": board()}, headers=h.headers)
    assert r.status_code == 201, r.text
    task = r.json()
    assert task["kind"] == "storyboard" and task["state"] == "queued" and task["credits_reserved"] == quote["credits"]
    assert task["request"]["storyboard"]["title"] == "The red ball"
    assert task["total_steps"] == quote["steps"] + 1  # + composition
    done = wait_for(h.client, h.headers, task["id"], {"succeeded", "failed", "cancelled"})
    assert done["state"] == "succeeded", done
    assert done["progress"] == 1.0 and done["credits_charged"] == quote["credits"] and h.balance() == before - quote["credits"]
    assert sorted(runs) == sorted(s["prompt"] for s in quote["shots"])
    assert [t["id"] for t in h.client.get("/v1/tasks", headers=h.headers).json()["items"]] == [task["id"]]
    film = h.client.get(done["download_url"], headers=h.headers)
    assert film.status_code == 200 and film.headers["content-type"] == "video/mp4"
    assert f"kinema-{task['id']}.mp4" in film.headers["content-disposition"]
    path = tmp_path / "film.mp4"
    path.write_bytes(film.content)
    frames, fps = read_video(path)
    assert frames.shape[1:3] == (36, 64) and fps == pytest.approx(8)
    assert len(frames) == round(quote["duration"] * 8)
    assert "subtitle" in stream_report(path)  # the caption, as a soft subtitle track
    assert not list(h.settings.outputs_dir.glob("*.srt"))  # one file: captions are the MP4's soft subtitles

    # Deleting the task removes the film.
    assert h.client.delete(f"/v1/tasks/{task['id']}", headers=h.headers).status_code == 204
    assert not (h.settings.outputs_dir / f"{task['id']}.mp4").exists()


def test_an_unchanged_film_reuses_its_shots_and_an_edit_regenerates_one(h, runs) -> None:
    """...and is charged only for what it generated: the quote is reserved, the cached shots' share released."""

    def render(data: dict[str, Any]) -> dict[str, Any]:
        tid = h.client.post("/v1/storyboards", json={"storyboard": data}, headers=h.headers).json()["id"]
        return wait_for(h.client, h.headers, tid, {"succeeded", "failed", "cancelled"})

    quote = h.client.post("/v1/storyboards/quotes", json={"storyboard": board()}, headers=h.headers).json()
    first = render(board())
    assert first["state"] == "succeeded" and first["credits_charged"] == first["credits_reserved"] == quote["credits"]
    assert sum(runs.values()) == 3
    before = h.balance()
    again = render(board(title="Again"))
    assert again["state"] == "succeeded" and again["credits_reserved"] == quote["credits"]
    assert sum(runs.values()) == 3  # every shot came from the account's shot cache
    assert again["credits_charged"] == 0 and h.balance() == before  # nothing ran, nothing charged
    edited = board()
    edited["shots"][1] = {**edited["shots"][1], "prompt": "a green square"}
    edited_quote = h.client.post("/v1/storyboards/quotes", json={"storyboard": edited}, headers=h.headers).json()
    done = render(edited)
    assert done["state"] == "succeeded"
    assert sum(runs.values()) == 4 and runs["a green square"] == 1
    assert done["credits_charged"] == edited_quote["shots"][1]["credits"] < done["credits_reserved"]
    assert h.balance() == before - edited_quote["shots"][1]["credits"]


def test_subject_images_and_a_soundtrack_come_from_uploads(h, tmp_path: Path) -> None:
    from kinema.studio.mux import stream_report

    ref = upload(h, png(color=(220, 30, 30))).json()["id"]
    music = upload(h, wav(3.0)).json()["id"]
    data = board(subjects=[{"name": "red ball", "description": "a red circle", "image": ref}], soundtrack={"file": music})
    q = h.client.post("/v1/storyboards/quotes", json={"storyboard": data}, headers=h.headers).json()
    assert q["image_conditioning"] and [s["condition"] for s in q["shots"]] == ["subject", "none", "subject"]
    r = h.client.post("/v1/storyboards", json={"storyboard": data}, headers=h.headers)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    assert r.json()["request"]["storyboard"]["subjects"][0]["image"] == ref  # ids as sent, no server paths
    assert len(stored_files(h.settings.inputs_dir / tid)) == 2  # the task's own copies
    h.client.delete(f"/v1/uploads/{ref}", headers=h.headers)  # the task does not need the upload any more
    done = wait_for(h.client, h.headers, tid, {"succeeded", "failed", "cancelled"})
    assert done["state"] == "succeeded", done
    path = tmp_path / "film.mp4"
    path.write_bytes(h.client.get(done["download_url"], headers=h.headers).content)
    assert "audio" in stream_report(path)
    assert h.client.delete(f"/v1/tasks/{tid}", headers=h.headers).status_code == 204
    assert not (h.settings.inputs_dir / tid).exists()


BAD = [
    ({"shots": [{"prompt": "x", "duration": -1}]}, "input.storyboard.invalid", "shots[0].duration: must be > 0"),
    ({"shots": [{"prompt": "x", "duration": 1, "subject": "cat"}]}, "input.storyboard.invalid", "shots[0].subject: unknown subject 'cat'"),
    ({"shots": [{"prompt": "x", "duration": 1, "colour": "red"}]}, "input.storyboard.invalid", "shots[0].colour: unknown field"),
    ({"shots": [{"prompt": "a", "duration": 1}, {"prompt": "b", "duration": 5}]}, "input.seconds.unsupported", "shots[1]: seconds 5 is too long"),
    ({"shots": [{"prompt": "a", "duration": 1, "image": "/etc/passwd"}]}, "input.image.invalid", "shots[0].image"),
    ({"shots": [{"prompt": "a", "duration": 1, "image": "upl_" + "0" * 32}]}, "input.image.not_found", "shots[0].image"),
    ({"shots": [{"prompt": "a", "duration": 1}], "soundtrack": {"file": "/etc/passwd"}}, "input.soundtrack.invalid", "soundtrack.file"),
    ({"shots": [{"prompt": "a", "duration": 1}], "output": {"font": "/etc/passwd"}}, "input.storyboard.invalid", "output.font"),
    ({"shots": [{"prompt": "a nude figure", "duration": 1}]}, "moderation.prompt", "shots[0]"),
    ({"shots": [{"prompt": "a", "duration": 1, "caption": "so much gore"}]}, "moderation.text", "shots[0].caption"),
    ({"shots": [{"prompt": "a", "duration": 1}], "intro": {"title": "naked truth"}}, "moderation.text", "intro.title"),
    ({"shots": []}, "input.storyboard.invalid", "shots"),
]


@pytest.mark.parametrize("data,code,where", BAD)
def test_bad_storyboards_are_coded_422s_naming_the_field_and_store_nothing(h, data: dict[str, Any], code: str, where: str) -> None:
    before = h.balance()
    for path in ("/v1/storyboards/quotes", "/v1/storyboards"):
        r = h.client.post(path, json={"storyboard": data}, headers=h.headers)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == code and r.json()["error"]["message"].startswith(where), r.text
    assert h.client.get("/v1/tasks", headers=h.headers).json()["items"] == [] and h.balance() == before
    assert stored_files(h.settings.inputs_dir) == []


def test_body_limits_and_idempotency(h) -> None:
    hdr = {**h.headers, "Idempotency-Key": "film-1"}
    a = h.client.post("/v1/storyboards", json={"storyboard": board()}, headers=hdr)
    b = h.client.post("/v1/storyboards", json={"storyboard": board()}, headers=hdr)
    assert a.status_code == 201 and b.status_code == 200 and a.json()["id"] == b.json()["id"]
    c = h.client.post("/v1/storyboards", json={"storyboard": board(title="other")}, headers=hdr)
    assert c.status_code == 422 and c.json()["error"]["code"] == "idempotency.key_reused"
    big = h.client.post("/v1/storyboards", content=b'{"storyboard": {"title": "' + b"x" * 1_100_000 + b'"}}', headers={**h.headers, "content-type": "application/json"})
    assert big.status_code == 413 and big.json()["error"]["code"] == "input.body.too_large"
    many = board(shots=[{"prompt": f"shot number {i}", "duration": 1, "caption": "y" * 300} for i in range(150)])
    assert h.client.post("/v1/storyboards/quotes", json={"storyboard": many}, headers=h.headers).status_code == 200  # > 64 KiB: a storyboard may be large
    poor_key = _poor_key(h)
    r = h.client.post("/v1/storyboards", json={"storyboard": board()}, headers={"Authorization": f"Bearer {poor_key}"})
    assert r.status_code == 402 and r.json()["error"]["code"] == "credits.insufficient"


def _poor_key(h) -> str:
    from kinema.service.accounts import create_account, create_key, upsert_plan

    upsert_plan(h.sessions, "empty", monthly_credits=0, concurrency=1, priority=0)  # the monthly top-up grants nothing either
    return create_key(h.sessions, create_account(h.sessions, "poor", "empty", grant_monthly=False))


def test_cancel_stops_a_running_film_within_a_step_and_releases_the_credits(tmp_path: Path) -> None:
    gate = threading.Event()
    runs: dict[str, int] = {}
    h = make_harness(tmp_path, lambda: FakeBackend(gate=gate, runs=runs, tasks=("camera-control",)))
    try:
        before = h.balance()
        tid = h.client.post("/v1/storyboards", json={"storyboard": board()}, headers=h.headers).json()["id"]
        running = wait_for(h.client, h.headers, tid, {"running"})
        assert running["state"] == "running"
        deadline = time.monotonic() + 120.0  # a wait for the machine: "running" can precede the first shot's start
        while not runs and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sum(runs.values()) == 1  # the first shot is held at its first step by the gate
        h.client.post(f"/v1/tasks/{tid}/cancel", headers=h.headers)
        done = wait_for(h.client, h.headers, tid, {"cancelled", "succeeded", "failed"})
        assert done["state"] == "cancelled" and done["credits_charged"] == 0 and h.balance() == before
        assert sum(runs.values()) == 1  # stopped in the first shot; the others never started
        assert not (h.app.state.service.settings.outputs_dir / f"{tid}.mp4").exists()
    finally:
        gate.set()
        h.client.__exit__(None, None, None)


def test_a_failing_shot_fails_the_film_and_releases_the_credits(tmp_path: Path) -> None:
    h = make_harness(tmp_path, lambda: FakeBackend(fail_with=RuntimeError("out of memory (simulated)"), tasks=("camera-control",)))
    try:
        before = h.balance()
        tid = h.client.post("/v1/storyboards", json={"storyboard": board()}, headers=h.headers).json()["id"]
        done = wait_for(h.client, h.headers, tid, {"succeeded", "failed", "cancelled"})
        assert done["state"] == "failed" and done["error"]["code"] == "internal.generation"
        assert "shots[0]" in done["error"]["message"] and "out of memory" in done["error"]["message"]
        assert done["credits_charged"] == 0 and h.balance() == before
    finally:
        h.client.__exit__(None, None, None)


def test_progress_moves_through_the_shots_and_events_stream_it(h) -> None:
    import json

    tid = h.client.post("/v1/storyboards", json={"storyboard": board()}, headers=h.headers).json()["id"]
    seen: list[tuple[str, float]] = []
    with h.client.stream("GET", f"/v1/tasks/{tid}/events", headers=h.headers) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                view = json.loads(line[6:])
                seen.append((view["state"], view["progress"]))
    assert seen[-1] == ("succeeded", 1.0)
    values = [p for _, p in seen]
    assert values == sorted(values)  # never goes backwards


def test_a_lost_worker_mid_film_retries_the_task_and_cached_shots_are_not_made_again(tmp_path: Path) -> None:
    """The executor loses its worker during the second shot: the task goes back to the queue
    (as a video task would), and the retry takes the first shot from the shot cache."""
    from fastapi.testclient import TestClient

    from kinema.service.accounts import create_account, create_key
    from kinema.service.app import create_app
    from kinema.service.executors import LocalExecutor, WorkerLost
    from kinema.service.settings import Settings

    runs: dict[str, int] = {}

    class LosesOnce(LocalExecutor):
        lost = False

        def run(self, job_id, resolved, progress=None, cancelled=lambda: False):  # type: ignore[no-untyped-def]
            if resolved.prompt == "a blue square" and not LosesOnce.lost:
                LosesOnce.lost = True
                raise WorkerLost("the actor died (simulated)")
            return super().run(job_id, resolved, progress, cancelled)

    def factory() -> FakeBackend:
        return FakeBackend(runs=runs, tasks=("camera-control",))

    settings = Settings(data_dir=tmp_path, poll_seconds=0.02, reap_seconds=0.1, lease_seconds=5.0)
    app = create_app(settings, factory, executor=LosesOnce(factory))
    with TestClient(app) as client:
        key = create_key(app.state.service.sessions, create_account(app.state.service.sessions, "carol", "pro"))
        hdr = {"Authorization": f"Bearer {key}"}
        tid = client.post("/v1/storyboards", json={"storyboard": board()}, headers=hdr).json()["id"]
        done = wait_for(client, hdr, tid, {"succeeded", "failed", "cancelled"})
        assert done["state"] == "succeeded" and done["attempts"] == 2, done
        assert runs["the red ball moves left"] == 1  # made once, reused by the retry
        assert done["credits_charged"] == done["credits_reserved"]
