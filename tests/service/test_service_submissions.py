"""Group commit of creates (submissions.py): a batch behaves as its creates one after another, in order."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")

from sqlalchemy import false, select
from sqlalchemy.exc import OperationalError

from kinema.service import ledger, submissions
from kinema.service.accounts import create_account, grant, upsert_plan
from kinema.service.app import seed_plans
from kinema.service.db import LedgerEntry, Task, make_engine, open_database
from kinema.service.ledger import InsufficientCredits
from kinema.service.settings import Settings
from kinema.service.submissions import LoopWriter, Stored, Submission, SubmitWriter, store


@pytest.fixture
def db(tmp_path: Path):
    settings = Settings(data_dir=tmp_path)
    engine, s = open_database(settings.url)
    seed_plans(s, settings)
    upsert_plan(s, "empty", monthly_credits=0, concurrency=1, priority=0)
    yield settings, engine, s
    engine.dispose()


@pytest.fixture
def sessions(db):
    return db[2]


@pytest.fixture
def engine(db):
    return db[1]


def account(sessions, name: str, credits: int) -> str:
    acct = create_account(sessions, name, "empty", grant_monthly=False)
    grant(sessions, acct, credits)
    return acct


def sub(acct: str, credits: int, key: str | None = None, body_hash: str = "h") -> Submission:
    fields = {"account_id": acct, "request_json": "{}", "resolved_json": json.dumps({"prompt": "x"}), "body_hash": body_hash, "idempotency_key": key}
    return Submission(fields, credits)


def store_batch(sessions, batch: list[Submission]) -> list:
    with sessions.begin() as s:
        return store(s.connection(), batch)


def test_a_batch_is_its_creates_in_order(sessions) -> None:
    a, b = account(sessions, "a", 10), account(sessions, "b", 5)
    out = store_batch(sessions, [
        sub(a, 6, "k1"),            # stored: a has 4 left
        sub(a, 6, "k2"),            # refused: 6 > 4, stores nothing
        sub(b, 5, "k1"),            # another account's k1 is its own: stored
        sub(a, 4, "k2"),            # k2 was refused above, so it is free: stored, a has 0
        sub(a, 1, "k1", "other"),   # a's k1 again: the first task (the caller compares the hash)
        sub(a, 1),                  # no key, nothing left: refused
    ])  # fmt: skip
    kinds = [type(o).__name__ if not isinstance(o, Stored) else ("created" if o.created else "earlier") for o in out]
    assert kinds == ["created", "InsufficientCredits", "created", "created", "earlier", "InsufficientCredits"]
    assert out[4].task.id == out[0].task.id and out[4].task.body_hash == "h"
    assert (out[1].needed, out[1].balance) == (6, 4) and (out[5].needed, out[5].balance) == (1, 0)
    with sessions() as s:
        stored = {t.id for t in s.scalars(select(Task))}
        assert stored == {out[0].task.id, out[2].task.id, out[3].task.id}
        reserves = {e.task_id: e.amount for e in s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "reserve"))}
        assert reserves == {out[0].task.id: -6, out[2].task.id: -5, out[3].task.id: -4}
        assert ledger.balance(s, a) == 0 and ledger.balance(s, b) == 0


def test_a_key_stored_in_an_earlier_batch_returns_its_task(sessions) -> None:
    a = account(sessions, "a", 10)
    first = store_batch(sessions, [sub(a, 3, "k")])[0]
    again = store_batch(sessions, [sub(a, 3, "k")])[0]
    assert isinstance(again, Stored) and not again.created and again.task.id == first.task.id
    assert again.task.credits_reserved == 3 and again.task.state == "queued"
    with sessions() as s:
        assert ledger.balance(s, a) == 7  # reserved once


def test_the_writer_groups_concurrent_creates_and_loses_none(sessions, engine) -> None:
    a = account(sessions, "a", 1_000)
    writer = SubmitWriter(engine)
    futures = []
    barrier = threading.Barrier(8)

    def client(k: int) -> None:
        barrier.wait()
        for i in range(40):
            futures.append(writer.submit(sub(a, 1, f"{k}-{i}")))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcomes = [f.result(timeout=30) for f in futures]
    writer.stop()
    assert all(isinstance(o, Stored) and o.created for o in outcomes)
    assert len({o.task.id for o in outcomes}) == 320 and writer.stored == 320
    assert writer.batches < 320  # some creates shared a transaction
    with sessions() as s:
        assert len(s.scalars(select(Task)).all()) == 320
        assert ledger.balance(s, a) == 1_000 - 320 == ledger.balance_from_entries(s, a)


def test_a_key_taken_by_another_transaction_falls_back_to_one_create_each(sessions, engine, monkeypatch) -> None:
    """PostgreSQL with several API processes: a batch's insert can meet a key committed after its lookup."""
    a = account(sessions, "a", 10)
    racer = store_batch(sessions, [sub(a, 2, "k")])[0]  # another process's create with key "k", committed
    real_store, real_keyed, calls = submissions.store, submissions._KEYED, []

    def racing_store(conn, batch):
        calls.append(len(batch))
        if len(calls) == 1:  # hold the writer in its first batch so that the next two creates queue up together
            holding.set()
            release.wait(5)
        if len(batch) > 1:  # this batch looked before the other commit: its lookup does not see "k"
            monkeypatch.setattr(submissions, "_KEYED", real_keyed.where(false()))
            try:
                return real_store(conn, batch)  # the insert meets the unique key: IntegrityError
            finally:
                monkeypatch.setattr(submissions, "_KEYED", real_keyed)
        return real_store(conn, batch)

    monkeypatch.setattr(submissions, "store", racing_store)
    holding, release = threading.Event(), threading.Event()
    writer = SubmitWriter(engine)
    writer.submit(sub(a, 0))
    assert holding.wait(5)
    futures = [writer.submit(sub(a, 2, "k")), writer.submit(sub(a, 3, "other"))]
    release.set()
    keyed, other = (f.result(timeout=30) for f in futures)
    writer.stop()
    assert calls == [1, 2, 1, 1]  # the first create, the batch that raced, then each of its creates alone
    assert not keyed.created and keyed.task.id == racer.task.id and other.created  # the key's task is the winner's
    with sessions() as s:
        assert ledger.balance(s, a) == 10 - 2 - 3


