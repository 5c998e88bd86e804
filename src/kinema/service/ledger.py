"""Credits. Every function here works inside the caller's session and never commits:

the state change of a task and the money it moves are one transaction, so no
crash can leave one without the other. Every entry that moves credits also
moves `Account.balance` by the same amount in that transaction, so the balance
is one row to read, never a sum over the account's history.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from kinema.service.db import Account, LedgerEntry, Task


class InsufficientCredits(Exception):
    def __init__(self, needed: int, balance: int) -> None:
        super().__init__(f"this task costs {needed} credits; the balance is {balance}")
        self.needed = needed
        self.balance = balance


INSERT_ENTRY = insert(LedgerEntry.__table__)  # the create path's reservations (submissions.store), many rows per statement
# Add `delta` to one account's balance; executed with one parameter set per account when many move at once.
MOVE_BALANCE = update(Account.__table__).where(Account.id == bindparam("account")).values(balance=Account.balance + bindparam("delta"))


def balance(session: Session, account_id: str) -> int:
    return int(session.scalar(select(Account.balance).where(Account.id == account_id)) or 0)


def balance_from_entries(session: Session, account_id: str) -> int:
    """The sum of the account's entries: what `balance` must equal (for audits and tests; reads the whole history)."""
    total = session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(LedgerEntry.account_id == account_id))
    return int(total or 0)


def _enter(session: Session, account_id: str, amount: int, **entry: Any) -> None:
    """One ledger entry and the balance it moves."""
    session.add(LedgerEntry(account_id=account_id, amount=amount, **entry))
    if amount:
        session.execute(MOVE_BALANCE, {"account": account_id, "delta": amount})


def grant(session: Session, account_id: str, amount: int, note: str = "grant") -> None:
    if amount <= 0:
        raise ValueError(f"a grant must be > 0 credits, got {amount}")
    _enter(session, account_id, amount, kind="grant", note=note)


def reserve(session: Session, task: Task, amount: int) -> None:
    """Hold `amount` for a task; refuse when the balance cannot cover it."""
    have = balance(session, task.account_id)
    if amount > have:
        raise InsufficientCredits(amount, have)
    _enter(session, task.account_id, -amount, task_id=task.id, kind="reserve", note="reserved at submit")
    task.credits_reserved = amount


def capture(session: Session, task: Task, amount: int | None = None) -> None:
    """The task succeeded: the reservation is spent (the entry moves nothing; it records the charge).

    `amount` below the reservation charges only that and gives the rest back in the
    same transaction (a storyboard whose shots came from the cache did not run them).
    """
    reserved = task.credits_reserved or 0
    charged = reserved if amount is None else max(0, min(int(amount), reserved))
    _enter(session, task.account_id, 0, task_id=task.id, kind="capture", note="charged on success")
    if charged < reserved:
        _enter(session, task.account_id, reserved - charged, task_id=task.id, kind="release", note="not run: taken from the cache")
    task.credits_charged = charged


def release(session: Session, task: Task, why: str) -> None:
    """The task failed, was cancelled or lost: give the whole reservation back."""
    if task.credits_reserved:
        _enter(session, task.account_id, task.credits_reserved, task_id=task.id, kind="release", note=why[:200])
    task.credits_charged = 0
