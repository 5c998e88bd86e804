"""The service's moving parts: worker threads, the reaper, the webhook sender.

Each worker thread loops: claim a task by lease, resolve its stored request
(the seed was fixed at submit, so a retry makes the same video), run it on
the executor while a heartbeat thread renews the lease, write the file
atomically, then finish the task conditionally on still holding the lease.

They run inside the API server (`kinema serve --workers N`, the default), or in
processes of their own (`kinema worker`, `run_worker_process`) beside a server
started with `--workers 0`: the database is the only thing they share, so a
worker process can be killed at any point (its lease runs out, the reaper of
any process puts its task back in the queue) and any number can run, on this
machine or others (PostgreSQL).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from kinema.engine.backend import Backend
from kinema.errors import KinemaInputError
from kinema.request import GenerationRequest
from kinema.service.errors import code_for_message
from kinema.service.executors import BackendFactory, is_worker_lost, make_executor
from kinema.service.jobs import Claim, Queue
from kinema.service.settings import Settings
from kinema.service.storyboards import run_storyboard_claim  # at import, not at the first job: it costs ~270 ms of CPU
from kinema.service.webhooks import WebhookSender

log = logging.getLogger("kinema.service")
REFILL_CHECK_SECONDS = 600.0  # how often the monthly-credits grant is looked for
PROGRESS_WRITE_SECONDS = 0.25  # at most this often a step's progress is written (the final step always is)


class Workers:
    def __init__(self, settings: Settings, queue: Queue, backend: Backend, backend_factory: BackendFactory, sender: WebhookSender | None, executor: Any = None) -> None:
        self.settings = settings
        self.queue = queue
        self.backend = backend  # for resolving stored requests (reads configs only)
        self.executor = executor if executor is not None else make_executor(settings, backend_factory)
        self.sender = sender
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[str, threading.Event] = {}  # task id -> its stop flag, for jobs running in this process
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def start(self, run_workers: bool = True) -> None:
        self.settings.outputs_dir.mkdir(parents=True, exist_ok=True)
        if run_workers and self.settings.workers > 0:
            load_video_writer()
            self.queue.warm_up()
            self.executor.start()
            for i in range(self.settings.workers):
                self._spawn(self._work_loop, f"kinema-worker-{i}", f"{self.instance}:w{i}")
        self._spawn(self._housekeeping_loop, "kinema-reaper")

    def _spawn(self, target: Any, name: str, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()
        self._threads.clear()
        stop = getattr(self.executor, "stop", None)
        if stop is not None:
            stop()

    # -- loops -------------------------------------------------------------------------
    def _housekeeping_loop(self) -> None:
        from kinema.service.accounts import refill_monthly

        next_refill = 0.0
        while not self._stop.wait(self.settings.reap_seconds):
            try:
                self.queue.reap()
                if self.sender is not None:  # None in `kinema worker` processes: the API servers deliver webhooks
                    self.sender.deliver_due()
                if time.monotonic() >= next_refill:
                    refill_monthly(self.queue.sessions, readers=self.queue.readers)
                    next_refill = time.monotonic() + REFILL_CHECK_SECONDS
            except Exception:  # a database hiccup must not kill the reaper
                log.exception("housekeeping failed; retrying")

    def _work_loop(self, owner: str) -> None:
        lower_thread_priority(self.settings.worker_nice)
        while not self._stop.is_set():
            try:
                claim = self.queue.claim(owner)
            except Exception:
                log.exception("claim failed; retrying")
                claim = None
            if claim is None:
                self._stop.wait(self.settings.poll_seconds)
                continue
            self.run_claim(claim, owner)

    def cancel_local(self, task_id: str) -> None:
        """A cancel reached this process: stop the job at its very next step (other processes see it at their next progress write)."""
        flag = self._running.get(task_id)
        if flag is not None:
            flag.set()

    # -- one job -----------------------------------------------------------------------
    def run_claim(self, claim: Claim, owner: str) -> None:
        stop = threading.Event()  # set when the lease is gone or a cancel was asked for
        self._running[claim.task_id] = stop
        beating = threading.Event()

        def heartbeat() -> None:
            while not beating.wait(self.settings.heartbeat_interval):
                try:
                    if not self.queue.heartbeat(claim.task_id, owner):
                        stop.set()
                except Exception:
                    log.exception("heartbeat failed")

        last_write = [time.monotonic()]  # the claim has just renewed the lease: the first progress write can wait

        def progress(step: int, total: int) -> None:
            t = time.monotonic()
            if step >= total or t - last_write[0] >= PROGRESS_WRITE_SECONDS:
                last_write[0] = t
                if not self.queue.heartbeat(claim.task_id, owner, step, total):
                    stop.set()

        hb = threading.Thread(target=heartbeat, name=f"kinema-heartbeat-{claim.task_id[:8]}", daemon=True)
        hb.start()
        output: Path | None = None
        try:
            if run_storyboard_claim(self, claim, owner, progress, stop):  # a storyboard task: a film, finished there
                return
            request = GenerationRequest.model_validate_json(claim.resolved_json)
            resolved = self.backend.validate(request)
            video = self.executor.run(claim.task_id, resolved, progress, stop.is_set)
            if video is None:
                self.queue.cancelled(claim.task_id, owner)
                return
            output = video.save(self.settings.outputs_dir / f"{claim.task_id}.{claim.output_format}")
            if not self.queue.succeed(claim.task_id, owner, output.name):
                output.unlink(missing_ok=True)  # the lease was lost or the task cancelled: nobody may download this
        except KinemaInputError as exc:
            self.queue.fail(claim.task_id, owner, code_for_message(str(exc)), str(exc))
        except Exception as exc:
            if is_worker_lost(exc):
                self.queue.retry_or_fail(claim.task_id, owner, "internal.worker_lost", str(exc)[:900])
            else:
                log.exception("task %s failed", claim.task_id)
                self.queue.fail(claim.task_id, owner, "internal.generation", f"{type(exc).__name__}: {exc}"[:900])
        finally:
            self._running.pop(claim.task_id, None)
            beating.set()
            hb.join()


def load_video_writer() -> None:
    """Import the video writer (PyAV) that every job ends in, before the first job.

    Why: the engine imports it on first use, to keep `import kinema` light; in a
    worker that first use was the first job, which then spent ~170 ms of CPU on the
    import at the moment the API was busiest: when the first creates of a burst arrive.
    """
    importlib.import_module("kinema.video.io")


def lower_thread_priority(nice: int) -> bool:
    """Lower the calling thread's CPU priority by `nice` (Linux: per thread; the threads it starts, torch's included, inherit it).

    Why: a create is a few milliseconds of CPU while a job is seconds of it; when
    workers share cores with the API server (in its process or beside it), the
    scheduler should give a waiting request the CPU first, or create latency
    climbs with every running job. Returns whether the priority was changed
    (not on platforms without per-thread priorities, nor with nice 0).
    """
    if nice <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:  # e.g. a sandbox that forbids it: run at the normal priority
        log.warning("could not lower the worker's priority: %s", exc)
        return False
    return True


def run_worker_process(settings: Settings, backend_factory: BackendFactory, stop: threading.Event, *, ready: Any = None) -> None:
    """`kinema worker`: run `settings.workers` worker threads (and the reaper) over the database, with no HTTP.

    The API server (`kinema serve --workers 0`) writes tasks; this process claims
    and runs them, writing progress, outputs (`settings.data_dir`, shared with the
    server) and the terminal state with its ledger entries and webhook outbox row,
    exactly as in-process workers do. Blocks until `stop` is set, then finishes
    its running jobs' bookkeeping and returns. `ready()` is called once the
    workers are running.
    """
    from kinema.service import webhooks
    from kinema.service.db import open_database, open_readers

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine, sessions = open_database(settings.url, sqlite_synchronous=settings.sqlite_synchronous)
    read_engine, readers = open_readers(settings.url)
    try:
        queue = Queue(sessions, settings.lease_seconds, settings.max_attempts, on_terminal=webhooks.enqueue, readers=readers)
        # Webhooks are written to the outbox in the terminal transaction here; the API servers deliver them
        # (one sender per server, not one per worker process racing for the same rows).
        workers = Workers(settings, queue, backend_factory(), backend_factory, None)
        workers.start(True)
        try:
            if ready is not None:
                ready()
            stop.wait()
        finally:
            workers.stop()
    finally:
        engine.dispose()
        read_engine.dispose()
