"""Shared helpers for the service tests: a fast fake backend and an app with an account."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kinema.engine.backend import Capabilities, ResolvedRequest, Video, resolve_common
from kinema.errors import KinemaInputError
from kinema.request import GenerationRequest

FAKE_CAPS = Capabilities(
    tasks=frozenset({"text-to-video"}), buckets=((32, 32), (32, 64), (64, 32)), stride=16, temporal_stride=4, max_seconds=2.0,
    fps_range=(8.0, 8.0), samplers=("euler",), default_steps=4, default_guidance=3.0, default_sampler="euler",
    default_fps=8.0, default_seconds=1.0, max_prompt_tokens=12,
)  # fmt: skip


class FakeBackend:
    """Frames from the seed, no model: `step_delay` per step, optional gate to hold a job at step 1.

    `runs` counts generate calls per prompt across every instance sharing the dict.
    """

    def __init__(self, step_delay: float = 0.0, gate: threading.Event | None = None, runs: dict[str, int] | None = None, fail_with: Exception | None = None, tasks: tuple[str, ...] = ()) -> None:
        self.caps = dataclasses.replace(FAKE_CAPS, tasks=FAKE_CAPS.tasks | frozenset(tasks))
        self.step_delay = step_delay
        self.gate = gate
        self.runs = runs if runs is not None else {}
        self.fail_with = fail_with

    def capabilities(self) -> Capabilities:
        return self.caps

    def validate(self, request: GenerationRequest) -> ResolvedRequest:
        resolved = resolve_common(request, self.caps)
        n = len(resolved.prompt.split())  # one token per word, like a whitespace tokenizer
        if n > 12:
            raise KinemaInputError(f"prompt is {n} tokens; the limit is 12")
        return resolved

    def estimate_flops(self, resolved: ResolvedRequest) -> float:
        return 1e12 * resolved.width * resolved.height / 1024  # 1 TFLOP per forward at 32x32

    def generate(self, resolved: ResolvedRequest, progress: Any = None) -> Video:
        self.runs[resolved.prompt] = self.runs.get(resolved.prompt, 0) + 1
        if self.fail_with is not None:
            raise self.fail_with
        for step in range(1, resolved.steps + 1):
            if self.step_delay:
                time.sleep(self.step_delay)
            if progress is not None:
                progress(step, resolved.steps)
            while self.gate is not None and step == 1 and not self.gate.wait(0.02):
                if progress is not None:
                    progress(step, resolved.steps)
        rng = np.random.default_rng(resolved.seed)
        frames = rng.integers(0, 255, (resolved.num_frames, resolved.height, resolved.width, 3), dtype=np.uint8)
        return Video(frames=frames, fps=resolved.fps, seed=resolved.seed)


@dataclass
class Harness:
    app: Any
    client: Any
    key: str
    account_id: str
    sessions: Any

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @property
    def settings(self) -> Any:
        return self.app.state.service.settings

    def balance(self) -> int:
        """The account's available credits, as the API reports them."""
        return self.client.get("/v1/account", headers=self.headers).json()["credits_available"]


def make_harness(tmp: Path, backend_factory: Any, *, plan: str = "standard", **settings_kw: Any) -> Harness:
    from fastapi.testclient import TestClient

    from kinema.service.accounts import create_account, create_key
    from kinema.service.app import create_app
    from kinema.service.settings import Settings

    kw: dict[str, Any] = dict(data_dir=tmp, reap_seconds=0.1, poll_seconds=0.02, lease_seconds=5.0)
    kw.update(settings_kw)
    app = create_app(Settings(**kw), backend_factory)
    client = TestClient(app)
    client.__enter__()
    sessions = app.state.service.sessions
    acct = create_account(sessions, "alice", plan)
    key = create_key(sessions, acct)
    return Harness(app, client, key, acct, sessions)


def wait_for(client: Any, headers: dict[str, str], task_id: str, states: set[str], timeout: float = 120.0) -> dict[str, Any]:
    """Poll until the task reaches one of `states` (a wait for the machine, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/tasks/{task_id}", headers=headers).json()
        if body["state"] in states or time.monotonic() > deadline:
            return body
        time.sleep(0.02)
