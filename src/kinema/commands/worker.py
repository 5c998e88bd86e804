"""`kinema worker`: run the service's tasks in a process of its own, beside `kinema serve --workers 0`.

    kinema serve --workers 0 &                      # the API (and the reaper, the webhook sender)
    kinema worker --workers 1 &                     # as many of these as you like, same --data-dir / --database-url
    kinema worker --workers 1 --database-url postgresql+psycopg://...   # on other machines (PostgreSQL)

A worker process shares nothing with the server but the database and the data
directory (outputs are written there): kill it at any point and its task's
lease runs out, the reaper puts it back in the queue, another worker runs it
(the seed was fixed at submit, so it makes the same video). SIGTERM or Ctrl-C
stops it after its running jobs' bookkeeping.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
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
from kinema.commands.serve import WORKER_NICE_HELP


def worker(
    data_dir: Path = typer.Option(Path("kinema-data"), help="The server's --data-dir: database (SQLite) and videos."),
    database_url: str | None = typer.Option(None, help="The server's --database-url (default: SQLite in --data-dir)."),
    model: str | None = typer.Option(None, help=MODEL_HELP),
    device: str = device_option(),
    dtype: str = dtype_option(),
    offload: str = offload_option(),
    vae_tiling: bool = vae_tiling_option(),
    vae_slicing: bool = vae_slicing_option(),
    attention: str = attention_option(),
    torch_compile: bool = compile_option(),
    workers: int = typer.Option(1, help="Worker threads in this process, each with its own loaded model."),
    lease_seconds: float = typer.Option(30.0, help="The server's --lease-seconds: a job whose worker is silent this long is retried."),
    nice: int = typer.Option(10, help=WORKER_NICE_HELP),
) -> None:
    """Claim and run tasks from the service's queue (no HTTP)."""
    from kinema.commands.serve import native_backend
    from kinema.errors import KinemaInputError
    from kinema.service.settings import Settings
    from kinema.service.workers import run_worker_process

    if workers < 1:
        raise KinemaInputError(f"--workers must be >= 1, got {workers}")
    options = build_options(dtype, offload, vae_tiling, vae_slicing, attention, torch_compile)
    settings = Settings(data_dir=data_dir, database_url=database_url, workers=workers, lease_seconds=lease_seconds, worker_nice=nice)
    stop = threading.Event()

    def on_signal(_sig: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    factory = functools.partial(native_backend, str(model) if model else None, options, device)
    run_worker_process(settings, factory, stop, ready=lambda: typer.echo(f"kinema worker: {workers} worker(s) on {settings.url}"))


def worker_argv(*, data_dir: Path, database_url: str | None, model: str | None, device: str, dtype: str, offload: str, vae_tiling: bool,
                vae_slicing: bool, attention: str, torch_compile: bool, workers: int, lease_seconds: float, nice: int) -> list[str]:  # fmt: skip
    """The command line of a `kinema worker` with these options, run by this Python (what `kinema serve
    --worker-processes` starts: the same database, data directory and model as the server's)."""
    argv = [sys.executable, "-m", "kinema.cli", "worker", "--data-dir", str(Path(data_dir).absolute()), "--device", device, "--dtype", dtype,
            "--offload", offload, "--attention", attention, "--workers", str(workers), "--lease-seconds", repr(float(lease_seconds)), "--nice", str(nice),
            "--vae-tiling" if vae_tiling else "--no-vae-tiling"]  # fmt: skip
    if database_url:
        argv += ["--database-url", database_url]
    if model:
        argv += ["--model", str(model)]
    if vae_slicing:
        argv.append("--vae-slicing")
    if torch_compile:
        argv.append("--compile")
    return argv


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
