"""Group commit for task creates: every create waiting at one moment goes into one write transaction.

Why: SQLite has one writer at a time, and the commit is the costly part of a
short transaction on any database. With one transaction per create, creates
under load queue for the write lock one by one, each paying its own begin,
idempotency lookup, balance read and commit, plus a thread hop to get there.
Here one writer takes every create that is waiting when it is free and stores
them together: the lookups and the commit are paid once per batch. The writer
is the event loop itself for SQLite in an API-only process (LoopWriter), and a
thread otherwise (SubmitWriter; app.make_submit_writer says when). A create is
still answered only after its commit, so a task the API answered 201 for is
never lost.

Each create keeps its own outcome, exactly as if the batch's creates had run
one after another in arrival order: a create refused for credits stores
nothing and does not affect the others; a second create with an account's
Idempotency-Key gets the task the first one made.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError

from kinema.service.db import QUEUED, Account, Plan, Task, new_id, now
from kinema.service.ledger import INSERT_ENTRY, MOVE_BALANCE, InsufficientCredits

MAX_BATCH = 256  # creates per transaction: bounds the time the write lock is held

# Built once (compiled once, then only executed).
_PLAN_PRIORITY = select(Plan.priority).join(Account, Account.plan == Plan.name).where(Account.id == bindparam("plan_of")).scalar_subquery()
_INSERT_TASK = insert(Task.__table__).values(priority=func.coalesce(_PLAN_PRIORITY, 0))

_LOCK_BALANCES = select(Account.id, Account.balance).where(Account.id.in_(bindparam("ids", expanding=True))).order_by(Account.id).with_for_update()
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


@dataclass(frozen=True)
class Failed:
    """A create that could not be stored (its caller hears `error`), as opposed to an Outcome it is answered with."""

    error: BaseException

Begin = Callable[[], AbstractContextManager[Connection]]  # a write transaction that commits on exit (Engine.begin)


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

    The accounts are locked first as their balances are read (PostgreSQL; SQLite's IMMEDIATE
    transaction holds the whole database), so creates in other transactions cannot spend
    the same credits.
    Raises IntegrityError only if another transaction inserted one of these
    Idempotency-Keys after the lookup (PostgreSQL with several API processes): store again.
    """
    account_ids = sorted({sub.fields["account_id"] for sub in batch})
    balances = {account_id: int(total) for account_id, total in conn.execute(_LOCK_BALANCES, {"ids": account_ids})}
    keys = sorted({k for sub in batch if (k := sub.fields.get("idempotency_key")) is not None})
    keyed: dict[tuple[str, str], TaskRecord] = {}
    if keys:
        for row in conn.execute(_KEYED, {"ids": account_ids, "keys": keys}):
            keyed[(row.account_id, row.idempotency_key)] = TaskRecord(**row._asdict())
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
        spent: dict[str, int] = {}
        for entry in entries:
            spent[entry["account_id"]] = spent.get(entry["account_id"], 0) + entry["amount"]
        conn.execute(MOVE_BALANCE, [{"account": account_id, "delta": delta} for account_id, delta in spent.items()])
    return outcomes


def store_all(begin: Begin, subs: Sequence[Submission]) -> list[Outcome | Failed]:
    """`store` the batch in one transaction from `begin()` (e.g. Engine.begin), which commits it.

    If another transaction took one of the batch's Idempotency-Keys after the lookup
    (IntegrityError: PostgreSQL with several API processes), each create is stored alone,
    where the lookup then finds it; one create's failure there is that create's alone.
    Any other error is raised: nothing of the batch was stored.
    """
    try:
        with begin() as conn:
            return list(store(conn, subs))
    except IntegrityError:
        return [_store_one(begin, sub) for sub in subs]


def _store_one(begin: Begin, sub: Submission) -> Outcome | Failed:
    try:
        try:
            with begin() as conn:
                return store(conn, [sub])[0]
        except IntegrityError:  # its key's task is committed now: the lookup finds it
            with begin() as conn:
                return store(conn, [sub])[0]
    except Exception as exc:  # noqa: BLE001 - this create's answer
        return Failed(exc)


def warm_up(begin: Begin) -> None:
    """One store of a made-up create, rolled back: the first real creates then do not pay for compiling
    and preparing the statements (some 10 ms, which a burst of creates at start-up all waited for)."""

    class _RollBack(Exception):
        pass

    try:
        with begin() as conn:
            plan = conn.execute(select(Plan.name).limit(1)).scalar()
            if plan is not None:
                account_id = new_id()
                conn.execute(insert(Account.__table__).values(id=account_id, name=f"warm-up {account_id}", plan=plan, created_at=now()))
                fields = {"account_id": account_id, "request_json": "{}", "resolved_json": "{}", "body_hash": "", "idempotency_key": "warm-up"}
                store(conn, [Submission(fields, 0)])
            raise _RollBack
    except _RollBack:
        pass