def test_a_failed_batch_answers_every_create_and_stores_nothing(sessions, engine, monkeypatch) -> None:
    a = account(sessions, "a", 10)

    def broken(conn, batch):
        store(conn, batch)
        raise RuntimeError("disk full")

    monkeypatch.setattr(submissions, "store", broken)
    writer = SubmitWriter(engine)
    fut = writer.submit(sub(a, 2, "k"))
    with pytest.raises(RuntimeError, match="disk full"):
        fut.result(timeout=30)
    writer.stop()
    with sessions() as s:
        assert s.scalars(select(Task)).all() == [] and ledger.balance(s, a) == 10  # rolled back


def test_insufficient_credits_names_need_and_balance() -> None:
    assert str(InsufficientCredits(6, 4)) == "this task costs 6 credits; the balance is 4"


# -- the event-loop writer (SQLite) ----------------------------------------------------------------


def loop_writer(settings: Settings, **kw) -> LoopWriter:
    return LoopWriter(make_engine(settings.url, busy_seconds=0), **kw)


def hold_write_lock(settings: Settings) -> sqlite3.Connection:
    """Another connection (another process, say) in a write transaction: SQLite's write lock is taken."""
    holder = sqlite3.connect(settings.data_dir / "kinema.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_the_loop_writer_stores_one_pass_of_creates_in_one_transaction(db) -> None:
    settings, _, sessions = db
    a = account(sessions, "a", 10)
    writer = loop_writer(settings)

    async def burst():
        return await asyncio.gather(*(writer.submit_async(sub(a, 3, f"k{i}")) for i in range(4)), writer.submit_async(sub(a, 1, "k0")))

    out = asyncio.run(burst())
    assert [o.created if isinstance(o, Stored) else "refused" for o in out] == [True, True, True, "refused", False]
    assert out[4].task.id == out[0].task.id and writer.batches == 1 and writer.stored == 3
    with sessions() as s:
        assert ledger.balance(s, a) == 1
    writer.stop()


def test_the_loop_writer_never_waits_for_a_held_write_lock(db) -> None:
    """Another connection holds SQLite's write lock: the loop keeps running and the create is stored once it is free."""
    settings, _, sessions = db
    a = account(sessions, "a", 10)
    writer = loop_writer(settings, retry_seconds=0.001)
    holder = hold_write_lock(settings)
    ticks = []

    async def main():
        async def ticker():  # the loop keeps turning while the lock is held
            while len(ticks) < 20:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.005)

        async def release_later():
            await asyncio.sleep(0.1)
            holder.execute("COMMIT")

        outcome, *_ = await asyncio.gather(writer.submit_async(sub(a, 4, "k")), ticker(), release_later())
        return outcome

    outcome = asyncio.run(main())
    holder.close()
    assert isinstance(outcome, Stored) and outcome.created and writer.lock_retries > 0
    assert len(ticks) == 20 and max(b - a for a, b in zip(ticks, ticks[1:])) < 0.1  # never blocked for the lock's 100 ms
    with sessions() as s:
        assert ledger.balance(s, a) == 6
    writer.stop()


def test_the_loop_writer_gives_up_after_busy_seconds_and_stores_nothing(db) -> None:
    settings, _, sessions = db
    a = account(sessions, "a", 10)
    writer = loop_writer(settings, retry_seconds=0.001, busy_seconds=0.05)
    holder = hold_write_lock(settings)
    with pytest.raises(OperationalError, match="locked"):
        asyncio.run(writer.submit_async(sub(a, 4, "k")))
    holder.execute("ROLLBACK")
    holder.close()
    with sessions() as s:
        assert s.scalars(select(Task)).all() == [] and ledger.balance(s, a) == 10
    writer.stop()


def test_the_loop_writer_takes_creates_from_other_threads(db) -> None:
    settings, _, sessions = db
    a = account(sessions, "a", 10)
    writer = loop_writer(settings)

    async def main():
        writer.start(asyncio.get_running_loop())
        return await asyncio.to_thread(lambda: writer.submit(sub(a, 2, "t")).result(timeout=10))

    assert asyncio.run(main()).created
    with sessions() as s:
        assert ledger.balance(s, a) == 8
    writer.stop()
