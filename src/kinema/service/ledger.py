"""Credits. Every function here works inside the caller's session and never commits:

the state change of a task and the money it moves are one transaction, so no
crash can leave one without the other.
"""

from __future__ import annotations

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from kinema.service.db import LedgerEntry, Task


class InsufficientCredits(Exception):
    def __init__(self, needed: int, balance: int) -> None:
        super().__init__(f"this task costs {needed} credits; the balance is {balance}")
        self.needed = needed
        self.balance = balance


def balance(session: Session, account_id: str) -> int:
    total = session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(LedgerEntry.account_id == account_id))
    return int(total or 0)


def grant(session: Session, account_id: str, amount: int, note: str = "grant") -> None:
    if amount <= 0:
        raise ValueError(f"a grant must be > 0 credits, got {amount}")
    session.add(LedgerEntry(account_id=account_id, kind="grant", amount=amount, note=note))


def reserve(session: Session, task: Task, amount: int) -> None:
    """Hold `amount` for a task; refuse when the balance cannot cover it."""
    have = balance(session, task.account_id)
    if amount > have:
        raise InsufficientCredits(amount, have)
    session.add(LedgerEntry(account_id=task.account_id, task_id=task.id, kind="reserve", amount=-amount, note="reserved at submit"))
    task.credits_reserved = amount


INSERT_ENTRY = insert(LedgerEntry.__table__)  # the create path's reservations (submissions.store), many rows per statement


def capture(session: Session, task: Task, amount: int | None = None) -> None:
    """The task succeeded: the reservation is spent (the entry moves nothing; it records the charge).

    `amount` below the reservation charges only that and gives the rest back in the
    same transaction (a storyboard whose shots came from the cache did not run them).
    """
    reserved = task.credits_reserved or 0
    charged = reserved if amount is None else max(0, min(int(amount), reserved))
    session.add(LedgerEntry(account_id=task.account_id, task_id=task.id, kind="capture", amount=0, note="charged on success"))
    if charged < reserved:
        session.add(LedgerEntry(account_id=task.account_id, task_id=task.id, kind="release", amount=reserved - charged, note="not run: taken from the cache"))
    task.credits_charged = charged


def release(session: Session, task: Task, why: str) -> None:
    """The task failed, was cancelled or lost: give the whole reservation back."""
    if task.credits_reserved:
        session.add(LedgerEntry(account_id=task.account_id, task_id=task.id, kind="release", amount=task.credits_reserved, note=why[:200]))
    task.credits_charged = 0
