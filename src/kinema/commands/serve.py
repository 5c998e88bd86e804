"""`kinema serve`: the video service on one machine with no set-up (SQLite, in-process workers).

    kinema serve                                # http://127.0.0.1:8000, data in ./kinema-data
    kinema serve --worker-processes 1           # the workers in a process of their own (lower latency under load)
    kinema serve --database-url postgresql+psycopg://user@host/db --executor ray --ray-address auto
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import typer

from kinema.commands.model_options import (
    MODEL_HELP,
    attention_option,
    build_options,
    compile_option,
    device_option,
    dtype_option,
    offload_option,
    vae_slicing_option,
    vae_tiling_option,
)


def native_backend(model: str | None, options: Any = None, device: str = "cpu") -> Any:
    """The backend factory for any model `--model` accepts, with the model flags (`DiffusersOptions`, a
    device name). Module level and plain arguments: it must pickle for Ray, and each worker resolves
    "auto" against its own machine."""
    from kinema.engine.pipeline import Pipeline

    pipe = Pipeline.from_model(model, device=device, options=options)
    return pipe.backend


WORKER_PROCESSES_HELP = (
    "Run the workers as this many `kinema worker` processes that serve starts, restarts if they exit, and stops with it "
    "(the API process then runs none): requests are not slowed by jobs, as they are by worker threads sharing the API's GIL. 0: worker threads."
)
WORKER_NICE_HELP = "Lower the workers' CPU priority by this much (0-19; 0 = the API's own), so requests are answered before video is made."


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    data_dir: Path = typer.Option(Path("kinema-data"), help="Database (SQLite) and videos live here."),
    database_url: str | None = typer.Option(None, help="SQLAlchemy URL (default: SQLite in --data-dir)."),
    model: str | None = typer.Option(None, help=MODEL_HELP),
    device: str = device_option(),
    dtype: str = dtype_option(),
    offload: str = offload_option(),
    vae_tiling: bool = vae_tiling_option(),
    vae_slicing: bool = vae_slicing_option(),
    attention: str = attention_option(),
    torch_compile: bool = compile_option(),
    executor: str = typer.Option("local", help="local (worker threads) or ray."),
    workers: int = typer.Option(1, help="Worker threads (local) or Ray actors; 0: none here, tasks run in `kinema worker` processes. With --worker-processes: threads in each."),
    worker_processes: int = typer.Option(0, help=WORKER_PROCESSES_HELP),
    gpus_per_worker: float = typer.Option(0.0, help="Executor ray: GPUs each actor reserves (Ray's num_gpus; 0 runs on CPUs, 0.5 packs two per GPU)."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address (executor ray; default: a local Ray)."),
    credits_per_tflop: float = typer.Option(1.0, help="Price of compute."),
    lease_seconds: float = typer.Option(30.0, help="A job whose worker is silent this long is retried."),
    worker_nice: int = typer.Option(10, help=WORKER_NICE_HELP),
    webhook_allow_private: bool = typer.Option(False, help="Allow webhooks to loopback/private addresses (testing only)."),
    blocklist: str | None = typer.Option(None, help="Comma-separated words the moderation check refuses (default: a short built-in list)."),
    blocked_images: Path | None = typer.Option(None, help="File of image hashes to refuse as inputs, one per line (`kinema admin image-hash IMAGE`)."),
    max_upload_mib: float = typer.Option(8.0, help="Largest image upload (image-to-video, keyframes), in MiB."),
    max_media_upload_mib: float = typer.Option(64.0, help="Largest video or audio upload (a video to extend, a soundtrack), in MiB."),
) -> None:
    """Run the HTTP API, the web studio and the workers."""
    import uvicorn

    from kinema.errors import KinemaInputError
    from kinema.service.app import create_app
    from kinema.service.settings import Settings

    if executor not in ("local", "ray"):
        raise KinemaInputError(f"--executor must be local or ray, got {executor!r}")
    if worker_processes < 0 or (worker_processes and (executor != "local" or workers < 1)):
        raise KinemaInputError(f"--worker-processes must be >= 0, and with it --executor local and --workers >= 1 (threads in each), got {worker_processes}, {executor}, {workers}")
    options = build_options(dtype, offload, vae_tiling, vae_slicing, attention, torch_compile)
    kw: dict[str, Any] = {}
    if blocklist is not None:
        kw["moderation_blocklist"] = tuple(w for w in blocklist.split(",") if w.strip())
    if blocked_images is not None:
        from kinema.service.moderation import read_hash_list

        kw["moderation_image_hashes"] = read_hash_list(blocked_images)
    for name, mb in (("--max-upload-mib", max_upload_mib), ("--max-media-upload-mib", max_media_upload_mib)):
        if not 0 < mb <= 4096:
            raise KinemaInputError(f"{name} must be in (0, 4096], got {mb}")
    kw["max_upload_bytes"], kw["max_media_upload_bytes"] = int(max_upload_mib * 1024 * 1024), int(max_media_upload_mib * 1024 * 1024)
    settings = Settings(
        data_dir=data_dir, database_url=database_url, executor=executor, workers=0 if worker_processes else workers, ray_address=ray_address, gpus_per_worker=gpus_per_worker,  # type: ignore[arg-type]
        credits_per_tflop=credits_per_tflop, lease_seconds=lease_seconds, worker_nice=worker_nice, webhook_allow_private=webhook_allow_private, **kw,
    )  # fmt: skip
    app = create_app(settings, functools.partial(native_backend, str(model) if model else None, options, device))
    typer.echo(f"kinema service on http://{host}:{port}  (studio at /studio/, API docs at /docs; data in {data_dir})")
    if not worker_processes:
        uvicorn.run(app, host=host, port=port, log_level="info")
        return
    from kinema.commands.worker import worker_argv
    from kinema.service.supervisor import WorkerSupervisor

    argv = worker_argv(data_dir=data_dir, database_url=database_url, model=str(model) if model else None, device=device, dtype=dtype, offload=offload,
                       vae_tiling=vae_tiling, vae_slicing=vae_slicing, attention=attention, torch_compile=torch_compile, workers=workers,
                       lease_seconds=lease_seconds, nice=worker_nice)  # fmt: skip
    supervisor = WorkerSupervisor(argv, worker_processes, stop_seconds=lease_seconds)
    supervisor.start()  # after create_app: the database is migrated before any worker opens it
    typer.echo(f"{worker_processes} worker process(es), {workers} worker thread(s) each")
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        supervisor.stop()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
