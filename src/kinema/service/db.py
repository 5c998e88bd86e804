"""The service's tables (SQLAlchemy 2 typed models) and the database start-up.

Portable by construction: only types and statements both SQLite and
PostgreSQL have; times are float Unix seconds (no time-zone surprises, the
same arithmetic in both); ids are 32-hex strings made in Python. The schema
is created and upgraded by the Alembic migrations shipped in `migrations/`,
run at start-up (`open_database`), never by `create_all`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from importlib import resources
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> float:
    return time.time()


class Base(DeclarativeBase):
    pass


class Plan(Base):
    __tablename__ = "plans"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    monthly_credits: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer)


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    plan: Mapped[str] = mapped_column(ForeignKey("plans.name"))
    created_at: Mapped[float] = mapped_column(Float, default=now)
    # The sum of the account's ledger entries, kept by ledger.py in the same transaction as each entry:
    # a create reads one row instead of summing the account's whole history (which grows with every task).
    balance: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the key; the key itself is never stored
    prefix: Mapped[str] = mapped_column(String(16))  # shown to the owner to tell keys apart
    created_at: Mapped[float] = mapped_column(Float, default=now)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class LedgerEntry(Base):
    """Signed credit movements: grant +n, reserve -n, release +n, capture 0 (marks the reservation spent).

    An account's balance is the sum of its entries; nothing else holds money.
    `Account.balance` keeps that sum (written with every entry, audited against it).
    """

    __tablename__ = "ledger_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    task_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[float] = mapped_column(Float, default=now)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key", name="uq_tasks_idempotency"),
        Index("ix_tasks_queue", "state", text("priority DESC"), "created_at", "id"),  # a claim's candidates, in the order it takes them
        Index("ix_tasks_account_created", "account_id", "created_at"),
        Index("ix_tasks_account_state", "account_id", "state"),  # a claim counts the account's running tasks
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    state: Mapped[str] = mapped_column(String(16), default=QUEUED)
    request_json: Mapped[str] = mapped_column(Text)  # the GenerationRequest as given
    resolved_json: Mapped[str] = mapped_column(Text)  # what will run: seed, size, steps... (the seed is chosen at submit)
    body_hash: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    error_message: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    credits_reserved: Mapped[int] = mapped_column(Integer, default=0)
    credits_charged: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    runs_started: Mapped[int] = mapped_column(Integer, default=0)  # generation runs begun (for the load test's "run twice" check)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    heartbeat_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    output_path: Mapped[str | None] = mapped_column(String(500), nullable=True)
    output_format: Mapped[str] = mapped_column(String(8), default="mp4")
    callback_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class WebhookOutbox(Base):
    """A webhook to deliver, written in the same transaction as the state change it reports."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (Index("ix_outbox_due", "state", "next_attempt_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "msg_" + hex: the webhook-id
    task_id: Mapped[str] = mapped_column(String(32), index=True)
    account_id: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(String(2000))
    event_type: Mapped[str] = mapped_column(String(50))
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=now)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    delivered_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class WebhookSecret(Base):
    """One signing secret per account (`whsec_` + base64): receivers verify with it."""

    __tablename__ = "webhook_secrets"
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(100))


class FairSemaphore:
    """Permits handed out in arrival order: a releaser hands its permit straight to the oldest waiter.

    (A plain queue or lock lets a thread that has just released barge ahead of the
    waiters it woke, so under load one thread can be passed over until it times out.)
    """

    def __init__(self, permits: int) -> None:
        self._mutex = threading.Lock()
        self._free = permits
        self._waiters: deque[threading.Lock] = deque()

    def acquire(self, timeout: float) -> bool:
        with self._mutex:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return True
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        if turn.acquire(timeout=timeout):
            return True  # handed over by release()
        with self._mutex:
            try:
                self._waiters.remove(turn)
            except ValueError:  # release() handed it over as the wait timed out: it is ours
                return True
            return False

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._free += 1


