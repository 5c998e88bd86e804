"""The durable queue and the ledger, driven directly (no HTTP, no worker threads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")

from sqlalchemy import func, select

from kinema.service import ledger
from kinema.service.accounts import create_account
from kinema.service.app import seed_plans
from kinema.service.db import LedgerEntry, Plan, Task, open_database
from kinema.service.jobs import Queue
from kinema.service.settings import Settings


@pytest.fixture
def sessions(tmp_path: Path):
    settings = Settings(data_dir=tmp_path)
    engine, s = open_database(settings.url)
    seed_plans(s, settings)
    yield s
    engine.dispose()


def submit(sessions, account_id: str, credits: int = 10, priority: int = 0, created: float | None = None) -> str:
    with sessions.begin() as s:
        t = Task(account_id=account_id, request_json="{}", resolved_json=json.dumps({"prompt": "x"}), body_hash="h", priority=priority,
                 state="queued", progress=0.0, step=0, total_steps=4, attempts=0, runs_started=0, cancel_requested=False, deleted=False, output_format="mp4")  # fmt: skip
        if created is not None:
            t.created_at = created
        s.add(t)
        s.flush()
        ledger.reserve(s, t, credits)
        return t.id


def balance(sessions, account_id: str) -> int:
    """The kept balance, checked against the sum of the account's entries."""
    with sessions() as s:
        kept = ledger.balance(s, account_id)
        assert kept == ledger.balance_from_entries(s, account_id)
        return kept


def task(sessions, tid: str) -> Task:
    with sessions() as s:
        return s.get(Task, tid)


def test_migrations_run_twice_and_create_every_table(tmp_path: Path) -> None:
    url = Settings(data_dir=tmp_path).url
    for _ in range(2):
        engine, s = open_database(url)
        with s() as session:
            assert session.scalar(select(func.count()).select_from(Plan)) == 0
        engine.dispose()


