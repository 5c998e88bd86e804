"""Shared by the service benchmarks: a server subprocess with the fast fake backend, worker processes, accounts, and the ledger audit.

Run alone it is the server: `python benchmarks/service_common.py --data-dir D --port P [--step-delay S] [--workers N]`
(`--workers 0`: the API alone), or a worker process (what `kinema worker` runs, with the same backends):
`python benchmarks/service_common.py --role worker --data-dir D [--workers N] [--step-delay S]`.
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "service"))
sys.path.insert(0, str(ROOT / "tests"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings(data_dir: Path, **kw: Any) -> Any:
    from kinema.service.settings import Settings

    base: dict[str, Any] = dict(data_dir=data_dir, poll_seconds=0.1, reap_seconds=0.5, lease_seconds=3.0, max_attempts=3)
    base.update(kw)
    return Settings(**base)


def make_accounts(data_dir: Path, n: int, credits: int) -> list[str]:
    """n pro accounts, each granted `credits` on top of the plan; returns their API keys."""
    from kinema.service.accounts import create_account, create_key, grant
    from kinema.service.app import seed_plans
    from kinema.service.db import open_database

    data_dir.mkdir(parents=True, exist_ok=True)
    s = settings(data_dir)
    engine, sessions = open_database(s.url)
    seed_plans(sessions, s)
    keys = []
    for i in range(n):
        acct = create_account(sessions, f"bench{i}", "pro")
        grant(sessions, acct, credits)
        keys.append(create_key(sessions, acct))
    engine.dispose()
    return keys


def start_server(data_dir: Path, port: int, *, workers: int = 2, step_delay: float = 0.0, backend: str = "fake", lease_seconds: float = 3.0, log: Path | None = None,
                 sqlite_synchronous: str = "NORMAL", worker_nice: int | None = None) -> subprocess.Popen:  # fmt: skip
    cmd = [sys.executable, __file__, "--data-dir", str(data_dir), "--port", str(port), "--workers", str(workers), "--step-delay", str(step_delay), "--backend", backend,
           "--lease-seconds", str(lease_seconds), "--sqlite-synchronous", sqlite_synchronous] + _nice_args(worker_nice)  # fmt: skip
    out = open(log or os.devnull, "ab")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise TimeoutError("server did not start")


def start_worker(data_dir: Path, *, workers: int = 1, step_delay: float = 0.0, backend: str = "fake", lease_seconds: float = 3.0, log: Path | None = None,
                 worker_nice: int | None = None) -> subprocess.Popen:  # fmt: skip
    """A worker process (`run_worker_process`, what `kinema worker` runs) over the server's database; returns once it runs."""
    cmd = [sys.executable, __file__, "--role", "worker", "--data-dir", str(data_dir), "--workers", str(workers), "--step-delay", str(step_delay),
           "--backend", backend, "--lease-seconds", str(lease_seconds)] + _nice_args(worker_nice)  # fmt: skip
    out = open(log or os.devnull, "ab")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=out)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "ready" once its workers are claiming
    if not line.startswith(b"ready"):
        proc.kill()
        raise RuntimeError(f"worker did not start (exit {proc.wait()})")
    return proc


def _nice_args(worker_nice: int | None) -> list[str]:
    """None: the service's default (and no flag, so older checkouts run too)."""
    return [] if worker_nice is None else ["--worker-nice", str(worker_nice)]


