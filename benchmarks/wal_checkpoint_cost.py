"""What an SQLite WAL checkpoint costs on this machine: the stall a request pays if its commit makes one.

Writes batches like the service's create batches (50 rows of ~2 KB per transaction, WAL,
synchronous NORMAL, the automatic checkpoint off), then times one PASSIVE checkpoint every
`--commits-per-checkpoint` commits: what SQLite's automatic checkpoint would do inside the
commit that pushes the log past 1,000 pages (docs/service.md, "No request's commit
checkpoints the WAL").

    .venv/bin/python benchmarks/wal_checkpoint_cost.py [--rounds 8] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--commits-per-checkpoint", type=int, default=20)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as d:
        conn = sqlite3.connect(str(Path(d) / "t.db"), isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=0"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT)")
        commits, checkpoints = [], []
        for _ in range(a.rounds):
            for _ in range(a.commits_per_checkpoint):
                t = time.perf_counter()
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT INTO t (a, b) VALUES (?, ?)", [("x" * 1000, "y" * 1000)] * 50)
                conn.execute("COMMIT")
                commits.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            checkpoints.append({"ms": round((time.perf_counter() - t) * 1e3, 2), "frames": frames, "copied": copied})
        conn.close()
    result = {
        "commit_ms_median": round(statistics.median(commits), 3), "commit_ms_max": round(max(commits), 2),
        "checkpoint_ms_median": statistics.median(c["ms"] for c in checkpoints), "checkpoint_ms_max": max(c["ms"] for c in checkpoints),
        "pages_per_checkpoint_median": statistics.median(c["frames"] for c in checkpoints), "checkpoints": checkpoints,
    }  # fmt: skip
    print(json.dumps({k: v for k, v in result.items() if k != "checkpoints"}, indent=1))
    if a.json:
        a.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