class FairQueuePool(QueuePool):
    """QueuePool that serves waiting threads first come, first served (see FairSemaphore)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._turns = FairSemaphore(self._pool.maxsize + max(self._max_overflow, 0))
        self._inside = threading.local()  # QueuePool._do_get may call itself: take one permit per checkout

    def _do_get(self) -> Any:
        if getattr(self._inside, "active", False):
            return super()._do_get()
        if not self._turns.acquire(self._timeout):
            raise sa_exc.TimeoutError(f"no database connection free for {self._timeout:.0f} s (pool of {self.size()})")
        self._inside.active = True
        try:
            return super()._do_get()
        except BaseException:
            self._turns.release()
            raise
        finally:
            self._inside.active = False

    def _do_return_conn(self, record: Any) -> None:
        try:
            super()._do_return_conn(record)
        finally:
            self._turns.release()


SQLITE_SYNCHRONOUS = ("NORMAL", "FULL")
SQLITE_BUSY_SECONDS = 30.0


def make_engine(url: str, writer: bool = True, *, sqlite_synchronous: str = "NORMAL", busy_seconds: float = SQLITE_BUSY_SECONDS,
                auto_checkpoint: bool = True) -> Engine:  # fmt: skip
    """An engine with SQLite made fit for many threads and processes.

    SQLite: WAL journal (readers never wait for the writer), a long busy timeout
    for other processes, and:
    - a writer engine (writer=True) has exactly ONE connection, and begins every
      transaction IMMEDIATE (it takes the write lock up front, so a
      read-then-write transaction can never deadlock on the lock upgrade). SQLite
      has a single writer anyway; keeping the writers of this process in a
      first-come-first-served queue for that connection (FairQueuePool) instead
      of SQLite's busy handler matters for latency:
      that handler polls with sleeps growing to 100 ms and is not fair, so under
      contention a waiting thread could be passed over for seconds. Only
      writers in other processes (`kinema worker`, the admin CLI) still meet the
      busy handler.
    - a reader engine (writer=False) begins DEFERRED and has a pool of 20, so
      reads run beside the writer.
    - `sqlite_synchronous`: "NORMAL" (default) makes a commit durable once it
      is in the WAL file in the OS's page cache: it survives a kill -9 of any
      process (the OS writes the page out), and only an OS crash or power loss
      can undo the last commits (never corrupt the database). "FULL" fsyncs the
      WAL at every commit and survives power loss too, at the cost of one fsync
      per write transaction.
    - `auto_checkpoint=False`: this engine's commits never checkpoint the WAL
      (SQLite's default makes the commit that pushes the WAL past 1,000 pages do
      it, inside the commit); the process then runs a `checkpoints.WalCheckpointer`.
    PostgreSQL: both engines are plain pools.
    """
    if url.startswith("sqlite"):
        sync = sqlite_synchronous.upper()
        if sync not in SQLITE_SYNCHRONOUS:
            raise ValueError(f"sqlite_synchronous must be one of {SQLITE_SYNCHRONOUS}, got {sqlite_synchronous!r}")
        pool: dict[str, Any] = {"poolclass": FairQueuePool, "pool_size": 1, "max_overflow": 0, "pool_timeout": busy_seconds} if writer else {"pool_size": 20, "max_overflow": 20}
        engine = create_engine(url, connect_args={"timeout": busy_seconds, "check_same_thread": False}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Python's sqlite3 opens transactions lazily; begin them ourselves so a
            # read-then-write transaction holds the write lock from its start.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sync}")
            cur.execute("PRAGMA foreign_keys=ON")
            if not auto_checkpoint:
                cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

        return engine
    return create_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (the newest by default) with the migrations shipped in the package."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("kinema.service").joinpath("migrations")))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def open_database(url: str, *, sqlite_synchronous: str = "NORMAL", auto_checkpoint: bool = True) -> tuple[Engine, sessionmaker[Any]]:
    engine = make_engine(url, sqlite_synchronous=sqlite_synchronous, auto_checkpoint=auto_checkpoint)
    migrate(engine)
    return engine, sessionmaker(engine, expire_on_commit=False)


def open_readers(url: str) -> tuple[Engine, sessionmaker[Any]]:
    """Sessions for read-only work (after `open_database` has migrated the schema)."""
    engine = make_engine(url, writer=False)
    return engine, sessionmaker(engine, expire_on_commit=False)
