"""The API process checkpoints SQLite's WAL from a thread of its own, never inside a request's commit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from service_helpers import FakeBackend, make_harness  # noqa: E402
from sqlalchemy import text  # noqa: E402

from kinema.service.checkpoints import WalCheckpointer, sqlite_file  # noqa: E402
from kinema.service.db import open_database  # noqa: E402
from kinema.service.settings import Settings  # noqa: E402


def autocheckpoint(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("PRAGMA wal_autocheckpoint")).scalar()


@pytest.mark.parametrize("workers", [0, 1])
def test_the_api_process_commits_never_checkpoint_and_its_thread_does(tmp_path: Path, workers: int) -> None:
    h = make_harness(tmp_path, FakeBackend, workers=workers, wal_checkpoint_seconds=0.05)
    try:
        svc = h.app.state.service
        writer_engine = getattr(svc.submissions, "engine", None)  # the loop writer's own connection (API-only), else the shared one
        for engine in {svc.sessions.kw["bind"], writer_engine or svc.sessions.kw["bind"]}:
            assert autocheckpoint(engine) == 0
        checkpointer = h.app.state.checkpointer
        assert checkpointer is not None and checkpointer.path == str((tmp_path / "kinema.db").resolve())
        seen = checkpointer.checkpoints
        deadline = time.monotonic() + 60
        while checkpointer.checkpoints == seen and time.monotonic() < deadline:  # a wait for the machine, not a speed check
            time.sleep(0.02)
        assert checkpointer.checkpoints > seen
    finally:
        h.client.__exit__(None, None, None)
    assert checkpointer._conn is None  # stopped with the app


def test_a_worker_process_keeps_sqlites_automatic_checkpoint(tmp_path: Path) -> None:
    engine, _ = open_database(Settings(data_dir=tmp_path).url)
    try:
        assert autocheckpoint(engine) == 1000
    finally:
        engine.dispose()


def test_a_checkpoint_copies_the_log_back_into_the_database(tmp_path: Path) -> None:
    url = Settings(data_dir=tmp_path).url
    engine, sessions = open_database(url, auto_checkpoint=False)
    checkpointer = WalCheckpointer(url)
    try:
        checkpointer.checkpoint_now()  # the migrations' pages
        with sessions() as s, s.begin():
            s.execute(text("CREATE TABLE filler (x TEXT)"))
            for _ in range(200):
                s.execute(text("INSERT INTO filler VALUES (:x)"), {"x": "k" * 2000})
        wal = Path(sqlite_file(url) + "-wal")
        busy, frames, copied = checkpointer.checkpoint_now()
        assert busy == 0 and frames >= 100 and copied == frames  # nothing else reads: every frame is copied back
        assert wal.exists()
    finally:
        checkpointer.stop()
        engine.dispose()


def test_only_sqlite_files_get_a_checkpointer() -> None:
    assert sqlite_file("sqlite:////data/kinema.db") == "/data/kinema.db"
    assert sqlite_file("sqlite://") is None and sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file("postgresql+psycopg://u@h/db") is None
    with pytest.raises(ValueError, match="SQLite"):
        WalCheckpointer("postgresql+psycopg://u@h/db")
    with pytest.raises(ValueError, match="interval"):
        WalCheckpointer("sqlite:////tmp/x.db", interval=0)