def test_upgrading_a_database_fills_each_balance_from_its_entries(tmp_path: Path) -> None:
    """A database made before accounts had a kept balance (revision 0001) gets the sum of each account's entries."""
    from kinema.service.db import make_engine, migrate

    engine = make_engine(Settings(data_dir=tmp_path).url)
    migrate(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO plans VALUES ('p', 0, 1, 0)")
        for acct in ("a", "b", "c"):
            conn.exec_driver_sql(f"INSERT INTO accounts VALUES ('{acct}', '{acct}', 'p', 0)")
        for acct, amount in (("a", 100), ("a", -30), ("a", 0), ("b", 5)):
            conn.exec_driver_sql(f"INSERT INTO ledger_entries (account_id, kind, amount, note, created_at) VALUES ('{acct}', 'k', {amount}, '', 0)")
    migrate(engine)
    with engine.connect() as conn:
        assert dict(conn.exec_driver_sql("SELECT id, balance FROM accounts").all()) == {"a": 70, "b": 5, "c": 0}
    engine.dispose()


def test_a_claims_queries_are_read_off_indexes(sessions) -> None:
    """Their cost must not grow with the queue or an account's history: no sort of every queued
    task for the candidates, no scan of the account's tasks to count its running ones."""
    from sqlalchemy.dialects import sqlite

    from kinema.service import jobs

    def plan(statement) -> str:
        sql = str(statement.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
        with sessions() as s:
            return " | ".join(row[-1] for row in s.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + sql))

    candidates = plan(jobs._CANDIDATES)
    assert "ix_tasks_queue" in candidates and "ORDER BY" not in candidates, candidates
    running = plan(jobs._RUNNING_OF.params(account_id="a"))
    assert "ix_tasks_account_state" in running, running


def test_warming_up_changes_nothing_and_leaves_the_database_free(sessions) -> None:
    acct = create_account(sessions, "a", "standard")
    tid = submit(sessions, acct, 10)
    q = Queue(sessions, lease_seconds=30, max_attempts=3)
    q.warm_up()
    t = task(sessions, tid)
    assert (t.state, t.attempts, t.lease_owner) == ("queued", 0, None)
    assert balance(sessions, acct) == 2000 - 10
    c = q.claim("w")  # the write lock was given back: a claim goes through at once
    assert c is not None and c.task_id == tid


def test_a_task_is_claimed_once(sessions) -> None:
    acct = create_account(sessions, "a", "pro")
    tid = submit(sessions, acct)
    q = Queue(sessions, lease_seconds=30, max_attempts=3)
    assert q.claim("w1").task_id == tid
    assert q.claim("w2") is None


def test_plan_priority_then_age(sessions) -> None:
    free = create_account(sessions, "f", "free")
    pro = create_account(sessions, "p", "pro")
    old_free = submit(sessions, free, priority=0, created=1.0)
    new_pro = submit(sessions, pro, priority=10, created=2.0)
    older_pro = submit(sessions, pro, priority=10, created=1.5)
    q = Queue(sessions, lease_seconds=30, max_attempts=3)
    assert [q.claim(f"w{i}").task_id for i in range(3)] == [older_pro, new_pro, old_free]


def test_concurrency_limit_per_plan(sessions) -> None:
    free = create_account(sessions, "f", "free")  # free: 1 at a time
    a, b = submit(sessions, free), submit(sessions, free)
    q = Queue(sessions, lease_seconds=30, max_attempts=3)
    assert q.claim("w1").task_id == a
    assert q.claim("w2") is None
    assert q.succeed(a, "w1", "x.mp4")
    assert q.claim("w2").task_id == b


def test_success_captures_failure_and_cancel_release(sessions) -> None:
    acct = create_account(sessions, "a", "pro")
    start = balance(sessions, acct)
    ok, bad, gone = submit(sessions, acct, 7), submit(sessions, acct, 5), submit(sessions, acct, 3)
    assert balance(sessions, acct) == start - 15
    q = Queue(sessions, lease_seconds=30, max_attempts=3)
    claims = {q.claim(f"w{i}").task_id: f"w{i}" for i in range(2)}
    assert set(claims) == {ok, bad}
    q.cancel(gone)
    assert q.succeed(ok, claims[ok], "ok.mp4") and q.fail(bad, claims[bad], "internal.generation", "boom")
    assert balance(sessions, acct) == start - 7
    assert (task(sessions, ok).credits_charged, task(sessions, bad).credits_charged, task(sessions, gone).credits_charged) == (7, 0, 0)
    assert task(sessions, gone).state == "cancelled"


def test_lost_worker_is_retried_then_failed_with_credits_released(sessions) -> None:
    acct = create_account(sessions, "a", "pro")
    start = balance(sessions, acct)
    tid = submit(sessions, acct, 9)
    q = Queue(sessions, lease_seconds=-1, max_attempts=2)  # every lease is already expired: a dead worker
    assert q.claim("w1").task_id == tid
    assert q.reap() == 1 and task(sessions, tid).state == "queued"
    assert q.claim("w2").attempt == 2
    assert q.reap() == 1
    t = task(sessions, tid)
    assert t.state == "failed" and t.error_code == "internal.worker_lost" and t.credits_charged == 0
    assert balance(sessions, acct) == start
    assert not q.succeed(tid, "w2", "late.mp4")  # the lost worker's late result is refused
    assert task(sessions, tid).state == "failed"


def test_heartbeat_keeps_the_lease_and_reports_a_cancel(sessions) -> None:
    acct = create_account(sessions, "a", "pro")
    tid = submit(sessions, acct)
    q = Queue(sessions, lease_seconds=30, max_attempts=3)
    q.claim("w1")
    assert q.heartbeat(tid, "w1", 2, 4) and task(sessions, tid).progress == 0.5
    assert not q.heartbeat(tid, "intruder")
    q.cancel(tid)
    assert task(sessions, tid).state == "running" and not q.heartbeat(tid, "w1")
    q.cancelled(tid, "w1")
    assert task(sessions, tid).state == "cancelled"


def test_ledger_sums_to_grants_minus_charges(sessions) -> None:
    acct = create_account(sessions, "a", "standard")
    for _ in range(3):
        submit(sessions, acct, 4)
    q = Queue(sessions, lease_seconds=30, max_attempts=3)
    c = q.claim("w")
    q.succeed(c.task_id, "w", "a.mp4")
    with sessions() as s:
        kinds = dict(s.execute(select(LedgerEntry.kind, func.sum(LedgerEntry.amount)).group_by(LedgerEntry.kind)).all())
    assert kinds["grant"] == 2000 and kinds["reserve"] == -12 and kinds["capture"] == 0
    assert balance(sessions, acct) == 2000 - 12  # two still reserved, one charged


def test_a_partial_charge_releases_the_rest_in_the_same_transaction(sessions) -> None:
    acct = create_account(sessions, "a", "standard")
    tids = [submit(sessions, acct, 10) for _ in range(3)]
    q = Queue(sessions, lease_seconds=30, max_attempts=3)
    for charge, expected in ((3, 3), (0, 0), (50, 10)):  # a charge above the reservation is capped at it
        c = q.claim("w")
        assert q.succeed(c.task_id, "w", "a.mp4", charge)
        assert task(sessions, c.task_id).credits_charged == expected
    assert sorted(t.credits_charged for t in (task(sessions, tid) for tid in tids)) == [0, 3, 10]
    assert balance(sessions, acct) == 2000 - 13
    with sessions() as s:
        released = s.scalars(select(LedgerEntry.amount).where(LedgerEntry.kind == "release")).all()
    assert sorted(released) == [7, 10]  # no release entry when the whole reservation is charged


def test_monthly_credits_are_granted_once_per_month(sessions) -> None:
    from kinema.service.accounts import month_of, refill_monthly
    from kinema.service.db import now

    acct = create_account(sessions, "a", "standard")
    assert balance(sessions, acct) == 2000
    assert refill_monthly(sessions, month_of(now())) == 0  # this month's grant came with the account
    assert refill_monthly(sessions, "2099-01") == 1 and refill_monthly(sessions, "2099-01") == 0
    assert refill_monthly(sessions, "2099-02", readers=sessions) == 1 and refill_monthly(sessions, "2099-02", readers=sessions) == 0  # looked at first without the write lock
    assert balance(sessions, acct) == 6000
