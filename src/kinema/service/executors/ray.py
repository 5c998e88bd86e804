"""Run generation jobs on a Ray cluster: one actor per GPU (or per CPU slot), each keeping its model loaded.

Why actors and not Ray tasks: loading a model costs far more than one short
video, so each worker process loads it once (`GenerationWorker.__init__`) and
then serves job after job. The service process stays the single owner of the
database: it resolves the request, hands the `ResolvedRequest` (images already
loaded into it, so workers on other machines need none of the server's files)
to a free actor, relays progress to the job, and writes the returned frames
exactly as the local executor does.

Progress and cancellation cross the process boundary by polling: each actor
runs with two threads (`max_concurrency=2`), one generating and one answering
`poll` and `cancel`. The service side asks for progress every `poll_seconds`;
a cancel sets an event the generating thread checks at every denoising step,
so a cancelled job stops within one step, as in-process. An actor that dies
mid-job (its process or node lost) surfaces as `WorkerLost`; Ray restarts the
actor, reloading its model, and the service retries or fails the job.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from kinema.engine.backend import Progress, ResolvedRequest, Video
from kinema.service.executors import BackendFactory, JobCancelled
from kinema.service.executors import WorkerLost as _WorkerLost

if TYPE_CHECKING:
    from ray.actor import ActorHandle


class WorkerLost(_WorkerLost):
    """The actor running a job died (process killed, node gone); the job did not finish."""


@dataclass(frozen=True)
class RayExecutorConfig:
    """Where the cluster is and how to size the actor pool.

    address: `None` starts a private local Ray (tests, one machine); "auto" joins
        the cluster this machine belongs to; "ray://host:10001" a remote one.
    actors: `None` means one per GPU in the cluster when `gpus_per_actor > 0`,
        else one per `cpus_per_actor` CPUs.
    gpus_per_actor: Ray's `num_gpus` for each actor (`kinema serve --gpus-per-worker`):
        1 gives each actor a GPU of its own (Ray sets CUDA_VISIBLE_DEVICES for it),
        a fraction packs several actors on one GPU, 0 runs on CPUs.
    """

    address: str | None = None
    actors: int | None = None
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    local_cpus: int | None = None  # CPUs a private local Ray may use (None: Ray's default, all of them)
    poll_seconds: float = 0.2
    max_actor_restarts: int = 3
    ray_init_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise ValueError(f"actors must be >= 1, got {self.actors}")
        if self.poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be > 0, got {self.poll_seconds}")
        if self.gpus_per_actor < 0 or self.cpus_per_actor < 0:
            raise ValueError(f"gpus_per_actor and cpus_per_actor must be >= 0, got {self.gpus_per_actor} and {self.cpus_per_actor}")


@dataclass(frozen=True)
class WorkerResult:
    """What an actor sends back: the frames (through Ray's object store) and how they were made."""

    video: Video | None
    cancelled: bool
    steps_done: int


class GenerationWorker:
    """The actor body (wrapped by `ray.remote` at start-up, so importing this module needs no Ray).

    Jobs are keyed by id so a `cancel` that arrives before its `run` starts is
    not lost.
    """

    def __init__(self, make_backend: BackendFactory) -> None:
        self.backend = make_backend()
        load = getattr(self.backend, "load", None)
        if load is not None:
            load()  # the whole point of an actor: pay for the weights once
        self._lock = threading.Lock()
        self._cancel: dict[str, threading.Event] = {}
        self._progress: dict[str, tuple[int, int]] = {}

    def info(self) -> dict[str, Any]:
        import ray

        ctx = ray.get_runtime_context()
        with self._lock:
            jobs = sorted(self._cancel)
        return {"pid": os.getpid(), "node_id": ctx.get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "jobs": jobs}

    def _event(self, job_id: str) -> threading.Event:
        with self._lock:
            return self._cancel.setdefault(job_id, threading.Event())

    def run(self, job_id: str, resolved: ResolvedRequest) -> WorkerResult:
        cancel = self._event(job_id)
        steps = [0]

        def progress(step: int, total: int) -> None:
            steps[0] = step
            with self._lock:
                self._progress[job_id] = (step, total)
            if cancel.is_set():
                raise JobCancelled(job_id)

        try:
            if cancel.is_set():
                return WorkerResult(video=None, cancelled=True, steps_done=0)
            video = self.backend.generate(resolved, progress)
            return WorkerResult(video=video, cancelled=False, steps_done=steps[0])
        except JobCancelled:
            return WorkerResult(video=None, cancelled=True, steps_done=steps[0])
        finally:
            with self._lock:
                self._cancel.pop(job_id, None)
                self._progress.pop(job_id, None)

    def poll(self, job_id: str) -> tuple[int, int] | None:
        with self._lock:
            return self._progress.get(job_id)

    def cancel(self, job_id: str) -> None:
        self._event(job_id).set()

    def forget(self, job_id: str) -> None:
        """Drop a cancel flag for a job that never reached this actor."""
        with self._lock:
            self._cancel.pop(job_id, None)


class RayPool:
    """A fixed pool of `GenerationWorker` actors; `run` blocks the calling thread until its job ends.

    The service calls `run` from as many threads as it has actors; a call
    waits for a free actor, so an actor never runs two jobs at once.
    """

    def __init__(self, config: RayExecutorConfig, make_backend: BackendFactory) -> None:
        self.config = config
        self.make_backend = make_backend
        self._actors: list[ActorHandle] = []
        self._free: queue.Queue[ActorHandle] = queue.Queue()
        self._owns_ray = False
        self._started = False

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        import ray

        if self._started:
            return
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, **self.config.ray_init_options}
            if self.config.address is None and self.config.local_cpus is not None:
                options.setdefault("num_cpus", self.config.local_cpus)
            ray.init(address=self.config.address, **options)
            self._owns_ray = True
        try:
            count = self._actor_count(ray.cluster_resources())
        except Exception:
            if self._owns_ray:
                ray.shutdown()
                self._owns_ray = False
            raise
        remote = self._remote_worker()
        self._actors = [remote.remote(self.make_backend) for _ in range(count)]
        ray.get([a.info.remote() for a in self._actors])  # fail now if a model cannot load, not on the first job
        for actor in self._actors:
            self._free.put(actor)
        self._started = True

    def actor_options(self) -> dict[str, Any]:
        """What each actor is created with (`ray.remote(**options)`): its CPUs, GPUs, threads and restarts."""
        return {
            "num_cpus": self.config.cpus_per_actor,
            "num_gpus": self.config.gpus_per_actor,
            "max_concurrency": 2,  # one thread generates, the other answers poll/cancel
            "max_restarts": self.config.max_actor_restarts,
        }

    def _remote_worker(self) -> Any:
        import ray

        return ray.remote(**self.actor_options())(GenerationWorker)

    def _actor_count(self, resources: dict[str, float]) -> int:
        count = self.config.actors or self._default_actor_count(resources)
        need = count * self.config.gpus_per_actor
        if need > resources.get("GPU", 0):  # else the actors would wait for GPUs forever
            raise RuntimeError(
                f"{count} actors x {self.config.gpus_per_actor:g} GPUs need {need:g} GPUs; the Ray cluster has {resources.get('GPU', 0):g}"
                " (use fewer workers, a smaller gpus_per_worker, or 0 to run on CPUs)"
            )
        return count

    def _default_actor_count(self, resources: dict[str, float]) -> int:
        if self.config.gpus_per_actor > 0:
            n = int(resources.get("GPU", 0) // self.config.gpus_per_actor)
            if n < 1:
                raise RuntimeError("the Ray cluster has no GPU; set gpus_per_actor=0 to run on CPUs")
            return n
        return max(1, int(resources.get("CPU", 1) // self.config.cpus_per_actor))

    def stop(self) -> None:
        import ray

        for actor in self._actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone is fine
                pass
        self._actors = []
        self._free = queue.Queue()
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False
        self._started = False

    def wait_idle(self) -> None:
        """Block until every actor is free and alive (e.g. a lost one restarted): before a clean stop, in tests."""
        held = [self._free.get() for _ in range(len(self._actors))]
        for actor in held:
            self._free.put(actor)

    @property
    def size(self) -> int:
        return len(self._actors)

    def workers_info(self) -> list[dict[str, Any]]:
        import ray

        return ray.get([a.info.remote() for a in self._actors])

    # -- running ------------------------------------------------------------------------
    def run(
        self,
        job_id: str,
        resolved: ResolvedRequest,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Video | None:
        """The finished video, or None if the job was cancelled. Raises WorkerLost if the actor died."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        if not self._started:
            raise RuntimeError("RayPool.start() first")
        actor = self._free.get()
        lost = False
        try:
            ref = actor.run.remote(job_id, resolved)
            cancel_sent = False
            last: tuple[int, int] | None = None
            while True:
                done, _ = ray.wait([ref], timeout=self.config.poll_seconds)
                if not cancel_sent and cancelled():
                    actor.cancel.remote(job_id)
                    cancel_sent = True
                if done:
                    break
                try:
                    now = ray.get(actor.poll.remote(job_id))
                except RayActorError:
                    break  # the run ref will say what happened
                if now is not None and now != last and progress is not None:
                    progress(*now)
                    last = now
            try:
                result: WorkerResult = ray.get(ref)
            except RayActorError as exc:
                lost = True
                raise WorkerLost(f"Ray actor running job {job_id} died: {exc}") from exc
            except RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, BaseException):
                    raise cause from None
                raise
            if result.cancelled:
                return None
            final = (result.steps_done, last[1] if last else result.steps_done)
            if progress is not None and result.steps_done and final != last:
                progress(*final)  # the steps after the last poll
            return result.video
        finally:
            if lost:
                threading.Thread(target=self._revive, args=(actor,), name="kinema-ray-revive", daemon=True).start()
            else:
                self._free.put(actor)

    def _revive(self, actor: ActorHandle) -> None:
        """Return a lost actor to the pool once Ray has restarted it (model reloaded), or replace it."""
        import time

        import ray
        from ray.exceptions import ActorDiedError, RayActorError

        while self._started:
            try:
                ray.get(actor.info.remote())
                self._free.put(actor)
                return
            except ActorDiedError:  # out of restarts: a fresh actor takes its slot (and its resources)
                ray.kill(actor, no_restart=True)
                replacement = self._remote_worker().remote(self.make_backend)
                self._actors = [replacement if a is actor else a for a in self._actors]
                actor = replacement
            except RayActorError:  # still restarting
                time.sleep(self.config.poll_seconds)
