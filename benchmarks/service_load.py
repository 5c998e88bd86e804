"""Load: C concurrent clients submit N tasks to a live server (fast fake backend); then audit.

Checks: no task lost (every created id is in the database and ends succeeded), none run
twice (runs_started == 1, unique ids), ledger balanced to the credit; and the create
latency distribution (p50/p95/p99/max) and throughput.

Clients: C connections (HTTP/1.1 keep-alive) driven by one asyncio loop with a minimal
HTTP client, so the load generator spends little CPU of the machine it shares with the
server. Two ways to load:
- `--rate 0` (closed loop, saturation): each client sends its next create as soon as
  the previous one answered. Latency is then C / throughput (Little's law): it measures
  how fast the server can go, not how fast it answers at a given load.
- `--rate R` (open loop): creates are due at R per second in all (task n at n / R s,
  on client n mod C); latency is counted from when a create was due, so a client held
  up by a slow answer is charged for it (no coordinated omission).
Before the clock starts every client's connection is open and, unless `--no-warm-up`,
has carried one quote (`POST /v1/quotes`: a create's checks and price, nothing stored):
the figure is then a create's latency, not that of 50 connections and their first
requests meeting a server just started. `first_creates_ms` reports each client's first
create apart; run with `--no-warm-up` for the cold start.
The CPU each process spent per create while the creates ran is reported from /proc.
Workers: `--workers W` threads inside the API process (`kinema serve`'s default), or
`--worker-processes P` processes (`kinema worker`, W threads each) beside an API-only server.

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service_load.py --clients 50 --tasks 1000 --rate 0
    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service_load.py --clients 50 --tasks 1000 --rate 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_common import ROOT, audit, free_port, make_accounts, start_server, start_worker

TERMINAL = ("succeeded", "failed", "cancelled")


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def post_json(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive connection; the server answers with Content-Length (or chunked)."""
    head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode() + body)
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, chunked = 0, False
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v)
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    data = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, data
        data += chunk[:-2]


async def submit_all(port: int, keys: list[str], clients: int, tasks: int, rate: float, warm_up: bool = True, on_start: Any = None) -> tuple[list[float], list[str], list[str], float, int, list[float]]:
    """Latencies (s) of the 201s, the ids created, the errors, seconds taken, creates sent late, and the latencies (ms) of each client's first create."""
    latencies: list[float] = []
    first: list[float] = []
    created: list[str] = []
    errors: list[str] = []
    late = [0]
    # Every client's connection is open (and accepted by the server) before the clock starts, in both
    # modes: the figure is the latency of a create, not of opening 50 connections at once beside it.
    connections = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(clients)))

    async def warm(i: int) -> None:
        """One quote per connection (prices a create, stores nothing): the first request on a fresh
        connection to a fresh server costs the server more than any later one."""
        reader, writer = connections[i]
        body = json.dumps({"prompt": f"a red ball number {i}", "seed": i, "steps": 2}).encode()
        status, data = await post_json(reader, writer, "/v1/quotes", body, {"authorization": f"Bearer {keys[i % len(keys)]}"})
        if not 200 <= status < 300:
            raise RuntimeError(f"warm-up quote answered {status}: {data[:200]!r}")

    if warm_up:
        await asyncio.gather(*(warm(i) for i in range(clients)))
    if on_start is not None:
        on_start()
    start = time.perf_counter() + 0.2

    async def client(i: int) -> None:
        reader, writer = connections[i]
        auth = {"authorization": f"Bearer {keys[i % len(keys)]}"}
        try:
            for n in range(i, tasks, clients):
                body = json.dumps({"prompt": f"a red ball number {n}", "seed": n, "steps": 2}).encode()
                if rate > 0:
                    due = start + n / rate
                    wait = due - time.perf_counter()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    elif wait < -0.001:
                        late[0] += 1
                    t0 = due
                else:
                    t0 = time.perf_counter()
                status, data = await post_json(reader, writer, "/v1/tasks", body, {**auth, "idempotency-key": f"load-{n}"})
                dt = time.perf_counter() - t0
                if status == 201:
                    latencies.append(dt)
                    if n < clients:
                        first.append(1000 * dt)
                    created.append(json.loads(data)["id"])
                else:
                    errors.append(f"{status} {data[:200]!r}")
        finally:
            writer.close()

    if rate <= 0:
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, created, errors, time.perf_counter() - start, late[0], first


FLOOR_SERVER = r"""
import asyncio, itertools, sys
ids = itertools.count()
async def handle(r, w):
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            n = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")), 0)
            await r.readexactly(n)
            body = b'{"id": "%d"}' % next(ids)
            w.write(b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def floor(clients: int, tasks: int, rate: float, warm_up: bool) -> dict:
    """The same clients and schedule against a trivial asyncio responder (no framework, no database):
    the latency this machine gives any Python server at this moment, the floor under the service's figures."""
    import subprocess

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, str(port)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"ready")
    try:
        latencies, created, errors, seconds, late, _ = asyncio.run(submit_all(port, ["-"], clients, tasks, rate, warm_up))
    finally:
        proc.kill()
        proc.wait()
    ms = sorted(1000 * x for x in latencies)
    return {"p50": percentile(ms, 0.5), "p95": percentile(ms, 0.95), "p99": percentile(ms, 0.99), "max": ms[-1], "per_second": len(ms) / seconds, "late": late}


