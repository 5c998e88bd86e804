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

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service_faults.py --mode server --runs 20
    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service_faults.py --mode workers --runs 20
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=("server", "workers"), default="workers")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--tasks", type=int, default=12)
    p.add_argument("--out", type=Path, default=None, help="default: docs/results/service_faults[_workers].json")
    a = p.parse_args()
    out = a.out or ROOT / "docs" / "results" / ("service_faults.json" if a.mode == "server" else "service_faults_workers.json")
    results: list[dict] = []
    t0 = time.perf_counter()
    for seed in range(a.runs):
        r = one_run(seed, a.tasks, a.mode)
        results.append(r)
        print(json.dumps({k: r[k] for k in ("seed", "kills", "states", "non_terminal", "max_runs_started", "ledger_problems")}), flush=True)
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
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
