"""Faults: kill -9 the server and the worker processes at random points, restart, repeat; then audit.

Two modes, 20 runs each by default, a fresh database per run:
- `--mode server`: `kinema serve` with its in-process workers (the default set-up); 1-3
  kill -9s of the server at random moments while jobs run, a restart after each.
- `--mode workers`: the API server with no workers (`--workers 0`) and two `kinema
  worker` processes (what `run_worker_process` runs); 2-4 kill -9s per run at random
  moments, each of a random worker process (and, one time in four, of the server
  instead), the killed process restarted after a random pause. A killed worker's
  task is found by the reaper of a surviving process when its lease runs out
  (`--lease-seconds`, 3 s here) and run again, or failed with internal.worker_lost
  after 3 attempts.
Each run submits 12 tasks (a fifth of them cancelled at once: queued ones end at once,
running ones at their worker's next progress write), then lets the service drain; the
audit then checks that every task is terminal and that every task's ledger entries
match its state and every balance = grants - charges - open reservations.
- `--mode creates`: the kill lands in a burst of creates instead (the group commit's
  window: creates read but not yet stored, stored but not yet answered). 20 clients
  submit 1,000 tasks with Idempotency-Keys through the load client to a server with no
  workers (the tasks stay queued: this mode is about the create path); the server is
  killed -9 after a random 0.05-0.4 s and restarted; each create that got no answer is
  sent again with its key, as a client would. Checked besides the ledger audit (every
  queued task holds exactly its reservation): every task answered 201 before the kill is
  in the database; every key has exactly one task; a retried key whose create was stored
  before the kill gets that same task (200) and is charged once.

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service_faults.py --mode server --runs 20
    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service_faults.py --mode workers --runs 20
    env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service_faults.py --mode creates --runs 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_common import ROOT, audit, free_port, make_accounts, start_server, start_worker
from service_load import post_json

TERMINAL = {"succeeded", "failed", "cancelled"}
STEP_DELAY = 0.05
LEASE = 3.0


class Service:
    """The processes of one run: an API server and (mode workers) worker processes, each restartable."""

    def __init__(self, data: Path, log: Path, worker_processes: int) -> None:
        self.data, self.log = data, log
        self.in_process = 0 if worker_processes else 2
        self.server: subprocess.Popen | None = None
        self.url = ""
        self.workers: list[subprocess.Popen | None] = [None] * worker_processes

    def start_server(self) -> None:
        port = free_port()
        self.server = start_server(self.data, port, workers=self.in_process, step_delay=STEP_DELAY, lease_seconds=LEASE, log=self.log)
        self.url = f"http://127.0.0.1:{port}"

    def start_worker(self, i: int) -> None:
        self.workers[i] = start_worker(self.data, workers=1, step_delay=STEP_DELAY, lease_seconds=LEASE, log=self.log)

    def kill(self, proc: subprocess.Popen | None) -> None:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def stop_all(self) -> None:
        for proc in [self.server, *self.workers]:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in [self.server, *self.workers]:
            if proc is not None:
                proc.wait()


def drain(svc: Service, ids: list[str], headers: dict[str, str], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=svc.url, timeout=30) as c:
        while time.monotonic() < deadline:
            states = [c.get(f"/v1/tasks/{tid}", headers=headers).json()["state"] for tid in ids]
            if all(s in TERMINAL for s in states):
                return
            time.sleep(0.5)


def one_run(seed: int, tasks: int, mode: str) -> dict:
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix=f"kinema-fault-{mode}{seed}-"))
    data = root / "data"
    key = make_accounts(data, n=1, credits=1_000_000)[0]
    headers = {"Authorization": f"Bearer {key}"}
    svc = Service(data, root / "service.log", worker_processes=2 if mode == "workers" else 0)
    svc.start_server()
    for i in range(len(svc.workers)):
        svc.start_worker(i)
    ids: list[str] = []
    with httpx.Client(base_url=svc.url, timeout=30) as c:
        for n in range(tasks):
            r = c.post("/v1/tasks", json={"prompt": f"ball {n}", "steps": rng.randint(8, 24), "seed": n}, headers=headers)
            ids.append(r.json()["id"])
        for tid in rng.sample(ids, k=max(1, tasks // 5)):
            c.post(f"/v1/tasks/{tid}/cancel", headers=headers)
    kills = {"server": 0, "worker": 0}
    n_kills = 1 + seed % 3 if mode == "server" else 2 + seed % 3
    for _ in range(n_kills):
        time.sleep(rng.uniform(0.2, 3.0))  # a random point: mid-claim, mid-step, mid-write, mid-finish
        if mode == "server" or rng.random() < 0.25:
            svc.kill(svc.server)
            kills["server"] += 1
            time.sleep(rng.uniform(0.0, 1.0))
            svc.start_server()
        else:
            i = rng.randrange(len(svc.workers))
            svc.kill(svc.workers[i])
            kills["worker"] += 1
            time.sleep(rng.uniform(0.0, 1.0))
            svc.start_worker(i)
    drain(svc, ids, headers)
    svc.stop_all()
    report = audit(data)
    return {"seed": seed, "mode": mode, "kills": kills, **report}


CREATE_CLIENTS, CREATE_TASKS = 20, 1000


async def send_creates(port: int, key: str, numbers: list[int], clients: int) -> dict[int, tuple[int, str]]:
    """Create task n (Idempotency-Key "create-n") for each n, from `clients` connections; n -> (status, id)
    for the creates answered. A create whose connection failed (the server was killed) has no entry."""
    answered: dict[int, tuple[int, str]] = {}

    async def client(mine: list[int]) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return
        try:
            for n in mine:
                body = json.dumps({"prompt": f"ball {n}", "steps": 2, "seed": n}).encode()
                status, data = await post_json(reader, writer, "/v1/tasks", body, {"authorization": f"Bearer {key}", "idempotency-key": f"create-{n}"})
                answered[n] = (status, json.loads(data).get("id", ""))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            return  # the server went away mid-create: this one and the rest of this client's go unanswered
        finally:
            writer.close()

    await asyncio.gather(*(client(numbers[i::clients]) for i in range(clients)))
    return answered


def creates_run(seed: int) -> dict:
    """Kill -9 the server during a burst of creates; retry the unanswered ones by key; check nothing was lost or doubled."""
    import sqlite3

    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix=f"kinema-fault-creates{seed}-"))
    data = root / "data"
    key = make_accounts(data, n=1, credits=10_000_000)[0]
    svc = Service(data, root / "service.log", worker_processes=0)
    svc.in_process = 0  # no workers: every task stays queued, holding its reservation
    svc.start_server()
    port = int(svc.url.rsplit(":", 1)[1])
    numbers = list(range(CREATE_TASKS))

    async def burst_and_kill() -> dict[int, tuple[int, str]]:
        sender = asyncio.ensure_future(send_creates(port, key, numbers, CREATE_CLIENTS))
        await asyncio.sleep(rng.uniform(0.05, 0.4))
        svc.kill(svc.server)
        return await sender

    before = asyncio.run(burst_and_kill())
    time.sleep(rng.uniform(0.0, 0.5))
    svc.start_server()
    port = int(svc.url.rsplit(":", 1)[1])
    unanswered = [n for n in numbers if n not in before]
    after = asyncio.run(send_creates(port, key, unanswered, CREATE_CLIENTS))
    svc.stop_all()
    conn = sqlite3.connect(f"file:{data / 'kinema.db'}?mode=ro", uri=True)
    try:
        by_key = dict(conn.execute("SELECT idempotency_key, id FROM tasks").fetchall())
        tasks_per_key = max((c for (c,) in conn.execute("SELECT count(*) FROM tasks GROUP BY idempotency_key")), default=0)
    finally:
        conn.close()
    created_before = {n: tid for n, (status, tid) in before.items() if status == 201}
    report = audit(data)
    checks = {
        "answered_before_kill": len(before), "sent_again": len(unanswered),
        "sent_again_found_stored": sum(1 for n in unanswered if after.get(n, (0, ""))[0] == 200),
        "non_2xx": sum(1 for status, _ in {**before, **after}.values() if status not in (200, 201)),
        "unanswered_after_retry": sum(1 for n in unanswered if n not in after),
        "answered_201_missing_from_db": sum(1 for n, tid in created_before.items() if by_key.get(f"create-{n}") != tid),
        "retry_got_another_task": sum(1 for n in unanswered if n in after and by_key.get(f"create-{n}") != after[n][1]),
        "max_tasks_per_key": tasks_per_key, "tasks_in_db": len(by_key),
    }  # fmt: skip
    return {"seed": seed, "mode": "creates", "kills": {"server": 1, "worker": 0}, **checks, **report}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=("server", "workers", "creates"), default="workers")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--tasks", type=int, default=12)
    p.add_argument("--out", type=Path, default=None, help="default: docs/results/service_faults[_workers].json")
    a = p.parse_args()
    out = a.out or ROOT / "docs" / "results" / {"server": "service_faults.json", "workers": "service_faults_workers.json", "creates": "service_faults_creates.json"}[a.mode]
    results: list[dict] = []
    t0 = time.perf_counter()
    for seed in range(a.runs):
        r = creates_run(seed) if a.mode == "creates" else one_run(seed, a.tasks, a.mode)
        results.append(r)
        shown = ("seed", "kills", "states", "non_terminal", "max_runs_started", "ledger_problems")
        if a.mode == "creates":
            shown += ("answered_before_kill", "sent_again", "sent_again_found_stored", "answered_201_missing_from_db", "retry_got_another_task", "max_tasks_per_key", "non_2xx")
        print(json.dumps({k: r[k] for k in shown}), flush=True)
        write_summary(out, a.mode, results, t0)  # after every run: an interrupted benchmark still reports the runs it made
    summary = write_summary(out, a.mode, results, t0)
    print(json.dumps({k: v for k, v in summary.items() if k != "runs_detail"}))


def write_summary(out: Path, mode: str, results: list[dict], t0: float) -> dict:
    summary = {
        "mode": mode, "runs": len(results),
        "kill_9s": {"server": sum(r["kills"]["server"] for r in results), "worker": sum(r["kills"]["worker"] for r in results)},
        "tasks": sum(r["tasks"] for r in results), "non_terminal": sum(r["non_terminal"] for r in results),
        "states": {s: sum(r["states"].get(s, 0) for r in results) for s in ("succeeded", "failed", "cancelled", "queued", "running")},
        "ledger_problems": sum(len(r["ledger_problems"]) for r in results), "max_runs_started": max(r["max_runs_started"] for r in results),
        "tasks_run_more_than_once": sum(r["tasks_started_more_than_once"] for r in results),
        "credits_charged": sum(r["credits_charged"] for r in results), "seconds": round(time.perf_counter() - t0, 1),
        "runs_detail": results,
    }  # fmt: skip
    if mode == "creates":
        for k in ("answered_before_kill", "sent_again", "sent_again_found_stored", "non_2xx", "unanswered_after_retry", "answered_201_missing_from_db", "retry_got_another_task"):
            summary[k] = sum(r[k] for r in results)
        summary["max_tasks_per_key"] = max(r["max_tasks_per_key"] for r in results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
