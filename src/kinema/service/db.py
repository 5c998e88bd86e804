"""The service's tables (SQLAlchemy 2 typed models) and the database start-up.

Portable by construction: only types and statements both SQLite and
PostgreSQL have; times are float Unix seconds (no time-zone surprises, the
same arithmetic in both); ids are 32-hex strings made in Python. The schema
is created and upgraded by the Alembic migrations shipped in `migrations/`,
run at start-up (`open_database`), never by `create_all`.
"""

from __future__ import annotations

import time
import uuid
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
)
from sqlalchemy.engine import Engine
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
        Index("ix_tasks_queue", "state", "priority", "created_at"),
        Index("ix_tasks_account_created", "account_id", "created_at"),
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


def make_engine(url: str, writer: bool = True) -> Engine:
    """An engine with SQLite made fit for many threads and processes (WAL, a long busy timeout).

    SQLite: a writer engine begins every transaction IMMEDIATE (it takes the write
    lock up front, so a read-then-write transaction can never deadlock on the lock
    upgrade); a reader engine (writer=False) begins DEFERRED, so reads run beside
    a writer under WAL instead of queueing behind it. PostgreSQL: both are plain.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=20, max_overflow=20)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Python's sqlite3 opens transactions lazily; begin them ourselves so a
            # read-then-write transaction holds the write lock from its start.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

        return engine
    return create_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision with the migrations shipped in the package."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("kinema.service").joinpath("migrations")))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def open_database(url: str) -> tuple[Engine, sessionmaker[Any]]:
    engine = make_engine(url)
    migrate(engine)
    return engine, sessionmaker(engine, expire_on_commit=False)


def open_readers(url: str) -> tuple[Engine, sessionmaker[Any]]:
    """Sessions for read-only work (after `open_database` has migrated the schema)."""
    engine = make_engine(url, writer=False)
    return engine, sessionmaker(engine, expire_on_commit=False)
