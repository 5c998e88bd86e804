"""The Ray executor against a real local Ray (one cluster for the module: it takes seconds to start).

The actors load the tiny random model from tests/conftest.py, so the frames
that come back are real engine output, and progress and cancellation cross
real process boundaries.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from conftest import build_tiny_model  # noqa: E402
from kinema.engine.native import NativeBackend  # noqa: E402
from kinema.request import make_request  # noqa: E402
from kinema.service.executors import WorkerLost as ServiceWorkerLost  # noqa: E402
from kinema.service.executors.ray import RayExecutorConfig, RayPool, WorkerLost  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Wider and deeper than the other tests' tiny DiT: at hidden 32 and depth 1 a 200-step job ends in a tenth of
    # a second on a fast machine, before the service side has polled, seen progress and sent its cancel, so the
    # cancel and kill tests raced the job. At hidden 256 and depth 4 it takes about 1.3 s (25 polls) here.
    return build_tiny_model(tmp_path_factory.mktemp("ray-model"), dit_options={"hidden": 256, "depth": 4, "heads": 4})


@pytest.fixture(scope="module")
def pool(model_dir: Path):
    # 3 logical CPUs: two for these actors, one for the service test's own pool.
    config = RayExecutorConfig(actors=2, cpus_per_actor=1, local_cpus=3, poll_seconds=0.05, ray_init_options={"runtime_env": {"env_vars": {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}}})
    pool = RayPool(config, functools.partial(NativeBackend, model_dir))
    pool.start()
    yield pool
    pool.stop()


def resolve(model_dir: Path, **fields):
    return NativeBackend(model_dir).validate(make_request(**fields))


def test_one_actor_per_slot_each_in_its_own_process_with_the_model_loaded(pool: RayPool) -> None:
    infos = pool.workers_info()
    assert len(infos) == 2
    assert len({i["pid"] for i in infos}) == 2


def test_video_matches_the_in_process_engine_and_progress_flows_back(pool: RayPool, model_dir: Path) -> None:
    resolved = resolve(model_dir, prompt="a red ball moving left", seed=3, steps=4)
    seen: list[tuple[int, int]] = []
    video = pool.run("job-same", resolved, progress=lambda s, t: seen.append((s, t)))
    local = NativeBackend(model_dir).generate(resolved)
    assert video is not None
    np.testing.assert_array_equal(video.frames, local.frames)  # same request and seed, same machine: same bits
    assert video.seed == 3
    # Each actor loads its weights once (reported with its first job); later jobs on it load nothing.
    small = resolve(model_dir, prompt="a dot", seed=1, steps=1)
    later = [pool.run(f"job-warm-{i}", small) for i in range(pool.size + 1)]
    assert later[-1] is not None and later[-1].timings.get("model_load", 0.0) == 0.0
    assert seen, "no progress reached the service side"
    assert seen[-1] == (4, 4)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))


def test_cancel_stops_the_job_within_a_step(pool: RayPool, model_dir: Path) -> None:
    total = 200
    resolved = resolve(model_dir, prompt="a blue square", seed=1, steps=total)
    started = threading.Event()
    steps: list[int] = []

    def progress(step: int, _total: int) -> None:
        steps.append(step)
        started.set()

    result: dict[str, object] = {}
    runner = threading.Thread(target=lambda: result.setdefault("video", pool.run("job-cancel", resolved, progress, cancelled=started.is_set)))
    runner.start()
    runner.join()
    assert result["video"] is None  # cancelled, not finished
    assert steps and max(steps) < total


def test_a_killed_actor_is_reported_as_lost_and_restarted(pool: RayPool, model_dir: Path) -> None:
    resolved = resolve(model_dir, prompt="a green box falls", seed=2, steps=200)
    killed: list[int] = []

    def progress(_step: int, _total: int) -> None:
        if killed:
            return
        # The job is running: kill the process that runs it, as a crashed GPU worker would die.
        for info in pool.workers_info():
            if "job-lost" in info["jobs"]:
                os.kill(info["pid"], signal.SIGKILL)
                killed.append(info["pid"])

    with pytest.raises(WorkerLost) as lost:
        pool.run("job-lost", resolved, progress)
    assert isinstance(lost.value, ServiceWorkerLost)  # what the service's workers retry or fail as internal.worker_lost
    assert killed
    # Ray restarts the actor, which loads its model again: the pool still runs jobs on both slots.
    videos = [pool.run(f"job-after-{i}", resolve(model_dir, prompt="a white ball", seed=4, steps=2)) for i in range(3)]
    assert all(v is not None and v.frames.shape[0] >= 1 for v in videos)
    pool.wait_idle()  # the killed slot is back once its new process has loaded the model
    pids = {i["pid"] for i in pool.workers_info()}
    assert len(pids) == 2 and killed[0] not in pids


def test_the_service_runs_its_tasks_on_ray(pool: RayPool, model_dir: Path, tmp_path: Path) -> None:
    """`executor="ray"` in Settings: the API's task runs in a Ray actor (the `pool` fixture's Ray is joined, not restarted)."""
    pytest.importorskip("fastapi")
    from service_helpers import make_harness, wait_for

    h = make_harness(tmp_path, functools.partial(NativeBackend, model_dir), executor="ray", workers=1)
    try:
        executor = h.app.state.service.workers.executor
        assert isinstance(executor, RayPool) and executor.size == 1
        assert executor.workers_info()[0]["pid"] != os.getpid()
        before = h.balance()
        task = h.client.post("/v1/tasks", json={"prompt": "a red ball", "seed": 5, "steps": 3}, headers=h.headers).json()
        done = wait_for(h.client, h.headers, task["id"], {"succeeded", "failed", "cancelled"})
        assert done["state"] == "succeeded", done
        assert done["step"] == done["total_steps"] == 3 and done["progress"] == 1.0
        video = h.client.get(done["download_url"], headers=h.headers)
        assert video.status_code == 200 and video.content[4:8] == b"ftyp"
        after = h.balance()
        assert after == before - done["credits_charged"] and done["credits_charged"] > 0
    finally:
        h.client.__exit__(None, None, None)
