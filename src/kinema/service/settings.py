"""Everything the operator of a service chooses, in one dataclass (no environment variables)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kinema.errors import KinemaInputError


@dataclass
class Settings:
    """`kinema serve` builds one from its options; tests build their own.

    database_url: None -> SQLite at `data_dir/kinema.db`. Any SQLAlchemy URL works
        (postgresql+psycopg://... for PostgreSQL).
    executor: "local" runs `workers` threads in this process, each with its own
        loaded pipeline; "ray" hands jobs to a Ray actor pool (executors/ray.py),
        each actor reserving `gpus_per_worker` GPUs. workers=0: no workers in
        this process (the API alone; `kinema worker` processes run the tasks).
    lease_seconds: a running job whose lease is not renewed for this long is
        taken as lost (its worker died) and retried or failed.
    credits_per_tflop: the price of compute; a quote is ceil(TFLOPs x this), at least 1.
    """

    data_dir: Path = Path("kinema-data")
    database_url: str | None = None
    executor: Literal["local", "ray"] = "local"
    workers: int = 1
    lease_seconds: float = 30.0
    heartbeat_seconds: float | None = None  # None -> lease_seconds / 3
    reap_seconds: float = 1.0  # how often the reaper and webhook sender look
    poll_seconds: float = 0.2  # how often an idle worker looks for a job
    worker_nice: int = 10  # workers run at this lower CPU priority (0-19) so the API answers first on a shared machine
    max_attempts: int = 3
    sqlite_synchronous: str = "NORMAL"  # SQLite only: "NORMAL" (a commit survives kill -9 of any process) or "FULL" (and power loss); see db.make_engine
    wal_checkpoint_seconds: float = 1.0  # SQLite: how often the API process checkpoints the WAL, off its requests' path (checkpoints.py)
    opentelemetry: bool = False  # FastAPI's built-in tracing/metrics of every request (for an operator who configures OpenTelemetry)
    auth_cache_seconds: float = 2.0  # an API key's account is remembered this long; a revoked key stops working within this time
    gpus_per_worker: float = 0.0  # executor "ray": GPUs each actor reserves (num_gpus); 0 runs on CPUs
    credits_per_tflop: float = 1.0
    webhook_allow_private: bool = False
    webhook_max_attempts: int = 8
    webhook_backoff_seconds: float = 2.0  # delay after the first failure; doubles each time
    webhook_timeout_seconds: float = 10.0
    moderation_blocklist: tuple[str, ...] = ("gore", "nsfw", "nude", "naked")
    moderation_image_hashes: tuple[str, ...] = ()  # 16-hex perceptual hashes of refused images (moderation.image_hash)
    max_page_size: int = 100
    max_body_bytes: int = 64 * 1024
    max_upload_bytes: int = 8 * 1024 * 1024  # one image for image-to-video (POST /v1/uploads)
    max_media_upload_bytes: int = 64 * 1024 * 1024  # one video (to extend) or audio file (a soundtrack)
    max_storyboard_bytes: int = 1024 * 1024  # the JSON body of POST /v1/storyboards[/quotes]
    shot_cache_max_bytes: int = 1024 * 1024 * 1024  # each account's storyboard shot cache; least recently used files go first
    ray_address: str | None = None
    default_plan: str = "free"
    plans: dict[str, tuple[int, int, int]] = field(
        default_factory=lambda: {"free": (100, 1, 0), "standard": (2_000, 2, 5), "pro": (10_000, 4, 10)}
    )  # name -> (monthly credits, concurrency, priority)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if self.executor not in ("local", "ray"):
            raise KinemaInputError(f"executor must be 'local' or 'ray', got {self.executor!r}")
        if self.workers < 0:
            raise KinemaInputError(f"workers must be >= 0 (0: none in this process, run `kinema worker`), got {self.workers}")
        if self.lease_seconds <= 0 or self.max_attempts < 1:
            raise KinemaInputError("lease_seconds must be > 0 and max_attempts >= 1")
        if self.sqlite_synchronous.upper() not in ("NORMAL", "FULL"):
            raise KinemaInputError(f"sqlite_synchronous must be NORMAL or FULL, got {self.sqlite_synchronous!r}")
        if self.shot_cache_max_bytes <= 0:
            raise KinemaInputError(f"shot_cache_max_bytes must be > 0, got {self.shot_cache_max_bytes}")
        if not 0 <= self.worker_nice <= 19:
            raise KinemaInputError(f"worker_nice must be in 0..19 (0: the API's own priority), got {self.worker_nice}")
        if self.wal_checkpoint_seconds <= 0:
            raise KinemaInputError(f"wal_checkpoint_seconds must be > 0, got {self.wal_checkpoint_seconds}")
        if self.auth_cache_seconds < 0 or self.gpus_per_worker < 0:
            raise KinemaInputError("auth_cache_seconds and gpus_per_worker must be >= 0")

    @property
    def url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'kinema.db').resolve()}"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def inputs_dir(self) -> Path:
        """Each task's own copies of its media inputs (inputs/<task id>/), removed with the task."""
        return self.data_dir / "inputs"

    @property
    def shot_cache_dir(self) -> Path:
        """Storyboard shots already generated (per account), reused when a film is rendered again."""
        return self.data_dir / "shot-cache"

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat_seconds if self.heartbeat_seconds is not None else self.lease_seconds / 3
