"""How a claimed job runs. The service needs one small thing from an executor:

    class Executor(Protocol):
        def start(self) -> None: ...        # load models, start processes/actors
        def stop(self) -> None: ...
        def run(self, job_id: str, resolved: ResolvedRequest,
                progress: Progress | None = None,
                cancelled: Callable[[], bool] = lambda: False) -> Video | None: ...

Contract for `run` (what executors/ray.py's `RayPool` implements too):
- It is called from one of the service's worker threads, at most `size`
  calls at a time, and blocks until the job ends. The service has already
  validated and resolved the request (seed chosen, defaults filled) and
  writes the returned frames itself, so an executor never touches the
  database or the output directory.
- `progress(step, total)` must be called after every denoising step (the
  engine's own callback, relayed); the service renews the job's lease and
  records progress there, so a job that reports nothing for `lease_seconds`
  is taken as lost.
- `cancelled()` must be checked at every step; once it returns True the job
  stops within one step and `run` returns None.
- A worker that dies mid-job (process killed, node gone) raises `WorkerLost`;
  the service then retries the job (bounded attempts) or fails it with
  `internal.worker_lost`, releasing its credits. Any other exception fails
  the job with `internal.generation` (or `input.*` for a KinemaInputError).
- `make_executor(settings, backend_factory)` picks the class: "local" gives
  `LocalExecutor`; "ray" imports executors/ray.py lazily and builds
  `RayPool(RayExecutorConfig(address=settings.ray_address, actors=settings.workers,
  gpus_per_actor=settings.gpus_per_worker), backend_factory)`, so a process
  without Ray installed never imports it. `backend_factory` must pickle for
  Ray (a module-level function or functools.partial). `settings.workers == 0`
  (an API-only server) gives an empty `LocalExecutor`.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from kinema.engine.backend import Backend, Progress, ResolvedRequest, Video

if TYPE_CHECKING:
    from kinema.service.settings import Settings

BackendFactory = Callable[[], Backend]


class JobCancelled(Exception):
    """Raised from the progress callback to stop the engine at the current step."""


class WorkerLost(RuntimeError):
    """The worker running a job died; the job did not finish (the Ray executor raises its own subclass-compatible one)."""


class Executor(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def run(
        self, job_id: str, resolved: ResolvedRequest, progress: Progress | None = None, cancelled: Callable[[], bool] = lambda: False
    ) -> Video | None: ...


class LocalExecutor:
    """In-process: `size` backends, each kept loaded, lent to one job at a time."""

    def __init__(self, backend_factory: BackendFactory, size: int = 1, preload: bool = True) -> None:
        self.backend_factory = backend_factory
        self.size = size
        self.preload = preload
        self._free: queue.Queue[Backend] = queue.Queue()

    def start(self) -> None:
        for _ in range(self.size):
            backend = self.backend_factory()
            load = getattr(backend, "load", None)
            if self.preload and load is not None:
                load()
            self._free.put(backend)

    def stop(self) -> None:
        while not self._free.empty():
            self._free.get_nowait()

    def run(
        self, job_id: str, resolved: ResolvedRequest, progress: Progress | None = None, cancelled: Callable[[], bool] = lambda: False
    ) -> Video | None:
        backend = self._free.get()
        try:

            def on_step(step: int, total: int) -> None:
                if progress is not None:
                    progress(step, total)
                if cancelled():
                    raise JobCancelled(job_id)

            if cancelled():
                return None
            try:
                return backend.generate(resolved, on_step)
            except JobCancelled:
                return None
        finally:
            self._free.put(backend)


def make_executor(settings: Settings, backend_factory: BackendFactory) -> Any:
    if settings.executor == "ray" and settings.workers > 0:
        from kinema.service.executors.ray import RayExecutorConfig, RayPool

        config = RayExecutorConfig(address=settings.ray_address, actors=settings.workers, gpus_per_actor=settings.gpus_per_worker)
        return RayPool(config, backend_factory)
    return LocalExecutor(backend_factory, size=settings.workers)


def is_worker_lost(exc: BaseException) -> bool:
    """Ours or the Ray pool's WorkerLost (a separate class, so no Ray import is needed to check)."""
    return isinstance(exc, WorkerLost) or type(exc).__name__ == "WorkerLost"
