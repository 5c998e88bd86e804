"""The service on a real PostgreSQL: the same code, chosen by the database URL.

One throwaway server (pg_fixture: Debian's initdb/pg_ctl, a free port) for the
module, a fresh database per test. The queue and ledger tests and the API
lifecycle tests written for SQLite run here unchanged against PostgreSQL
(imported below, with the `sessions` and `h` fixtures pointed at it), plus
lifecycle checks that build their own app: cancel, failure, and claims racing
from many threads, where PostgreSQL's row locking (not SQLite's one writer)
is what keeps a task from running twice.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("fastapi")
pytest.importorskip("psycopg")

from pg_fixture import PostgresServer, find_postgres_bin, start_postgres  # noqa: E402
from service_helpers import FakeBackend, make_harness, wait_for  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from kinema.service import ledger  # noqa: E402
from kinema.service.accounts import create_account  # noqa: E402
from kinema.service.app import seed_plans  # noqa: E402
from kinema.service.db import LedgerEntry, Task, open_database  # noqa: E402
from kinema.service.jobs import Queue  # noqa: E402
from kinema.service.settings import Settings  # noqa: E402

# The SQLite suites' tests, run again here on PostgreSQL (pytest collects imported test functions).
from test_service_api import (  # noqa: E402, F401
    test_bad_input_is_a_coded_4xx_that_stores_and_charges_nothing,
    test_create_run_download_and_charge_what_was_quoted,
    test_events_stream_progress_until_terminal,
    test_idempotency_key_same_body_same_task_other_body_422,
    test_list_is_paged_filtered_and_private_to_the_account,
    test_not_enough_credits_is_402_and_stores_nothing,
)
from test_service_queue import (  # noqa: E402, F401
    submit,
    test_a_task_is_claimed_once,
    test_concurrency_limit_per_plan,
    test_heartbeat_keeps_the_lease_and_reports_a_cancel,
    test_ledger_sums_to_grants_minus_charges,
    test_lost_worker_is_retried_then_failed_with_credits_released,
    test_plan_priority_then_age,
    test_success_captures_failure_and_cancel_release,
)

pytestmark = pytest.mark.skipif(find_postgres_bin() is None, reason="PostgreSQL binaries not installed (apt-get install postgresql)")


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg: PostgresServer) -> str:
    return pg.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def sessions(pg_url: str, tmp_path: Path) -> Iterator[Any]:
    settings = Settings(data_dir=tmp_path, database_url=pg_url)
    engine, s = open_database(settings.url)
    assert engine.dialect.name == "postgresql"
    seed_plans(s, settings)
    yield s
    engine.dispose()


@pytest.fixture
def h(pg_url: str, tmp_path: Path) -> Iterator[Any]:
    harness = make_harness(tmp_path, FakeBackend, database_url=pg_url)
    assert harness.app.state.service.sessions.kw["bind"].dialect.name == "postgresql"
    yield harness
    harness.client.__exit__(None, None, None)



def ledger_total(sessions: Any, account_id: str) -> dict[str, int]:
    with sessions() as s:
        return dict(s.execute(select(LedgerEntry.kind, func.sum(LedgerEntry.amount)).where(LedgerEntry.account_id == account_id).group_by(LedgerEntry.kind)).all())


def test_migrations_run_twice_on_postgres(pg_url: str, tmp_path: Path) -> None:
    for _ in range(2):
        engine, _s = open_database(pg_url)
        with engine.connect() as conn:
            tables = set(conn.exec_driver_sql("select tablename from pg_tables where schemaname = 'public'").scalars())
        engine.dispose()
    assert {"plans", "accounts", "api_keys", "ledger_entries", "tasks", "webhook_outbox", "alembic_version"} <= tables


def test_submit_run_succeed_and_the_ledger_balances(h: Any) -> None:
    start = h.balance()
    ids = [h.client.post("/v1/tasks", json={"prompt": f"ball {i}", "seed": i}, headers=h.headers).json()["id"] for i in range(3)]
    done = [wait_for(h.client, h.headers, tid, {"succeeded", "failed", "cancelled"}) for tid in ids]
    assert [d["state"] for d in done] == ["succeeded"] * 3
    charged = sum(d["credits_charged"] for d in done)
    assert charged > 0 and h.balance() == start - charged
    kinds = ledger_total(h.sessions, h.account_id)
    assert kinds["grant"] - charged == h.balance()  # every reservation was captured or released: nothing left hanging
    assert kinds["reserve"] + kinds.get("release", 0) == -charged


def test_cancel_queued_and_running_on_postgres(pg_url: str, tmp_path: Path) -> None:
    gate = threading.Event()
    runs: dict[str, int] = {}
    h = make_harness(tmp_path, lambda: FakeBackend(gate=gate, runs=runs), plan="free", database_url=pg_url)  # free: one at a time
    try:
        before = h.balance()
        running = h.client.post("/v1/tasks", json={"prompt": "first", "steps": 20}, headers=h.headers).json()["id"]
        assert wait_for(h.client, h.headers, running, {"running"})["state"] == "running"
        queued = h.client.post("/v1/tasks", json={"prompt": "second"}, headers=h.headers).json()["id"]
        assert h.client.post(f"/v1/tasks/{queued}/cancel", headers=h.headers).json()["state"] == "cancelled"
        h.client.post(f"/v1/tasks/{running}/cancel", headers=h.headers)
        done = wait_for(h.client, h.headers, running, {"cancelled", "succeeded", "failed"})
        assert done["state"] == "cancelled" and done["step"] <= 2 < done["total_steps"]
        assert done["credits_charged"] == 0 and h.balance() == before
        assert runs.get("second", 0) == 0
    finally:
        gate.set()
        h.client.__exit__(None, None, None)


def test_failed_generation_releases_credits_on_postgres(pg_url: str, tmp_path: Path) -> None:
    h = make_harness(tmp_path, lambda: FakeBackend(fail_with=RuntimeError("boom")), database_url=pg_url)
    try:
        before = h.balance()
        tid = h.client.post("/v1/tasks", json={"prompt": "x"}, headers=h.headers).json()["id"]
        done = wait_for(h.client, h.headers, tid, {"failed", "succeeded"})
        assert done["state"] == "failed" and done["error"]["code"] == "internal.generation"
        assert done["credits_charged"] == 0 and h.balance() == before
    finally:
        h.client.__exit__(None, None, None)


def test_racing_claims_never_hand_out_a_task_twice(sessions: Any) -> None:
    """Eight workers claim at once, again and again: every task is claimed exactly once."""
    acct = create_account(sessions, "racer", "pro")
    tasks = {submit(sessions, acct, credits=1) for _ in range(40)}
    q = Queue(sessions, lease_seconds=30, max_attempts=3)
    claimed: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        barrier.wait()
        while True:
            c = q.claim(f"w{n}")
            if c is None:
                return
            with lock:
                claimed.append(c.task_id)
            assert q.succeed(c.task_id, f"w{n}", f"{c.task_id}.mp4")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(tasks)  # none lost, none twice
    with sessions() as s:
        assert s.scalar(select(func.max(Task.runs_started)).where(Task.account_id == acct)) == 1
        assert ledger.balance(s, acct) == 10_000 - 40


def test_simultaneous_claims_respect_the_plan_concurrency_limit(pg: PostgresServer, tmp_path: Path) -> None:
    exceeded = 0
    for round_ in range(5):
        url = pg.create_database(f"c_{uuid.uuid4().hex[:12]}")
        engine, s = open_database(url)
        seed_plans(s, Settings(data_dir=tmp_path, database_url=url))
        acct = create_account(s, "free-user", "free")  # free: one task at a time
        for _ in range(4):
            submit(s, acct)
        q = Queue(s, lease_seconds=30, max_attempts=3)
        barrier = threading.Barrier(6)
        got: list[str] = []

        def worker(n: int) -> None:
            barrier.wait()
            c = q.claim(f"w{n}")
            if c is not None:
                got.append(c.task_id)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        exceeded += len(got) > 1
        engine.dispose()
    assert exceeded == 0, f"{exceeded} of 5 rounds ran more than one task at once for a free account"
