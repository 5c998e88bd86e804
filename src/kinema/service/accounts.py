"""Accounts, API keys and grants: what `kinema admin` and the tests call.

A key is `kn_` + 32 random URL-safe characters; only its SHA-256 is stored,
so a database leak reveals no usable key. It is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from typing import Any

from sqlalchemy import select

from kinema.errors import KinemaInputError
from kinema.service import ledger
from kinema.service.db import Account, ApiKey, LedgerEntry, Plan, now


def create_account(sessions: Any, name: str, plan: str = "free", grant_monthly: bool = True) -> str:
    """A new account on `plan`, credited with the plan's monthly credits. Returns its id."""
    with sessions.begin() as s:
        p = s.get(Plan, plan)
        if p is None:
            known = ", ".join(s.scalars(select(Plan.name)).all())
            raise KinemaInputError(f"unknown plan {plan!r}; known: {known}")
        if s.scalar(select(Account.id).where(Account.name == name)) is not None:
            raise KinemaInputError(f"an account named {name!r} exists already")
        acct = Account(name=name, plan=plan)
        s.add(acct)
        s.flush()
        if grant_monthly and p.monthly_credits > 0:
            ledger.grant(s, acct.id, p.monthly_credits, note=monthly_note(month_of(now())))
        return acct.id


def month_of(t: float) -> str:
    import time

    return time.strftime("%Y-%m", time.gmtime(t))


def monthly_note(month: str) -> str:
    return f"monthly credits {month}"


def refill_monthly(sessions: Any, month: str | None = None, readers: Any = None) -> int:
    """Grant every account its plan's monthly credits once per calendar month (UTC). Returns how many were granted.

    Idempotent: the grant's note names the month, and an account that has it is skipped,
    so the reaper can call this as often as it likes, from any number of processes
    (a duplicate can only come from two processes racing in the same instant; the
    unused credits then stay granted, never lost). The common case, nothing due, is
    a read through `readers`: it takes no write lock (on SQLite a write transaction
    here held the lock for 4-14 ms at every process start, and every create waited).
    """
    note = monthly_note(month or month_of(now()))

    def due(s: Any) -> list[tuple[str, int]]:
        done = set(s.scalars(select(LedgerEntry.account_id).where(LedgerEntry.kind == "grant", LedgerEntry.note == note)).all())
        rows = s.execute(select(Account.id, Plan.monthly_credits).join(Plan, Plan.name == Account.plan)).all()
        return [(acct_id, credits) for acct_id, credits in rows if acct_id not in done and credits > 0]

    if readers is not None:
        with readers() as r:
            if not due(r):
                return 0
    with sessions.begin() as s:  # look again under the write lock: another process may have granted since
        todo = due(s)
        for acct_id, credits in todo:
            ledger.grant(s, acct_id, credits, note)
        return len(todo)


def find_account(sessions: Any, name_or_id: str) -> str:
    with sessions() as s:
        acct_id = s.scalar(select(Account.id).where((Account.name == name_or_id) | (Account.id == name_or_id)))
    if acct_id is None:
        raise KinemaInputError(f"no account {name_or_id!r}")
    return acct_id


def create_key(sessions: Any, account_id: str) -> str:
    key = "kn_" + secrets.token_urlsafe(24)
    with sessions.begin() as s:
        s.add(ApiKey(account_id=account_id, key_hash=hash_key(key), prefix=key[:8]))
    return key


def revoke_key(sessions: Any, prefix: str) -> int:
    with sessions.begin() as s:
        keys = s.scalars(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))).all()
        for k in keys:
            k.revoked_at = now()
        return len(keys)


def grant(sessions: Any, account_id: str, credits: int, note: str = "admin grant") -> int:
    if credits <= 0:
        raise KinemaInputError(f"a grant must be > 0 credits, got {credits}")
    with sessions.begin() as s:
        ledger.grant(s, account_id, credits, note)
        return ledger.balance(s, account_id)


def set_plan(sessions: Any, account_id: str, plan: str) -> None:
    with sessions.begin() as s:
        if s.get(Plan, plan) is None:
            raise KinemaInputError(f"unknown plan {plan!r}")
        acct = s.get(Account, account_id)
        assert acct is not None
        acct.plan = plan


def upsert_plan(sessions: Any, name: str, monthly_credits: int, concurrency: int, priority: int) -> None:
    if monthly_credits < 0 or concurrency < 1:
        raise KinemaInputError("monthly credits must be >= 0 and concurrency >= 1")
    with sessions.begin() as s:
        p = s.get(Plan, name)
        if p is None:
            s.add(Plan(name=name, monthly_credits=monthly_credits, concurrency=concurrency, priority=priority))
        else:
            p.monthly_credits, p.concurrency, p.priority = monthly_credits, concurrency, priority


class KeyCache:
    """API key -> its account, remembered for `ttl` seconds: the check every request makes, without a query.

    Keys are 192-bit random strings, so the stored SHA-256 is all the hashing
    they need (a slow password hash would protect nothing more and cost every
    request milliseconds); this cache saves the database read. Only valid keys
    are remembered (a new key works at once); a key revoked (or an account
    moved to another plan) in another process is seen within `ttl`, and at once
    when revoked through `forget` in this one. ttl=0 turns the cache off.
    """

    def __init__(self, readers: Any, ttl: float, max_entries: int = 10_000) -> None:
        self.readers = readers
        self.ttl = ttl
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Account]] = {}

    def get(self, key: str) -> Account | None:
        """The cached account (no I/O), or None when it must be looked up (`load`)."""
        if self.ttl <= 0:
            return None
        hit = self._entries.get(hash_key(key))
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def load(self, key: str) -> Account | None:
        """Look the key up in the database (None: unknown or revoked), and remember a valid one."""
        digest = hash_key(key)
        with self.readers() as s:
            acct = s.scalar(select(Account).join(ApiKey, ApiKey.account_id == Account.id).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)))
        if acct is not None and self.ttl > 0:
            with self._lock:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[digest] = (time.monotonic() + self.ttl, acct)
        return acct

    def forget(self) -> None:
        with self._lock:
            self._entries.clear()


def hash_key(key: str) -> str:
    """What is stored of an API key: its SHA-256 (hex)."""
    return hashlib.sha256(key.encode()).hexdigest()
