"""Load: C concurrent clients submit N tasks to a live server (fast fake backend); then audit.

Checks: no task lost (every created id ends terminal and succeeded), none run twice
(runs_started == 1 and the ids are unique), ledger balanced to the credit, and the
create latency distribution (p50/p99). `--backend tiny|builtin` makes the smaller real run.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service_load.py --clients 50 --tasks 1000
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_common import ROOT, audit, free_port, make_accounts, start_server


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--backend", default="fake", help="fake, tiny (tests' tiny random model) or builtin")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "service_load.json")
    p.add_argument("--lease-seconds", type=float, default=30.0, help="the service default; short leases under heavy write contention can expire mid-job and re-run it")
    p.add_argument("--timeout", type=float, default=1800.0, help="stop waiting for tasks after this many seconds")
    a = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="kinema-load-"))
    backend = a.backend
    if backend == "tiny":
        from conftest import build_tiny_model

        backend = str(build_tiny_model(root / "model"))
    keys = make_accounts(root / "data", n=10, credits=10_000_000)
    port = free_port()
    server = start_server(root / "data", port, workers=a.workers, backend=backend, lease_seconds=a.lease_seconds, log=root / "server.log")
    url = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    created: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(a.tasks))

    def client(i: int) -> None:
        headers = {"Authorization": f"Bearer {keys[i % len(keys)]}"}
        with httpx.Client(base_url=url, timeout=120) as c:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                body = {"prompt": f"a red ball number {n}", "seed": n, "steps": 2}
                t0 = time.perf_counter()
                r = c.post("/v1/tasks", json=body, headers={**headers, "Idempotency-Key": f"load-{n}"})
                dt = time.perf_counter() - t0
                with lock:
                    if r.status_code == 201:
                        latencies.append(dt)
                        created.append(r.json()["id"])
                    else:
                        errors.append(f"{r.status_code} {r.text[:200]}")

    t_start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    submit_s = time.perf_counter() - t_start
    deadline = time.monotonic() + a.timeout
    with httpx.Client(base_url=url, timeout=60) as c:
        pending = set(created)
        while pending and time.monotonic() < deadline:
            for tid in list(pending)[:50]:
                key = None
                for k in keys:  # tasks are private: find the owner's key
                    r = c.get(f"/v1/tasks/{tid}", headers={"Authorization": f"Bearer {k}"})
                    if r.status_code == 200:
                        key = k
                        if r.json()["state"] in ("succeeded", "failed", "cancelled"):
                            pending.discard(tid)
                        break
                if key is None:
                    pending.discard(tid)
            time.sleep(0.2)
    total_s = time.perf_counter() - t_start
    server.terminate()
    server.wait()
    report = audit(root / "data")
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores", "backend": a.backend,
        "clients": a.clients, "tasks_requested": a.tasks, "tasks_created": len(created), "unique_ids": len(set(created)),
        "create_errors": errors[:10], "create_error_count": len(errors),
        "create_latency_ms": {"p50": 1000 * percentile(latencies, 0.5), "p99": 1000 * percentile(latencies, 0.99), "max": 1000 * max(latencies)} if latencies else None,
        "submit_seconds": submit_s, "total_seconds": total_s, "workers": a.workers, "lease_seconds": a.lease_seconds, "audit": report,
    }  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
