"""The video service (issue 4): a FastAPI task API over a durable job queue in the database.

    settings.py    Settings: one dataclass for everything the operator chooses
    db.py          SQLAlchemy 2 models, engine, Alembic migrations at start-up
    ledger.py      credits: grant / reserve / capture / release, always inside the caller's transaction
    jobs.py        the queue: submit, claim by lease, heartbeat, finish, cancel, reap
    pricing.py     quotes from compute (tokens x steps x model FLOPs)
    executors/     how a job runs: LocalExecutor (threads) or the Ray pool
    workers.py     the loops that claim jobs and hand them to the executor
    webhooks.py    Standard Webhooks signing, outbox delivery, private-address refusal
    moderation.py  the pluggable prompt check
    app.py         the FastAPI app factory and the /v1 routes
"""