class SubmitWriter:
    """A thread that stores creates in batches (`store_all`), one write transaction per batch.

    For a database across the network (PostgreSQL), whose waits must not stop the event
    loop, and for SQLite when worker threads share the process: on the process's one write
    connection their writes and these batches take turns first come, first served.
    `submit` from any thread returns a Future; `submit_async` awaits it on the event loop.
    The thread starts with the first create and stops (after storing what is queued) at `stop`.
    """

    def __init__(self, engine: Engine, max_batch: int = MAX_BATCH) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[Submission, Future[Outcome]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0  # transactions committed (for tests and benchmarks: how well creates were grouped)
        self.stored = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Nothing to do: the thread starts with the first create."""

    def warm_up(self) -> None:
        warm_up(self.engine.begin)

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
            try:
                outcomes = store_all(self.engine.begin, [sub for sub, _ in batch])
            except BaseException as exc:  # noqa: BLE001 - every waiting create must hear of it (nothing was stored)
                outcomes = [Failed(exc)] * len(batch)
            self.batches += 1
            self.stored += created_count(outcomes)
            for (_, fut), outcome in zip(batch, outcomes, strict=True):
                settle(fut, outcome)
            if stopping:
                return


class LoopWriter:
    """SQLite: creates stored on the event loop itself, those that arrived in one pass of the loop in one transaction.

    Why not a thread: SQLite runs inside this process, so its calls are CPU work like the
    rest of a create, not waiting. A writer thread had to win the GIL back from the busy
    event loop after each of the many points where the sqlite3 module releases it (up to
    the interpreter's 5 ms switch interval each time): under load a batch that takes
    3 ms alone took 20-50 ms, and every create waited for it. Here the batch runs as a
    loop callback scheduled behind the requests already read (`call_soon`), so it holds
    every create that those requests made.

    The loop never waits for SQLite's write lock, which a worker thread or another process
    may hold: this writer's own connection has no busy timeout, and when the lock is
    taken the batch is tried again `retry_seconds` later, for up to `busy_seconds`.
    """

    def __init__(self, engine: Engine, max_batch: int = MAX_BATCH, retry_seconds: float = 0.0005, busy_seconds: float = 30.0) -> None:
        self.engine = engine  # one connection, no busy timeout: db.make_engine(url, busy_seconds=0)
        self.max_batch = max_batch
        self.retry_seconds = retry_seconds
        self.busy_seconds = busy_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: deque[tuple[Submission, asyncio.Future[Outcome]]] = deque()
        self._scheduled = False
        self._locked_since: float | None = None
        self.batches = 0
        self.stored = 0
        self.lock_retries = 0  # times the write lock was taken (for benchmarks)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that runs the batches (`submit` from other threads hands creates to it)."""
        self._loop = loop

    def warm_up(self) -> None:
        warm_up(self.engine.begin)

    async def submit_async(self, sub: Submission) -> Outcome:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        fut: asyncio.Future[Outcome] = loop.create_future()
        self._pending.append((sub, fut))
        self._schedule(0.0)
        return await fut

    def submit(self, sub: Submission) -> Future[Outcome]:
        """From a thread other than the loop's (a storyboard create, a test)."""
        if self._loop is None:
            raise RuntimeError("the service has not started: no event loop to store creates on")
        return asyncio.run_coroutine_threadsafe(self.submit_async(sub), self._loop)

    def stop(self) -> None:
        """Close this writer's own connection. Creates still waiting were stored while the loop ran
        (the server finishes its requests before it stops)."""
        self.engine.dispose()

    def _schedule(self, delay: float) -> None:
        if self._scheduled:
            return
        self._scheduled = True
        loop = self._loop
        assert loop is not None
        if delay > 0:
            loop.call_later(delay, self._flush)
        else:
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        batch: list[tuple[Submission, asyncio.Future[Outcome]]] = []
        while self._pending and len(batch) < self.max_batch:
            sub, fut = self._pending.popleft()
            if not fut.done():  # (a request cancelled before its store: nothing is stored for it)
                batch.append((sub, fut))
        if not batch:
            return
        try:
            outcomes = store_all(self.engine.begin, [sub for sub, _ in batch])
        except OperationalError as exc:
            if is_locked(exc) and self._wait_for_lock():
                self._pending.extendleft(reversed(batch))
                self._schedule(self.retry_seconds)
                return
            outcomes = [Failed(exc)] * len(batch)
        except BaseException as exc:  # noqa: BLE001 - every waiting create must hear of it (nothing was stored)
            outcomes = [Failed(exc)] * len(batch)
        self._locked_since = None
        self.batches += 1
        self.stored += created_count(outcomes)
        for (_, fut), outcome in zip(batch, outcomes, strict=True):
            if not fut.done():
                settle(fut, outcome)
        if self._pending:
            self._schedule(0.0)

    def _wait_for_lock(self) -> bool:
        """The write lock is taken: True to try again shortly, False once `busy_seconds` have passed."""
        self.lock_retries += 1
        t = time.monotonic()
        if self._locked_since is None:
            self._locked_since = t
        return t - self._locked_since < self.busy_seconds


def created_count(outcomes: list[Outcome | Failed]) -> int:
    return sum(1 for o in outcomes if isinstance(o, Stored) and o.created)


def settle(fut: Future[Outcome] | asyncio.Future[Outcome], outcome: Outcome | Failed) -> None:
    """Answer a waiting create: its outcome, or the error it could not be stored for."""
    if isinstance(outcome, Failed):
        fut.set_exception(outcome.error)
    else:
        fut.set_result(outcome)


def is_locked(exc: OperationalError) -> bool:
    """SQLite's "database is locked": another connection holds the write lock."""
    return "locked" in str(exc.orig).lower()
