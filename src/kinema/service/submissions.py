"""Group commit for task creates: every create waiting at one moment goes into one write transaction.

Why: SQLite has one writer at a time, and the commit is the costly part of a
short transaction on any database. With one transaction per create, creates
under load queue for the write lock one by one, each paying its own begin,
idempotency lookup, balance query and commit, plus a thread hop to get there.
Here each create is handed to one writer thread, which takes every create that
is waiting when it is free and stores them together: the lookups and the
commit are paid once per batch. A create is still answered only after its
commit, so a task the API answered 201 for is never lost.

Each create keeps its own outcome, exactly as if the batch's creates had run
one after another in arrival order: a create refused for credits stores
nothing and does not affect the others; a second create with an account's
Idempotency-Key gets the task the first one made.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError

from kinema.service.db import QUEUED, Account, LedgerEntry, Plan, Task, new_id, now
from kinema.service.ledger import INSERT_ENTRY, InsufficientCredits

MAX_BATCH = 256  # creates per transaction: bounds the time the write lock is held

# Built once (compiled once, then only executed).
_PLAN_PRIORITY = select(Plan.priority).join(Account, Account.plan == Plan.name).where(Account.id == bindparam("plan_of")).scalar_subquery()
_INSERT_TASK = insert(Task.__table__).values(priority=func.coalesce(_PLAN_PRIORITY, 0))

_LOCK_ACCOUNTS = select(Account.id).where(Account.id.in_(bindparam("ids", expanding=True))).order_by(Account.id).with_for_update()
_BALANCES = (
    select(LedgerEntry.account_id, func.coalesce(func.sum(LedgerEntry.amount), 0))
    .where(LedgerEntry.account_id.in_(bindparam("ids", expanding=True)))
    .group_by(LedgerEntry.account_id)
)
_KEYED = select(Task.__table__).where(Task.account_id.in_(bindparam("ids", expanding=True)), Task.idempotency_key.in_(bindparam("keys", expanding=True)))


@dataclass(frozen=True)
class Submission:
    """One create: the Task columns the caller knows (account_id, request_json, resolved_json, body_hash,
    output_format, total_steps; optionally id, idempotency_key, callback_url) and the credits to reserve."""

    fields: dict[str, Any]
    credits: int


class TaskRecord(SimpleNamespace):
    """A task row as plain attributes (the columns of db.Task), for a create's answer.

    Not a db.Task: nothing here goes through a session, and the ORM's instrumented
    constructor would cost every create some 7% more CPU."""

    @classmethod
    def new(cls, values: dict[str, Any]) -> TaskRecord:
        """A task just inserted: the columns the insert left to their defaults, as a fresh row has them."""
        unset = dict.fromkeys(("error_code", "error_message", "credits_charged", "lease_owner", "lease_expires_at", "heartbeat_at", "started_at", "finished_at", "output_path"))
        return cls(**unset, **values)


@dataclass(frozen=True)
class Stored:
    """A create's task: made now (`created`), or made earlier with the same Idempotency-Key (the caller compares body hashes)."""

    task: TaskRecord
    created: bool


Outcome = Stored | InsufficientCredits


def task_row(sub: Submission) -> dict[str, Any]:
    """The new task's row (its priority is the plan's, read by the insert itself)."""
    values: dict[str, Any] = {
        "state": QUEUED, "progress": 0.0, "step": 0, "attempts": 0, "runs_started": 0, "cancel_requested": False,
        "deleted": False, "idempotency_key": None, "callback_url": None, "output_format": "mp4", "total_steps": 0,
        **sub.fields, "credits_reserved": sub.credits, "created_at": now(),
    }  # fmt: skip
    values.setdefault("id", new_id())
    return values


