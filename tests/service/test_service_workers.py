"""Workers in processes of their own, kill -9 durability, the database set-up, API-key caching, GPUs per Ray actor.

The subprocess tests start real processes (a worker, a uvicorn server) over a
SQLite file and kill them with SIGKILL; every wait is a wait for the machine,
never a speed assertion.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from service_helpers import FakeBackend, make_harness, wait_for  # noqa: E402
from sqlalchemy import select, text  # noqa: E402

from kinema.service import ledger  # noqa: E402
from kinema.service.accounts import create_account, create_key, revoke_key  # noqa: E402
from kinema.service.app import seed_plans  # noqa: E402
from kinema.service.db import LedgerEntry, Task, open_database  # noqa: E402
from kinema.service.executors import LocalExecutor, make_executor  # noqa: E402
from kinema.service.jobs import Queue  # noqa: E402
from kinema.service.settings import Settings  # noqa: E402
from kinema.service.submissions import Submission, SubmitWriter  # noqa: E402
from kinema.service.workers import run_worker_process  # noqa: E402

HERE = Path(__file__).resolve().parent
TERMINAL = {"succeeded", "failed", "cancelled"}


# -- settings and the database ---------------------------------------------------------------


def test_settings_allow_an_api_only_server_and_check_the_new_options(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path, workers=0).workers == 0
    for bad in ({"workers": -1}, {"sqlite_synchronous": "OFF"}, {"gpus_per_worker": -1.0}, {"auth_cache_seconds": -1.0}):
        with pytest.raises(ValueError):
            Settings(data_dir=tmp_path, **bad)
    assert isinstance(make_executor(Settings(data_dir=tmp_path, workers=0, executor="ray"), FakeBackend), LocalExecutor)


@pytest.mark.parametrize("mode, level", [("NORMAL", 1), ("FULL", 2)])
def test_sqlite_writer_is_one_wal_connection_with_the_chosen_sync(tmp_path: Path, mode: str, level: int) -> None:
    engine, sessions = open_database(Settings(data_dir=tmp_path).url, sqlite_synchronous=mode)
    try:
        assert engine.pool.size() == 1  # the writers of a process queue in the pool, not in SQLite's busy handler
        with sessions() as s:
            assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert s.execute(text("PRAGMA synchronous")).scalar() == level
    finally:
        engine.dispose()


def test_the_write_connection_is_handed_out_first_come_first_served() -> None:
    from kinema.service.db import FairSemaphore

    sem = FairSemaphore(1)
    assert sem.acquire(1.0)
    assert not sem.acquire(0.01)  # held: a waiter times out and leaves the queue
    order: list[int] = []

    def waiter(i: int) -> None:
        assert sem.acquire(60.0)
        order.append(i)
        sem.release()

    threads = []
    for i in range(5):
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        threads.append(t)
        while len(sem._waiters) < i + 1:  # queued in this order
            time.sleep(0.001)
    sem.release()
    for t in threads:
        t.join()
    assert order == [0, 1, 2, 3, 4]
    assert sem.acquire(0.01)  # all permits back


def test_concurrent_submits_and_claims_lose_nothing(tmp_path: Path) -> None:
    """16 threads submitting and 2 claiming at once through the one writer connection: every task stored once, ledger exact."""
    settings = Settings(data_dir=tmp_path)
    engine, sessions = open_database(settings.url)
    seed_plans(sessions, settings)
    acct = create_account(sessions, "a", "pro")
    from kinema.service.accounts import grant

    grant(sessions, acct, 100_000)
    q = Queue(sessions, lease_seconds=30, max_attempts=3)
    writer = SubmitWriter(engine)
    errors: list[BaseException] = []
    ids: list[str] = []
    claimed: list[str] = []
    done = threading.Event()

    def submitter(k: int) -> None:
        try:
            for i in range(25):
                fields = {"account_id": acct, "request_json": "{}", "resolved_json": json.dumps({"prompt": f"{k} {i}"}), "body_hash": "h", "idempotency_key": f"{k}-{i}"}
                outcome = writer.submit(Submission(fields, 3)).result()
                ids.append(outcome.task.id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def claimer(name: str) -> None:
        try:
            while not done.is_set():
                c = q.claim(name)
                if c is not None:
                    claimed.append(c.task_id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    subs = [threading.Thread(target=submitter, args=(k,)) for k in range(16)]
    claims = [threading.Thread(target=claimer, args=(f"w{k}",)) for k in range(2)]
    for t in subs + claims:
        t.start()
    for t in subs:
        t.join()
    writer.stop()
    done.set()
    for t in claims:
        t.join()
    while (c := q.claim("w-last")) is not None:  # fill the account's concurrency, if the claimers have not
        claimed.append(c.task_id)
    assert not errors, errors
    assert len(ids) == len(set(ids)) == 400
    assert len(claimed) == len(set(claimed)) == 4  # the pro plan runs 4 at a time: never a task claimed twice, never a 5th
    with sessions() as s:
        rows = s.scalars(select(Task)).all()
        assert {t.id for t in rows} == set(ids)
        assert {t.id for t in rows if t.state == "running"} == set(claimed)
        reserves = s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "reserve")).all()
        assert sorted(e.task_id for e in reserves) == sorted(ids) and all(e.amount == -3 for e in reserves)
        assert ledger.balance(s, acct) == 10_000 + 100_000 - 3 * 400
    engine.dispose()


# -- API keys ------------------------------------------------------------------------------------


def test_a_revoked_key_is_refused_once_the_cache_forgets_it(tmp_path: Path) -> None:
    h = make_harness(tmp_path / "cached", FakeBackend)
    try:
        assert h.client.get("/v1/account", headers=h.headers).status_code == 200  # now cached
        revoke_key(h.sessions, h.key[:8])  # as `kinema admin revoke-key` does, from another process
        assert h.client.get("/v1/account", headers=h.headers).status_code == 200  # within auth_cache_seconds: still known
        h.app.state.key_cache.forget()
        r = h.client.get("/v1/account", headers=h.headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "auth.invalid"
        new = create_key(h.sessions, h.account_id)  # a new key works at once (misses are never cached)
        assert h.client.get("/v1/account", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    finally:
        h.client.__exit__(None, None, None)
    h = make_harness(tmp_path / "uncached", FakeBackend, auth_cache_seconds=0)
    try:
        assert h.client.get("/v1/account", headers=h.headers).status_code == 200
        revoke_key(h.sessions, h.key[:8])
        assert h.client.get("/v1/account", headers=h.headers).status_code == 401
    finally:
        h.client.__exit__(None, None, None)


# -- worker processes ----------------------------------------------------------------------------


def test_an_api_only_server_and_a_worker_process_share_the_queue(tmp_path: Path) -> None:
    """`kinema serve --workers 0` runs no job; `run_worker_process` (what `kinema worker` runs) does."""
    h = make_harness(tmp_path, FakeBackend, workers=0)
    stop = threading.Event()
    ready = threading.Event()
    settings = Settings(data_dir=tmp_path, workers=1, poll_seconds=0.02, reap_seconds=0.1, lease_seconds=5.0)
    try:
        task = h.client.post("/v1/tasks", json={"prompt": "a ball", "seed": 2}, headers=h.headers).json()
        time.sleep(0.3)
        assert h.client.get(f"/v1/tasks/{task['id']}", headers=h.headers).json()["state"] == "queued"  # nobody runs it in the API process
        runner = threading.Thread(target=run_worker_process, args=(settings, FakeBackend, stop), kwargs={"ready": ready.set})
        runner.start()
        done = wait_for(h.client, h.headers, task["id"], TERMINAL)
        assert done["state"] == "succeeded" and done["progress"] == 1.0, done
        assert h.client.get(done["download_url"], headers=h.headers).status_code == 200
        assert ready.is_set()
    finally:
        stop.set()
        h.client.__exit__(None, None, None)
    runner.join()


WORKER_SCRIPT = textwrap.dedent(
    """
    import functools, signal, sys, threading
    sys.path[:0] = [{tests!r}, {service_tests!r}]
    from service_helpers import FakeBackend
    from kinema.service.settings import Settings
    from kinema.service.workers import run_worker_process
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = Settings(data_dir={data!r}, workers=1, poll_seconds=0.05, reap_seconds=0.2, lease_seconds={lease})
    run_worker_process(settings, functools.partial(FakeBackend, step_delay=0.05), stop, ready=lambda: print("ready", flush=True))
    """
)


def start_worker_process(data: Path, lease: float) -> subprocess.Popen:
    code = WORKER_SCRIPT.format(tests=str(HERE.parent), service_tests=str(HERE), data=str(data), lease=lease)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"ready")
    return proc


def test_a_killed_worker_process_s_task_runs_again_elsewhere(tmp_path: Path) -> None:
    """kill -9 of the worker process mid-job: the lease runs out, the API's reaper re-queues it, another worker process finishes it."""
    h = make_harness(tmp_path, FakeBackend, workers=0, lease_seconds=2.0, plan="pro")
    procs: list[subprocess.Popen] = []
    try:
        before = h.balance()
        task = h.client.post("/v1/tasks", json={"prompt": "a red ball", "seed": 9, "steps": 60}, headers=h.headers).json()
        procs.append(start_worker_process(tmp_path, lease=2.0))
        running = wait_for(h.client, h.headers, task["id"], {"running", *TERMINAL})
        assert running["state"] == "running", running
        deadline = time.monotonic() + 120
        while h.client.get(f"/v1/tasks/{task['id']}", headers=h.headers).json()["step"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # mid-job: some steps done
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        procs.append(start_worker_process(tmp_path, lease=2.0))
        done = wait_for(h.client, h.headers, task["id"], TERMINAL, timeout=300)
        assert done["state"] == "succeeded", done
        assert done["attempts"] == 2
        after = h.balance()
        assert after == before - done["credits_charged"] and done["credits_charged"] == done["credits_reserved"] > 0
        with h.sessions() as s:
            kinds = sorted(e.kind for e in s.scalars(select(LedgerEntry).where(LedgerEntry.task_id == task["id"])))
            assert kinds == ["capture", "reserve"]  # charged once, although it started twice
            assert s.get(Task, task["id"]).runs_started == 2
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            p.wait()
        h.client.__exit__(None, None, None)


SERVER_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path[:0] = [{tests!r}, {service_tests!r}]
    import uvicorn
    from service_helpers import FakeBackend
    from kinema.service.app import create_app
    from kinema.service.settings import Settings
    app = create_app(Settings(data_dir={data!r}, workers=0, sqlite_synchronous={sync!r}), FakeBackend)
    uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning")
    """
)


@pytest.mark.parametrize("sync", ["NORMAL", "FULL"])
def test_a_created_task_survives_kill_9_right_after_its_201(tmp_path: Path, sync: str) -> None:
    import httpx

    data = tmp_path / "data"
    data.mkdir()
    engine, sessions = open_database(Settings(data_dir=data).url)
    seed_plans(sessions, Settings(data_dir=data))
    acct = create_account(sessions, "alice", "pro")
    key = create_key(sessions, acct)
    engine.dispose()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = SERVER_SCRIPT.format(tests=str(HERE.parent), service_tests=str(HERE), data=str(data), port=port, sync=sync)
    server = subprocess.Popen([sys.executable, "-c", code])
    created: list[str] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            deadline = time.monotonic() + 300
            while True:
                try:
                    c.get("/openapi.json")
                    break
                except httpx.TransportError:
                    assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
                    time.sleep(0.1)
            for i in range(5):
                r = c.post("/v1/tasks", json={"prompt": f"ball {i}", "seed": i}, headers={"Authorization": f"Bearer {key}"})
                assert r.status_code == 201, r.text
                created.append(r.json()["id"])
        os.kill(server.pid, signal.SIGKILL)  # the instant after the last 201
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
    conn = sqlite3.connect(data / "kinema.db")
    try:
        stored = {row[0]: row[1] for row in conn.execute("SELECT id, state FROM tasks")}
        reserved = {row[0] for row in conn.execute("SELECT task_id FROM ledger_entries WHERE kind = 'reserve'")}
    finally:
        conn.close()
    assert set(created) <= set(stored) and set(created) <= reserved
    assert all(stored[t] == "queued" for t in created)


# -- Ray actors: GPUs per worker -----------------------------------------------------------------


def test_gpus_per_worker_reaches_the_ray_actor_options(tmp_path: Path) -> None:
    """No GPU and no cluster needed: the option's path from Settings to `ray.remote(num_gpus=...)`."""
    pytest.importorskip("ray")
    from kinema.service.executors.ray import RayPool

    pool = make_executor(Settings(data_dir=tmp_path, executor="ray", workers=2, gpus_per_worker=0.5), functools.partial(FakeBackend))
    assert isinstance(pool, RayPool)
    assert pool.config.gpus_per_actor == 0.5 and pool.config.actors == 2
    assert pool.actor_options()["num_gpus"] == 0.5
    remote = pool._remote_worker()  # the actor class as Ray will create it (decorating needs no cluster)
    options = getattr(remote, "_default_options", None)
    if options is not None:
        assert options["num_gpus"] == 0.5 and options["max_concurrency"] == 2
    cpu_pool = make_executor(Settings(data_dir=tmp_path, executor="ray", workers=1), functools.partial(FakeBackend))
    assert cpu_pool.actor_options()["num_gpus"] == 0.0  # the default runs on CPUs
    with pytest.raises(RuntimeError, match="need 1 GPUs; the Ray cluster has 0"):  # refused up front, not a hang waiting for GPUs
        pool._actor_count({"CPU": 2.0})
    assert pool._actor_count({"CPU": 2.0, "GPU": 1.0}) == 2


def test_serve_passes_gpus_per_worker_to_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    import kinema.service.app as app_module
    from kinema.cli import app

    seen: dict[str, Settings] = {}
    monkeypatch.setattr(app_module, "create_app", lambda settings, factory, **kw: seen.setdefault("settings", settings))
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: None)
    r = CliRunner().invoke(app, ["serve", "--executor", "ray", "--workers", "2", "--gpus-per-worker", "1", "--data-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert seen["settings"].gpus_per_worker == 1.0 and seen["settings"].workers == 2 and seen["settings"].executor == "ray"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are a Linux feature")
def test_worker_threads_run_at_a_lower_cpu_priority_than_the_api(tmp_path: Path) -> None:
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    if base + 3 > 19:
        pytest.skip("the test process already runs at the lowest priority")
    h = make_harness(tmp_path, FakeBackend, workers=1, worker_nice=3)
    try:
        worker = next(t for t in threading.enumerate() if t.name == "kinema-worker-0")
        deadline = time.monotonic() + 60
        while os.getpriority(os.PRIO_PROCESS, worker.native_id) == base and time.monotonic() < deadline:
            time.sleep(0.01)  # the thread lowers its own priority as its loop starts
        assert os.getpriority(os.PRIO_PROCESS, worker.native_id) == base + 3
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the API's threads keep theirs
        task = h.client.post("/v1/tasks", json={"prompt": "a red ball", "seed": 1}, headers=h.headers).json()
        assert wait_for(h.client, h.headers, task["id"], {"succeeded", "failed"})["state"] == "succeeded"
    finally:
        h.client.__exit__(None, None, None)


def test_worker_nice_outside_0_to_19_is_refused() -> None:
    with pytest.raises(ValueError, match="worker_nice must be in 0..19"):
        Settings(worker_nice=20)
