"""`kinema serve --worker-processes`: the supervisor of worker processes, alone and behind the real CLI.

Every wait here is a wait for the machine (a process to start or exit), with a
generous deadline; none is a speed assertion.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from kinema.service.supervisor import WorkerSupervisor  # noqa: E402

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def until(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@linux_only
def test_workers_are_started_replaced_when_they_die_and_stopped() -> None:
    sup = WorkerSupervisor(SLEEPER, 2, restart_delay=0.05, poll_seconds=0.02)
    sup.start()
    try:
        first = until(lambda: sup.pids if len(sup.pids) == 2 else None, what="two workers")
        os.kill(first[0], signal.SIGKILL)
        now = until(lambda: sup.pids if len(sup.pids) == 2 and first[0] not in sup.pids else None, what="a replacement")
        assert first[1] in now and sup.restarts == 1
    finally:
        sup.stop()
    assert sup.pids == [] and not any(alive(p) for p in (*first, *now))


@linux_only
def test_stop_kills_a_worker_that_ignores_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "deaf"
    deaf = f"import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); pathlib.Path({str(ready)!r}).touch(); time.sleep(600)"
    sup = WorkerSupervisor([sys.executable, "-c", deaf], 1, stop_seconds=0.5, poll_seconds=0.02)
    sup.start()
    pid = until(lambda: sup.pids and sup.pids[0], what="the worker")
    until(ready.exists, what="the worker to ignore SIGTERM")
    sup.stop()
    assert not alive(pid)


def test_replacements_back_off_while_they_keep_failing_and_reset_once_one_lives() -> None:
    """The watcher's decisions on a clock of the test's own (`_tend(now)`), with real, quickly exiting workers."""
    sup = WorkerSupervisor([sys.executable, "-c", "pass"], 1, restart_delay=1.0, max_restart_delay=4.0, healthy_seconds=30.0)
    now = 1000.0
    sup._tend(now)  # the first worker
    delays = []
    for _ in range(4):  # each exits 0.1 s after it started
        sup._slots[0].proc.wait()
        now += 0.1
        sup._tend(now)
        assert sup._slots[0].proc is None  # nothing is started before its delay is over
        delays.append(round(sup._slots[0].due - now, 3))
        now = sup._slots[0].due
        sup._tend(now)
    assert delays == [1.0, 2.0, 4.0, 4.0] and sup.restarts == 4
    sup._slots[0].proc.wait()
    now += 40.0  # this one lived past healthy_seconds
    sup._tend(now)
    assert round(sup._slots[0].due - now, 3) == 1.0


@linux_only
def test_workers_die_with_a_killed_server(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from kinema.service.supervisor import WorkerSupervisor
            sup = WorkerSupervisor({SLEEPER!r}, 2, poll_seconds=0.02)
            sup.start()
            while len(sup.pids) < 2:
                time.sleep(0.02)
            print(" ".join(map(str, sup.pids)), flush=True)
            time.sleep(600)
        """)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids)
    finally:
        parent.kill()
        parent.wait()
    until(lambda: not any(alive(p) for p in pids), what="the orphaned workers to exit")


# -- behind the CLI --------------------------------------------------------------------------


def test_serve_checks_the_option_and_hands_the_workers_its_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    import kinema.service.app as service_app
    import kinema.service.supervisor as supervisor
    from kinema.cli import app

    seen: dict = {}

    class Recorder:
        def __init__(self, argv, count, **kw) -> None:
            seen.update(argv=argv, count=count, **kw)

        def start(self) -> None:
            seen["started"] = True

        def stop(self) -> None:
            seen["stopped"] = True

    monkeypatch.setattr(service_app, "create_app", lambda settings, factory: seen.setdefault("settings", settings))
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: None)
    monkeypatch.setattr(supervisor, "WorkerSupervisor", Recorder)
    d = str(tmp_path)
    r = CliRunner().invoke(app, ["serve", "--data-dir", d, "--worker-processes", "2", "--workers", "3", "--lease-seconds", "12", "--worker-nice", "5"])
    assert r.exit_code == 0, r.output
    assert seen["settings"].workers == 0  # the API process runs no task
    assert seen["count"] == 2 and seen["stop_seconds"] == 12.0 and seen["started"] and seen["stopped"]
    argv = seen["argv"]
    assert argv[:4] == [sys.executable, "-m", "kinema.cli", "worker"]
    flags = dict(zip(argv[4::2], argv[5::2]))
    assert flags["--data-dir"] == str(tmp_path.absolute()) and flags["--workers"] == "3" and flags["--nice"] == "5" and float(flags["--lease-seconds"]) == 12.0
    assert "--database-url" not in argv and "--model" not in argv  # the server's own defaults: SQLite in --data-dir, the built-in model

    for bad in (["--worker-processes", "-1"], ["--worker-processes", "1", "--executor", "ray"], ["--worker-processes", "1", "--workers", "0"]):
        seen.clear()
        r = CliRunner().invoke(app, ["serve", "--data-dir", d, *bad])
        assert r.exit_code != 0 and "--worker-processes" in str(r.exception or r.output) and "settings" not in seen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port: int, method: str, path: str, key: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


@linux_only
def test_kinema_serve_runs_tasks_in_its_worker_process_and_replaces_a_killed_one(tmp_path: Path) -> None:
    """The real command with the built-in model: the API process runs no task, its worker process does."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    kinema = [sys.executable, "-m", "kinema.cli"]
    made = subprocess.run([*kinema, "admin", "create-account", "ann", "--plan", "pro", "--data-dir", str(tmp_path)], capture_output=True, text=True, env=env, check=True)
    key = re.search(r"api key: (kn_\S+)", made.stdout).group(1)
    port = free_port()
    server = subprocess.Popen([*kinema, "serve", "--data-dir", str(tmp_path), "--port", str(port), "--worker-processes", "1", "--lease-seconds", "10"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        def up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                return server.poll() is not None and pytest.fail(f"serve exited with {server.returncode}")

        until(up, timeout=180, what="the server")
        worker = until(lambda: children(server.pid), timeout=60, what="the worker process")
        assert len(worker) == 1

        def run_one(prompt: str) -> dict:
            task = call(port, "POST", "/v1/tasks", key, {"prompt": prompt, "steps": 2, "seconds": 1})
            return until(lambda: (t := call(port, "GET", f"/v1/tasks/{task['id']}", key))["state"] in ("succeeded", "failed", "cancelled") and t,
                         timeout=300, what="the task")  # fmt: skip

        assert run_one("a red ball moving left")["state"] == "succeeded"
        os.kill(next(iter(worker)), signal.SIGKILL)
        replaced = until(lambda: (c := children(server.pid)) and c != worker and c, timeout=60, what="a new worker process")
        assert run_one("a blue square moving up")["state"] == "succeeded"
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    until(lambda: not any(alive(p) for p in replaced), what="the worker to stop with the server")
