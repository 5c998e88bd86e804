"""The durable queue: tasks are rows; workers claim them by lease.

A claim is a conditional UPDATE (`... WHERE id = ? AND state = 'queued'`), so
two workers can never both win the same task, on SQLite or PostgreSQL. A
running task carries `lease_owner` and `lease_expires_at`; the worker renews
the lease while it works (heartbeat). The reaper finds leases that ran out
(the worker died) and puts the task back in the queue, or fails it with
`internal.worker_lost` after `max_attempts`, releasing its credits in the same
transaction. Every finish is conditional on still holding the lease, so a
worker that lost its lease can never overwrite what the reaper decided.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from kinema.service import ledger
from kinema.service.db import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Account,
    Plan,
    Task,
    now,
)

_BY_IDEMPOTENCY_KEY = select(Task.__table__).where(Task.account_id == bindparam("account_id"), Task.idempotency_key == bindparam("key"))

# The workers' statements (claim, heartbeat), built once (compiled once, then only executed).
_TASKS = Task.__table__
_RUNNING_COUNTS = select(Task.account_id, func.count().label("n")).where(Task.state == RUNNING).group_by(Task.account_id).subquery()
_CANDIDATES = (
    select(Task.id, Task.account_id, Plan.concurrency)
    .join(Account, Account.id == Task.account_id)
    .join(Plan, Plan.name == Account.plan)
    .outerjoin(_RUNNING_COUNTS, _RUNNING_COUNTS.c.account_id == Task.account_id)
    .where(Task.state == QUEUED, func.coalesce(_RUNNING_COUNTS.c.n, 0) < Plan.concurrency)
    .order_by(Task.priority.desc(), Task.created_at, Task.id)
    .limit(8)
)
_LOCK_ACCOUNT = select(Account.id).where(Account.id == bindparam("account_id")).with_for_update()
_RUNNING_OF = select(func.count()).select_from(_TASKS).where(Task.account_id == bindparam("account_id"), Task.state == RUNNING)
_CLAIM = (
    update(_TASKS)
    .where(Task.id == bindparam("task_id"), Task.state == QUEUED)
    .values(
        state=RUNNING, lease_owner=bindparam("p_owner"), lease_expires_at=bindparam("p_expires"), heartbeat_at=bindparam("p_now"),
        started_at=bindparam("p_now"), attempts=Task.attempts + 1, runs_started=Task.runs_started + 1,
    )  # fmt: skip
)
_CLAIMED = select(Task.resolved_json, Task.output_format, Task.attempts).where(Task.id == bindparam("task_id"))
_HELD = (Task.id == bindparam("task_id"), Task.state == RUNNING, Task.lease_owner == bindparam("p_owner"))
_BEAT = update(_TASKS).where(*_HELD).values(lease_expires_at=bindparam("p_expires"), heartbeat_at=bindparam("p_now"))
_BEAT_PROGRESS = _BEAT.values(step=bindparam("p_step"), total_steps=bindparam("p_total"), progress=bindparam("p_progress"))
_CANCEL_REQUESTED = select(Task.cancel_requested).where(Task.id == bindparam("task_id"))

OnTerminal = Callable[[Session, Task], None]  # called inside the finishing transaction (the webhook outbox hooks in here)


@dataclass(frozen=True)
class Claim:
    task_id: str
    resolved_json: str
    output_format: str
    attempt: int


class Queue:
    def __init__(self, sessions: sessionmaker[Any], lease_seconds: float, max_attempts: int, on_terminal: OnTerminal | None = None, readers: sessionmaker[Any] | None = None) -> None:
        self.sessions = sessions
        self.readers = readers or sessions  # looking for work must not take SQLite's write lock
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.on_terminal = on_terminal

    def _terminal(self, session: Session, task: Task) -> None:
        if self.on_terminal is not None:
            self.on_terminal(session, task)

    # -- submitting: creates are stored in batches by the writers in submissions.py ----
    def find_idempotent(self, account_id: str, key: str) -> Task | None:
        """The account's task created with this Idempotency-Key, if any (a read: no write lock)."""
        with self.readers() as r:
            row = r.connection().execute(_BY_IDEMPOTENCY_KEY, {"account_id": account_id, "key": key}).first()
        return None if row is None else Task(**row._asdict())

    def warm_up(self) -> None:
        """Run each of a worker's statements once, on a made-up task, in a transaction rolled back.

        Why: SQLAlchemy compiles a statement on its first execution, and a claim's first
        execution happens inside the claim's write transaction: a fresh worker's first
        claims held SQLite's write lock 5-10 ms (against under 1 ms later) while the
        creates that had just queued the work waited for it.
        """
        nobody = {"task_id": "warm-up", "account_id": "warm-up", "p_owner": "warm-up", "p_expires": 0.0, "p_now": 0.0, "p_step": 0, "p_total": 1, "p_progress": 0.0}
        with self.readers() as r:
            r.connection().execute(_CANDIDATES).all()
        with self.sessions() as s:
            conn = s.connection()
            for statement in (_LOCK_ACCOUNT, _RUNNING_OF, _CLAIM, _CLAIMED, _BEAT, _BEAT_PROGRESS, _CANCEL_REQUESTED):
                conn.execute(statement, nobody)
            s.get(Task, "warm-up", populate_existing=True, with_for_update=True)
            s.rollback()

    # -- claiming --------------------------------------------------------------------
    def claim(self, owner: str) -> Claim | None:
        """The best queued task whose account is under its concurrency limit: plan priority, then age."""
        with self.readers() as r:
            candidates = r.connection().execute(_CANDIDATES).all()
        if not candidates:
            return None
        with self.sessions.begin() as s:
            conn = s.connection()
            for task_id, account_id, concurrency in candidates:
                # The look above ran outside this transaction: lock the account and count again,
                # so simultaneous claims (PostgreSQL, or several processes) cannot exceed the plan's limit.
                conn.execute(_LOCK_ACCOUNT, {"account_id": account_id})
                busy = conn.execute(_RUNNING_OF, {"account_id": account_id}).scalar()
                if (busy or 0) >= concurrency:
                    continue
                t = now()
                won = conn.execute(_CLAIM, {"task_id": task_id, "p_owner": owner, "p_expires": t + self.lease_seconds, "p_now": t}).rowcount
                if won == 1:
                    resolved_json, output_format, attempts = conn.execute(_CLAIMED, {"task_id": task_id}).one()
                    return Claim(task_id, resolved_json, output_format, attempts)
        return None

    def heartbeat(self, task_id: str, owner: str, step: int | None = None, total: int | None = None) -> bool:
        """Renew the lease (and record progress). False: the lease is gone, or a cancel was asked for."""
        t = now()
        params: dict[str, Any] = {"task_id": task_id, "p_owner": owner, "p_expires": t + self.lease_seconds, "p_now": t}
        if step is not None and total:
            params.update(p_step=step, p_total=total, p_progress=min(1.0, step / total))
        with self.sessions.begin() as s:
            conn = s.connection()
            held = conn.execute(_BEAT_PROGRESS if "p_step" in params else _BEAT, params).rowcount
            if held != 1:
                return False
            return not conn.execute(_CANCEL_REQUESTED, {"task_id": task_id}).scalar()

    # -- finishing (each conditional on the lease) -----------------------------------
    def _held(self, s: Session, task_id: str, owner: str) -> Task | None:
        task = s.get(Task, task_id, populate_existing=True, with_for_update=True)
        if task is None or task.state != RUNNING or task.lease_owner != owner:
            return None
        return task

    def succeed(self, task_id: str, owner: str, output_path: str, charge: int | None = None) -> bool:
        """Done: keep the output, charge the reservation (or only `charge` of it: the rest is released)."""
        with self.sessions.begin() as s:
            task = self._held(s, task_id, owner)
            if task is None:
                return False
            if task.cancel_requested:  # the cancel came after the last step: the user asked, the user is not charged
                self._finish(s, task, CANCELLED, None, None)
                return False
            task.output_path = output_path
            task.progress, task.step = 1.0, task.total_steps or task.step
            ledger.capture(s, task, charge)
            self._set_terminal(s, task, SUCCEEDED)
            return True

    def fail(self, task_id: str, owner: str, code: str, message: str) -> bool:
        with self.sessions.begin() as s:
            task = self._held(s, task_id, owner)
            if task is None:
                return False
            self._finish(s, task, FAILED, code, message)
            return True

    def cancelled(self, task_id: str, owner: str) -> bool:
        """The worker stopped because a cancel was asked for."""
        with self.sessions.begin() as s:
            task = self._held(s, task_id, owner)
            if task is None:
                return False
            self._finish(s, task, CANCELLED, None, None)
            return True

    def retry_or_fail(self, task_id: str, owner: str, code: str, message: str) -> None:
        """A worker-side loss (e.g. a Ray actor died): back to the queue while attempts remain."""
        with self.sessions.begin() as s:
            task = self._held(s, task_id, owner)
            if task is not None:
                self._lost(s, task, code, message)

    def _finish(self, s: Session, task: Task, state: str, code: str | None, message: str | None) -> None:
        ledger.release(s, task, f"{state}: {code or ''}")
        task.error_code, task.error_message = code, message
        self._set_terminal(s, task, state)

    def _set_terminal(self, s: Session, task: Task, state: str) -> None:
        task.state = state
        task.finished_at = now()
        task.lease_owner, task.lease_expires_at = None, None
        self._terminal(s, task)

    def _lost(self, s: Session, task: Task, code: str, message: str) -> None:
        if task.cancel_requested:
            self._finish(s, task, CANCELLED, None, None)
        elif task.attempts >= self.max_attempts:
            self._finish(s, task, FAILED, code, f"{message} (after {task.attempts} attempts)")
        else:
            task.state = QUEUED
            task.lease_owner, task.lease_expires_at, task.started_at = None, None, None
            task.progress, task.step = 0.0, 0

    # -- the user's cancel -----------------------------------------------------------
    def cancel(self, task_id: str) -> str:
        """A queued task is cancelled at once; a running one is flagged, and its worker stops at the next step."""
        with self.sessions.begin() as s:
            task = s.get(Task, task_id, populate_existing=True, with_for_update=True)
            if task is None:
                raise KeyError(task_id)
            if task.state == QUEUED:
                self._finish(s, task, CANCELLED, None, None)
            elif task.state == RUNNING:
                task.cancel_requested = True
            return task.state

    # -- the reaper ----------------------------------------------------------------------
    def reap(self) -> int:
        """Expired leases: retry (bounded) or fail with internal.worker_lost, credits released. Returns how many."""
        with self.readers() as r:  # the common case, nothing expired, takes no write lock
            if r.scalar(select(Task.id).where(and_(Task.state == RUNNING, Task.lease_expires_at < now())).limit(1)) is None:
                return 0
        with self.sessions.begin() as s:
            expired = s.scalars(
                select(Task).where(and_(Task.state == RUNNING, Task.lease_expires_at < now())).with_for_update()
            ).all()
            for task in expired:
                self._lost(s, task, "internal.worker_lost", "the worker running this task stopped responding")
            return len(expired)


def request_of(claim: Claim) -> dict[str, Any]:
    return json.loads(claim.resolved_json)
