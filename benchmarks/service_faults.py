"""Faults: kill -9 the server (and with it its in-process workers) at random points, restart, repeat.

Each run: start a server on a fresh database, submit tasks (some with cancels), kill -9
it at a random moment while jobs run, restart it (the new process's reaper finds the
dead leases after `lease_seconds`), kill it again with some probability, finally let it
drain; then audit: every task terminal, every credit accounted for.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service_faults.py --runs 20
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_common import ROOT, audit, free_port, make_accounts, start_server

TERMINAL = {"succeeded", "failed", "cancelled"}


def one_run(seed: int, tasks: int, kills: int) -> dict:
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix=f"kinema-fault{seed}-"))
    data = root / "data"
    key = make_accounts(data, n=1, credits=1_000_000)[0]
    headers = {"Authorization": f"Bearer {key}"}
    ids: list[str] = []
    killed = 0
    for round_ in range(kills + 1):
        port = free_port()
        server = start_server(data, port, workers=2, step_delay=0.05, log=root / "server.log")
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=30) as c:
            if round_ == 0:
                for n in range(tasks):
                    r = c.post("/v1/tasks", json={"prompt": f"ball {n}", "steps": rng.randint(4, 12), "seed": n}, headers=headers)
                    ids.append(r.json()["id"])
                for tid in rng.sample(ids, k=max(1, tasks // 5)):
                    c.post(f"/v1/tasks/{tid}/cancel", headers=headers)
            if round_ < kills:
                time.sleep(rng.uniform(0.2, 3.0))  # a random point: mid-claim, mid-step, mid-write, mid-finish
                server.send_signal(signal.SIGKILL)
                server.wait()
                killed += 1
                continue
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                states = [c.get(f"/v1/tasks/{tid}", headers=headers).json()["state"] for tid in ids]
                if all(s in TERMINAL for s in states):
                    break
                time.sleep(0.5)
        server.terminate()
        server.wait()
    report = audit(data)
    return {"seed": seed, "kills": killed, **report}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--tasks", type=int, default=12)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "service_faults.json")
    a = p.parse_args()
    results = []
    for seed in range(a.runs):
        r = one_run(seed, a.tasks, kills=1 + seed % 3)
        results.append(r)
        print(json.dumps({k: r[k] for k in ("seed", "kills", "states", "non_terminal", "max_runs_started", "ledger_problems")}), flush=True)
    summary = {
        "runs": len(results), "kill_9s": sum(r["kills"] for r in results), "tasks": sum(r["tasks"] for r in results),
        "non_terminal": sum(r["non_terminal"] for r in results), "ledger_problems": sum(len(r["ledger_problems"]) for r in results),
        "runs_detail": results,
    }  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "runs_detail"}))


if __name__ == "__main__":
    main()
