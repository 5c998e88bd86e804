"""Worker processes that `kinema serve --worker-processes N` starts, watches and stops.

Why processes: worker threads in the API process share its GIL, and while a job
runs Python code (bookkeeping, encoding) every request in flight waits for it;
under a burst of creates that doubles the API's latency (docs/benchmarks.md,
"Video service"). `kinema worker` processes avoid that, but asked the operator
to start and watch them. The supervisor keeps the one-command set-up: it runs
each worker as a child process, starts a new one when one exits (backing off
when they keep failing), and stops them all when the server stops. Children
also die with the server (Linux: a parent-death signal), so a server killed
with kill -9 and started again does not leave the old workers running beside
the new ones. Nothing is lost either way: a killed worker's job is retried by
its lease (workers.py).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger("kinema.service")

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class WorkerSupervisor:
    """Keep `count` copies of the command `argv` running until `stop()`.

    restart_delay: the wait before replacing a worker that exited; it doubles
        (up to max_restart_delay) each time a replacement exits within
        `healthy_seconds`, and starts again from restart_delay once one lives longer.
    stop_seconds: how long `stop()` waits after SIGTERM (a worker finishes its
        running job's bookkeeping) before it kills what is left.
    """

    def __init__(self, argv: Sequence[str], count: int, *, restart_delay: float = 1.0, max_restart_delay: float = 60.0,
                 healthy_seconds: float = 30.0, stop_seconds: float = 30.0, poll_seconds: float = 0.2) -> None:  # fmt: skip
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.argv = list(argv)
        self.count = count
        self.restart_delay, self.max_restart_delay = restart_delay, max_restart_delay
        self.healthy_seconds, self.stop_seconds, self.poll_seconds = healthy_seconds, stop_seconds, poll_seconds
        self.restarts = 0  # replacements started so far (all slots)
        self._slots = [_Slot(delay=restart_delay) for _ in range(count)]
        self._stop = threading.Event()
        self._lock = threading.Lock()  # start/replace vs stop: no worker is started once stopping has begun
        self._watcher: threading.Thread | None = None

    @property
    def pids(self) -> list[int]:
        """The running workers' process ids (for operators and tests)."""
        with self._lock:
            return [w.proc.pid for w in self._slots if w.proc is not None and w.proc.poll() is None]

    def start(self) -> None:
        """Start the workers (from the watcher thread, which lives until `stop`: a parent-death signal
        fires when the *thread* that started the child ends, so a short-lived caller must not start them)."""
        self._watcher = threading.Thread(target=self._watch, name="kinema-worker-supervisor", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """SIGTERM every worker, wait up to `stop_seconds` for them to finish, then kill the rest."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
        with self._lock:
            procs = [w.proc for w in self._slots if w.proc is not None]
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + self.stop_seconds
        for p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker process %d did not stop within %.0f s; killing it (its job is retried by its lease)", p.pid, self.stop_seconds)
                p.kill()
                p.wait()

    def _spawn(self, slot: _Slot, now: float) -> None:
        slot.proc = subprocess.Popen(self.argv, preexec_fn=_die_with_parent(os.getpid()), close_fds=True)
        slot.started_at = now

    def _watch(self) -> None:
        while True:
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    self._tend(time.monotonic())
                except OSError:  # the worker could not be started (e.g. out of processes): try again at the next poll
                    log.exception("could not start a worker process; retrying")
            self._stop.wait(self.poll_seconds)

    def _tend(self, now: float) -> None:
        """Note the workers that exited and start the ones that are due (under the lock)."""
        for slot in self._slots:
            proc = slot.proc
            if proc is not None and proc.poll() is not None:
                lived = now - slot.started_at
                if lived >= self.healthy_seconds:
                    slot.delay = self.restart_delay
                log.warning("worker process %d exited with code %s after %.1f s; starting another in %.1f s",
                            proc.pid, proc.returncode, lived, slot.delay)  # fmt: skip
                slot.proc = None
                slot.due = now + slot.delay
                slot.delay = min(self.max_restart_delay, slot.delay * 2)
            elif proc is None and now >= slot.due:
                if slot.started_at is not None:
                    self.restarts += 1
                self._spawn(slot, now)


@dataclass
class _Slot:
    """One worker's place: its process (None between an exit and its replacement) and its back-off."""

    delay: float  # the wait before the next replacement
    proc: subprocess.Popen | None = None
    started_at: float | None = None  # None until its first worker starts
    due: float = 0.0  # when a replacement may start


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec function: the child gets SIGTERM when its parent dies (Linux; elsewhere nothing).

    libc is looked up here, in the parent: between fork and exec the child may only
    call what needs no lock another thread could have held at the fork (no imports)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(0)

    return arm
