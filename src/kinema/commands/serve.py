"""`kinema serve`: the video service on one machine with no set-up (SQLite, in-process workers).

    kinema serve                                # http://127.0.0.1:8000, data in ./kinema-data
    kinema serve --database-url postgresql+psycopg://user@host/db --executor ray --ray-address auto
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import typer


def native_backend(model: str | None) -> Any:
    """The backend factory for any model `--model` accepts (module level: it must pickle for Ray)."""
    from kinema.engine.pipeline import Pipeline

    pipe = Pipeline.from_model(model)
    return pipe.backend


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    data_dir: Path = typer.Option(Path("kinema-data"), help="Database (SQLite) and videos live here."),
    database_url: str | None = typer.Option(None, help="SQLAlchemy URL (default: SQLite in --data-dir)."),
    model: str | None = typer.Option(None, help="builtin (default), a kinema or diffusers model directory, or a hub id (org/name)."),
    executor: str = typer.Option("local", help="local (worker threads) or ray."),
    workers: int = typer.Option(1, help="Worker threads (local) or Ray actors."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address (executor ray; default: a local Ray)."),
    credits_per_tflop: float = typer.Option(1.0, help="Price of compute."),
    lease_seconds: float = typer.Option(30.0, help="A job whose worker is silent this long is retried."),
    webhook_allow_private: bool = typer.Option(False, help="Allow webhooks to loopback/private addresses (testing only)."),
    blocklist: str | None = typer.Option(None, help="Comma-separated words the moderation check refuses (default: a short built-in list)."),
) -> None:
    """Run the HTTP API, the web studio and the workers."""
    import uvicorn

    from kinema.errors import KinemaInputError
    from kinema.service.app import create_app
    from kinema.service.settings import Settings

    if executor not in ("local", "ray"):
        raise KinemaInputError(f"--executor must be local or ray, got {executor!r}")
    kw: dict[str, Any] = {}
    if blocklist is not None:
        kw["moderation_blocklist"] = tuple(w for w in blocklist.split(",") if w.strip())
    settings = Settings(
        data_dir=data_dir, database_url=database_url, executor=executor, workers=workers, ray_address=ray_address,  # type: ignore[arg-type]
        credits_per_tflop=credits_per_tflop, lease_seconds=lease_seconds, webhook_allow_private=webhook_allow_private, **kw,
    )  # fmt: skip
    app = create_app(settings, functools.partial(native_backend, str(model) if model else None))
    typer.echo(f"kinema service on http://{host}:{port}  (studio at /studio/, API docs at /docs; data in {data_dir})")
    uvicorn.run(app, host=host, port=port, log_level="info")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