def cpu_seconds(pid: int) -> float | None:
    """A process's CPU time so far (user + system; Linux /proc), or None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ms_per_create(before: dict[str, float | None], after: dict[str, float | None], creates: int) -> dict[str, float | None]:
    """Where the machine's CPU went during the creates: each process's CPU milliseconds per create."""
    return {k: None if before[k] is None or after[k] is None or not creates else round(1000 * (after[k] - before[k]) / creates, 3) for k in before}  # type: ignore[operator]


def cpu_now(server: int, workers: list[int]) -> dict[str, float | None]:
    load = resource.getrusage(resource.RUSAGE_SELF)
    return {"server": cpu_seconds(server), "worker_processes": _sum(cpu_seconds(w) for w in workers), "load_generator": load.ru_utime + load.ru_stime}


def _sum(xs: Any) -> float | None:
    xs = list(xs)
    return None if any(x is None for x in xs) else sum(xs)


def wait_terminal(db: Path, ids: list[str], timeout: float) -> None:
    """Poll the database (read-only, beside the server under WAL) until every created task is terminal."""
    deadline = time.monotonic() + timeout
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        while time.monotonic() < deadline:
            left = conn.execute(f"SELECT count(*) FROM tasks WHERE state NOT IN {TERMINAL}").fetchone()[0]
            if left == 0:
                return
            time.sleep(0.2)
    finally:
        conn.close()


def check_created(db: Path, created: list[str]) -> dict:
    """No task lost: every id the API answered 201 for is in the database, once, succeeded."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = dict(conn.execute("SELECT id, state FROM tasks").fetchall())
    finally:
        conn.close()
    return {
        "created_ids_missing_from_db": sum(1 for t in created if t not in rows),
        "created_ids_not_succeeded": sum(1 for t in created if rows.get(t) != "succeeded"),
        "db_tasks_not_created_by_a_201": len(set(rows) - set(created)),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--rate", type=float, default=0.0, help="creates per second in all (open loop); 0: closed loop, as fast as the server answers")
    p.add_argument("--workers", type=int, default=2, help="worker threads: in the API process, or in each worker process")
    p.add_argument("--worker-processes", type=int, default=0, help="run the workers in this many `kinema worker` processes (the API process runs none)")
    p.add_argument("--backend", default="fake", help="fake, tiny (tests' tiny random model) or builtin")
    p.add_argument("--sqlite-synchronous", default="NORMAL", help="NORMAL (default) or FULL (an fsync per commit)")
    p.add_argument("--worker-nice", type=int, default=None, help="the workers' CPU priority offset (default: the service's, 10; 0: the API's own)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "service_load.json")
    p.add_argument("--lease-seconds", type=float, default=30.0, help="the service default; short leases under heavy write contention can expire mid-job and re-run it")
    p.add_argument("--timeout", type=float, default=1800.0, help="stop waiting for tasks after this many seconds")
    p.add_argument("--no-warm-up", action="store_true", help="skip the warm-up (one quote per connection before the clock starts): the first creates then meet a cold server")
    p.add_argument("--no-floor", action="store_true", help="skip the machine's latency floor (the same load against a trivial responder)")
    a = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="kinema-load-"))
    backend = a.backend
    if backend == "tiny":
        from conftest import build_tiny_model

        backend = str(build_tiny_model(root / "model"))
    data = root / "data"
    keys = make_accounts(data, n=10, credits=10_000_000)
    machine_floor = None if a.no_floor else floor(a.clients, a.tasks, a.rate, not a.no_warm_up)
    port = free_port()
    load_before = os.getloadavg()
    in_process = a.workers if a.worker_processes == 0 else 0
    server = start_server(data, port, workers=in_process, backend=backend, lease_seconds=a.lease_seconds, log=root / "server.log", sqlite_synchronous=a.sqlite_synchronous, worker_nice=a.worker_nice)
    workers = [start_worker(data, workers=a.workers, backend=backend, lease_seconds=a.lease_seconds, log=root / f"worker{i}.log", worker_nice=a.worker_nice) for i in range(a.worker_processes)]
    t_start = time.perf_counter()
    cpu_before: dict[str, float | None] = {}
    on_start = lambda: cpu_before.update(cpu_now(server.pid, [w.pid for w in workers]))  # noqa: E731 - once the warm-up is over
    latencies, created, errors, submit_s, late, first = asyncio.run(submit_all(port, keys, a.clients, a.tasks, a.rate, warm_up=not a.no_warm_up, on_start=on_start))
    cpu_after = cpu_now(server.pid, [w.pid for w in workers])
    wait_terminal(data / "kinema.db", created, a.timeout)
    total_s = time.perf_counter() - t_start
    load_after = os.getloadavg()
    for proc in [server, *workers]:
        proc.terminate()
    for proc in [server, *workers]:
        proc.wait()
    report = audit(data)
    ms = sorted(1000 * x for x in latencies)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "backend": a.backend, "clients": a.clients, "rate_per_s": a.rate or "closed loop", "tasks_requested": a.tasks, "tasks_created": len(created), "unique_ids": len(set(created)),
        "create_errors": errors[:10], "create_error_count": len(errors), "creates_sent_late": late, "warm_up": not a.no_warm_up,
        "first_creates_ms": {"of": len(first), "p50": percentile(first, 0.5), "max": max(first)} if first else None,
        "create_latency_ms": {"p50": percentile(ms, 0.5), "p95": percentile(ms, 0.95), "p99": percentile(ms, 0.99), "max": ms[-1], "mean": sum(ms) / len(ms)} if ms else None,
        "machine_floor_latency_ms": machine_floor,
        "submit_seconds": submit_s, "creates_per_second": len(created) / submit_s, "total_seconds": total_s,
        "cpu_ms_per_create_while_submitting": cpu_ms_per_create(cpu_before, cpu_after, len(created)),
        "workers": a.workers, "worker_processes": a.worker_processes, "lease_seconds": a.lease_seconds, "sqlite_synchronous": a.sqlite_synchronous,
        "worker_nice": a.worker_nice if a.worker_nice is not None else "default (10)", "created": check_created(data / "kinema.db", created), "audit": report,
    }  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
