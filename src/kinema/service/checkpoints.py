"""The API server's SQLite WAL checkpoints, made by a thread of their own instead of by requests.

Why: in WAL mode SQLite copies the log back into the database (a checkpoint)
inside whichever commit pushes the log past 1,000 pages: it writes some 4 MB and
fsyncs the database file, 8 ms on an idle machine here and tens of milliseconds
when the cores are busy. When that commit is a batch of creates stored on the
event loop (`submissions.LoopWriter`), every request in flight waits for it, and in
a closed loop of 50 clients one such stall is 5% of all creates: the p99. The API
process therefore opens its write connections with the automatic checkpoint off
(`db.make_engine(auto_checkpoint=False)`) and runs this thread, whose PASSIVE
checkpoints wait for no reader or writer and release the GIL while SQLite works.
`kinema worker` processes keep SQLite's automatic checkpoint: it runs after their
commit has released the write lock, so it delays no other process.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from sqlalchemy.engine import make_url

log = logging.getLogger("kinema.service")


class WalCheckpointer:
    """Checkpoint the SQLite database at `url` every `interval` seconds, on its own connection."""

    def __init__(self, url: str, interval: float = 1.0) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.path = sqlite_file(url)
        if self.path is None:
            raise ValueError(f"not an SQLite database file: {url!r}")
        self.interval = interval
        self.checkpoints = 0  # checkpoints run so far
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    def checkpoint_now(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: (1 if it could not run at all, else 0; frames in the log; frames copied back)."""
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        busy, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1
        return busy, frames, copied

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kinema-wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.checkpoint_now()
            except sqlite3.Error:  # e.g. the database is being replaced: try again next time
                log.exception("WAL checkpoint failed; retrying")


def sqlite_file(url: str) -> str | None:
    """The file behind an SQLite URL; None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database