def audit(data_dir: Path) -> dict[str, Any]:
    """Every task's ledger entries agree with its state; every balance = grants - charges - open reservations."""
    from sqlalchemy import select

    from kinema.service.db import TERMINAL, Account, LedgerEntry, Task, open_database

    engine, sessions = open_database(settings(data_dir).url)
    outputs = settings(data_dir).outputs_dir
    problems: list[str] = []
    with sessions() as s:
        tasks = s.scalars(select(Task)).all()
        entries = s.scalars(select(LedgerEntry)).all()
        by_task: dict[str, list[LedgerEntry]] = {}
        for e in entries:
            if e.task_id:
                by_task.setdefault(e.task_id, []).append(e)
        for t in tasks:
            kinds = sorted(e.kind for e in by_task.get(t.id, []))
            amounts = {e.kind: e.amount for e in by_task.get(t.id, [])}
            if t.state == "succeeded":  # charged in full, or in part with the rest released (cached storyboard shots)
                released = amounts.get("release", 0)
                ok = kinds in (["capture", "reserve"], ["capture", "release", "reserve"]) and t.credits_reserved == -amounts["reserve"]
                ok = ok and t.credits_charged == t.credits_reserved - released and (released > 0) == ("release" in kinds)
            elif t.state in ("failed", "cancelled"):
                ok = kinds == ["release", "reserve"] and amounts["release"] == -amounts["reserve"] and t.credits_charged == 0
            else:
                ok = kinds == ["reserve"]
            if not ok:
                problems.append(f"task {t.id} {t.state}: ledger {kinds} reserved {t.credits_reserved} charged {t.credits_charged}")
        for a in s.scalars(select(Account)).all():
            grants = sum(e.amount for e in entries if e.account_id == a.id and e.kind == "grant")
            charged = sum(t.credits_charged or 0 for t in tasks if t.account_id == a.id and t.state == "succeeded")
            held = sum(t.credits_reserved for t in tasks if t.account_id == a.id and t.state not in TERMINAL)
            bal = sum(e.amount for e in entries if e.account_id == a.id)
            if bal != grants - charged - held:
                problems.append(f"account {a.name}: balance {bal} != grants {grants} - charged {charged} - held {held}")
            if a.balance != bal:
                problems.append(f"account {a.name}: the kept balance {a.balance} != the sum of its entries {bal}")
        states: dict[str, int] = {}
        for t in tasks:
            states[t.state] = states.get(t.state, 0) + 1
        result = {
            "tasks": len(tasks), "states": states, "non_terminal": sum(t.state not in TERMINAL for t in tasks),
            "succeeded_runs_over_one": sum(1 for t in tasks if t.state == "succeeded" and t.runs_started != 1),
            "tasks_started_more_than_once": sum(1 for t in tasks if t.runs_started > 1),
            "max_runs_started": max((t.runs_started for t in tasks), default=0),
            "succeeded_without_output": sum(1 for t in tasks if t.state == "succeeded" and not (outputs / (t.output_path or "-")).is_file()),
            "orphan_outputs": len({p.name for p in outputs.glob("*.*")} - {t.output_path for t in tasks if t.state == "succeeded"}),
            "credits_charged": sum(t.credits_charged or 0 for t in tasks), "ledger_problems": problems,
        }  # fmt: skip
    engine.dispose()
    return result


def _fake_backend(step_delay: float) -> Any:
    from service_helpers import FakeBackend

    return FakeBackend(step_delay=step_delay)


def _tiny_backend(model_dir: str) -> Any:
    from kinema.engine.native import NativeBackend

    return NativeBackend(model_dir)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--step-delay", type=float, default=0.0)
    p.add_argument("--backend", default="fake", help="fake, builtin, or a model directory")
    p.add_argument("--lease-seconds", type=float, default=3.0)
    p.add_argument("--sqlite-synchronous", default="NORMAL")
    p.add_argument("--role", choices=("server", "worker"), default="server")
    p.add_argument("--worker-nice", type=int, default=None, help="Settings.worker_nice (default: the service's)")
    a = p.parse_args()

    if a.backend == "fake":
        factory = functools.partial(_fake_backend, a.step_delay)
    elif a.backend == "builtin":
        from kinema.commands.serve import native_backend

        factory = functools.partial(native_backend, None)
    else:
        factory = functools.partial(_tiny_backend, a.backend)
    extra: dict[str, Any] = {} if a.sqlite_synchronous == "NORMAL" else {"sqlite_synchronous": a.sqlite_synchronous}  # (the default: also runs older versions)
    if a.worker_nice is not None:
        extra["worker_nice"] = a.worker_nice
    s = settings(a.data_dir, workers=a.workers, lease_seconds=a.lease_seconds, **extra)
    if a.role == "worker":
        import signal
        import threading

        from kinema.service.workers import run_worker_process

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())

        def ready() -> None:
            sys.stdout.write("ready\n")
            sys.stdout.flush()

        run_worker_process(s, factory, stop, ready=ready)
        return
    import uvicorn

    from kinema.service.app import create_app

    uvicorn.run(create_app(s, factory), host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
