"""What storing one batch of creates costs as an account's ledger history grows.

A create must know the account's balance. Summing the account's ledger entries
costs time in proportion to its history, which grows with every task; a kept
balance (`Account.balance`) is one row whatever the history. This times
`submissions.store_all` for a batch of B creates spread over A accounts whose
ledgers already hold H entries each (H = 0, 1,000, 10,000, 100,000), on SQLite,
in one process with nothing else running.

    .venv/bin/python benchmarks/create_store_cost.py --out docs/results/create_store_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HISTORY_ENTRY = "INSERT INTO ledger_entries (account_id, task_id, kind, amount, note, created_at) VALUES (?, NULL, 'capture', 0, 'history', 0)"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--history", type=int, nargs="+", default=[0, 1_000, 10_000, 100_000], help="ledger entries already on each account")
    p.add_argument("--accounts", type=int, default=10)
    p.add_argument("--batch", type=int, default=50, help="creates per transaction (what 50 waiting clients make)")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "create_store_cost.json")
    a = p.parse_args()

    from kinema.service.accounts import create_account, grant
    from kinema.service.app import seed_plans
    from kinema.service.db import make_engine, open_database
    from kinema.service.settings import Settings
    from kinema.service.submissions import Stored, Submission, store_all

    rows = []
    for history in a.history:
        data = Path(tempfile.mkdtemp(prefix="kinema-store-cost-"))
        settings = Settings(data_dir=data)
        engine, sessions = open_database(settings.url)
        seed_plans(sessions, settings)
        accounts = [create_account(sessions, f"a{i}", "pro") for i in range(a.accounts)]
        for acct in accounts:
            grant(sessions, acct, 10_000_000)
        if history:  # entries that move nothing (captures), so the balance stays what the grants made it
            with engine.begin() as conn:
                conn.exec_driver_sql(HISTORY_ENTRY, [(acct,) for acct in accounts for _ in range(history)])
        writer = make_engine(settings.url, busy_seconds=0)
        times = []
        n = 0
        for r in range(a.repeats):
            subs = []
            for j in range(a.batch):
                n += 1
                fields = {"account_id": accounts[j % len(accounts)], "request_json": "{}", "resolved_json": "{}", "body_hash": "h", "idempotency_key": f"k{n}", "total_steps": 2}
                subs.append(Submission(fields, 3))
            t0 = time.perf_counter()
            outcomes = store_all(writer.begin, subs)
            times.append(time.perf_counter() - t0)
            assert all(isinstance(o, Stored) and o.created for o in outcomes), outcomes[:3]
        writer.dispose()
        engine.dispose()
        ms = sorted(1000 * t for t in times[3:])  # the first batches prepare the statements
        rows.append({"history_entries_per_account": history, "batch_ms_median": statistics.median(ms), "batch_ms_max": ms[-1], "per_create_ms": statistics.median(ms) / a.batch})
        print(f"history {history:>7}: batch of {a.batch} stored in {rows[-1]['batch_ms_median']:.2f} ms (median), {rows[-1]['per_create_ms'] * 1000:.0f} us per create", file=sys.stderr)
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "accounts": a.accounts, "batch": a.batch, "repeats": a.repeats, "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