def store(conn: Connection, batch: Sequence[Submission]) -> list[Outcome]:
    """Store a batch of creates in the caller's write transaction (which the caller commits); one outcome each, in order.

    The accounts are locked first (PostgreSQL; SQLite's IMMEDIATE transaction holds the
    whole database), so creates in other transactions cannot spend the same credits.
    Raises IntegrityError only if another transaction inserted one of these
    Idempotency-Keys after the lookup (PostgreSQL with several API processes): store again.
    """
    account_ids = sorted({sub.fields["account_id"] for sub in batch})
    conn.execute(_LOCK_ACCOUNTS, {"ids": account_ids})
    keys = sorted({k for sub in batch if (k := sub.fields.get("idempotency_key")) is not None})
    keyed: dict[tuple[str, str], TaskRecord] = {}
    if keys:
        for row in conn.execute(_KEYED, {"ids": account_ids, "keys": keys}):
            keyed[(row.account_id, row.idempotency_key)] = TaskRecord(**row._asdict())
    balances = {account_id: int(total) for account_id, total in conn.execute(_BALANCES, {"ids": account_ids})}
    outcomes: list[Outcome] = []
    rows: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    for sub in batch:
        account_id, key = sub.fields["account_id"], sub.fields.get("idempotency_key")
        earlier = keyed.get((account_id, key)) if key is not None else None
        if earlier is not None:
            outcomes.append(Stored(earlier, created=False))
            continue
        have = balances.get(account_id, 0)
        if sub.credits > have:
            outcomes.append(InsufficientCredits(sub.credits, have))
            continue
        balances[account_id] = have - sub.credits
        values = task_row(sub)
        rows.append({**values, "plan_of": account_id})
        entries.append({"account_id": account_id, "task_id": values["id"], "kind": "reserve", "amount": -sub.credits, "note": "reserved at submit", "created_at": values["created_at"]})
        task = TaskRecord.new(values)
        if key is not None:
            keyed[(account_id, key)] = task
        outcomes.append(Stored(task, created=True))
    if rows:
        conn.execute(_INSERT_TASK, rows)
        conn.execute(INSERT_ENTRY, entries)
    return outcomes


class SubmitWriter:
    """The thread that stores creates in batches (`store`), one write transaction per batch.

    `submit` from any thread returns a Future; `submit_async` awaits it on the event loop.
    The thread starts with the first create and stops (after storing what is queued) at `stop`.
    """

    def __init__(self, sessions: Any, max_batch: int = MAX_BATCH) -> None:
        self.sessions = sessions
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[Submission, Future[Outcome]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0  # transactions committed (for tests and benchmarks: how well creates were grouped)
        self.stored = 0

    def submit(self, sub: Submission) -> Future[Outcome]:
        fut: Future[Outcome] = Future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="kinema-submit", daemon=True)
                self._thread.start()
            self._queue.put((sub, fut))
        return fut

    async def submit_async(self, sub: Submission) -> Outcome:
        return await asyncio.wrap_future(self.submit(sub))

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stopping = False
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            self._write(batch)
            if stopping:
                return

    def _write(self, batch: list[tuple[Submission, Future[Outcome]]]) -> None:
        try:
            outcomes = self._store([sub for sub, _ in batch])
        except IntegrityError:  # a concurrent transaction took one of the keys: store each alone
            for sub, fut in batch:
                self._write_one(sub, fut)
            return
        except BaseException as exc:  # noqa: BLE001 - every waiting create must hear of it (nothing was stored)
            for _, fut in batch:
                fut.set_exception(exc)
            return
        for (_, fut), outcome in zip(batch, outcomes, strict=True):
            fut.set_result(outcome)

    def _write_one(self, sub: Submission, fut: Future[Outcome]) -> None:
        try:
            try:
                outcome = self._store([sub])[0]
            except IntegrityError:  # its key's task is committed now: the lookup finds it
                outcome = self._store([sub])[0]
        except BaseException as exc:  # noqa: BLE001
            fut.set_exception(exc)
            return
        fut.set_result(outcome)

    def _store(self, subs: list[Submission]) -> list[Outcome]:
        with self.sessions.begin() as s:
            outcomes = store(s.connection(), subs)
        self.batches += 1
        self.stored += sum(1 for o in outcomes if isinstance(o, Stored) and o.created)
        return outcomes
