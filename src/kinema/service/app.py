"""The FastAPI app factory and the /v1 API.

`create_app(settings, backend_factory)` builds everything: database (migrated),
queue, workers, webhook sender, studio. Errors on every 4xx are
`{"error": {"code": "dotted.code", "message": "one line"}}`.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import inspect
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, func, select
from starlette.exceptions import HTTPException as StarletteHTTPException

from kinema.engine.backend import Backend, ResolvedRequest
from kinema.errors import KinemaInputError
from kinema.request import GenerationRequest
from kinema.service import ledger, pricing, webhooks
from kinema.service.accounts import KeyCache
from kinema.service.checkpoints import WalCheckpointer, sqlite_file
from kinema.service.db import (
    QUEUED,
    RUNNING,
    TERMINAL,
    Account,
    Plan,
    Task,
    make_engine,
    open_database,
    open_readers,
)
from kinema.service.errors import ApiError, from_input_error, from_validation_errors
from kinema.service.executors import BackendFactory
from kinema.service.fastlane import CreateFastLane
from kinema.service.jobs import Queue
from kinema.service.moderation import BlocklistModerator, Moderator
from kinema.service.settings import Settings
from kinema.service.submissions import LoopWriter, Outcome, Submission, SubmitWriter, TaskRecord
from kinema.service.uploads import Staging, new_staging, pin_request, remove_task_inputs, resolve_request_media, staging
from kinema.service.workers import Workers

TASK_ID = re.compile(r"^[0-9a-f]{32}$")
MEDIA = {"mp4": "video/mp4", "gif": "image/gif"}
SSE_POLL_SECONDS = 0.25


class TaskCreate(GenerationRequest):
    """A GenerationRequest (the same fields and limits as the CLI) plus where to send the webhook."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    callback_url: str | None = Field(default=None, max_length=2000, description="POSTed, signed, when the task ends")
    format: Literal["mp4", "gif"] | None = None  # type: ignore[assignment]  # PNG frame folders are not a download


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class TaskView(BaseModel):
    id: str
    kind: Literal["video", "storyboard"] = "video"
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float
    step: int
    total_steps: int
    error: ErrorBody | None
    credits_reserved: int
    credits_charged: int | None
    attempts: int
    request: dict[str, Any]
    created_at: float
    started_at: float | None
    finished_at: float | None
    download_url: str | None


class TaskPage(BaseModel):
    items: list[TaskView]
    next_cursor: str | None


class QuoteView(BaseModel):
    credits: int
    tflops: float
    steps: int
    forward_passes: int
    latent_tokens: int
    width: int
    height: int
    num_frames: int
    fps: float
    seed: int | None


class AccountView(BaseModel):
    id: str
    name: str
    plan: str
    credits_available: int
    credits_reserved: int
    concurrency: int
    priority: int
    webhook_secret: str


ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorResponse} for s in (400, 401, 402, 404, 409, 413, 422, 429)}


@dataclass
class Service:
    settings: Settings
    backend: Backend
    queue: Queue
    workers: Workers
    moderator: Moderator
    sessions: Any  # read-write transactions
    readers: Any  # read-only ones (on SQLite they do not queue for the write lock)
    submissions: SubmitWriter | LoopWriter  # stores creates, many per transaction


def task_view(task: Task | TaskRecord) -> TaskView:
    error = ErrorBody(code=task.error_code, message=task.error_message or "") if task.error_code else None
    return TaskView(
        id=task.id, kind="storyboard" if task.resolved_json.startswith('{"kind":"storyboard"') else "video", state=task.state, progress=task.progress, step=task.step, total_steps=task.total_steps, error=error,  # type: ignore[arg-type]
        credits_reserved=task.credits_reserved, credits_charged=task.credits_charged, attempts=task.attempts,
        request={**json.loads(task.request_json), "seed": json.loads(task.resolved_json).get("seed")}, created_at=task.created_at, started_at=task.started_at, finished_at=task.finished_at,
        download_url=f"/v1/tasks/{task.id}/download" if task.state == "succeeded" and task.output_path else None,
    )  # fmt: skip


def check_callback_url(url: str | None, settings: Settings) -> None:
    """A task's webhook URL, if it has one, must be one the sender may call (422 with the reason's code)."""
    if url:
        try:
            webhooks.check_url(url, settings.webhook_allow_private)
        except webhooks.WebhookUrlError as exc:
            raise ApiError(422, exc.code, str(exc)) from None


def has_media(body: GenerationRequest) -> bool:
    """Does the request name files (images, a video) to fetch and check?"""
    return body.image is not None or body.last_image is not None or body.video is not None or bool(body.keyframes)


def body_hash_of(body: BaseModel) -> str:
    """What the Idempotency-Key check compares: the body as parsed, every field in the model's order
    (so formatting, key order and spelling out a default do not count)."""
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


def create_app(settings: Settings, backend_factory: BackendFactory, *, moderator: Moderator | None = None, run_workers: bool = True, executor: Any = None) -> FastAPI:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    checkpointer = WalCheckpointer(settings.url, settings.wal_checkpoint_seconds) if sqlite_file(settings.url) else None
    engine, sessions = open_database(settings.url, sqlite_synchronous=settings.sqlite_synchronous, auto_checkpoint=checkpointer is None)
    read_engine, readers = open_readers(settings.url)
    seed_plans(sessions, settings)
    backend = backend_factory()
    queue = Queue(sessions, settings.lease_seconds, settings.max_attempts, on_terminal=webhooks.enqueue, readers=readers)
    sender = webhooks.WebhookSender(
        sessions, readers=readers, allow_private=settings.webhook_allow_private, max_attempts=settings.webhook_max_attempts,
        backoff_seconds=settings.webhook_backoff_seconds, timeout=settings.webhook_timeout_seconds,
    )  # fmt: skip
    workers = Workers(settings, queue, backend, backend_factory, sender, executor=executor)
    moderator = moderator or BlocklistModerator(settings.moderation_blocklist, settings.moderation_image_hashes)
    writer = make_submit_writer(settings, engine, worker_threads_here=run_workers and settings.workers > 0)
    svc = Service(settings, backend, queue, workers, moderator, sessions, readers, writer)

    def warm_up() -> None:
        """Load the tokenizer and the pricing model, store a create (rolled back) and look a key up now,
        so that the first clients do not wait for them (a burst at start-up waited for all of it)."""
        try:
            pricing.quote(backend, backend.validate(GenerationRequest(prompt="warm up")), settings.credits_per_tflop)
        except KinemaInputError:
            pass
        svc.submissions.warm_up()
        app.state.key_cache.load("warm-up: opens a reader connection")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        svc.submissions.start(asyncio.get_running_loop())
        await asyncio.to_thread(warm_up)
        freeze_startup_objects()
        if checkpointer is not None:
            checkpointer.start()
        await asyncio.to_thread(workers.start, run_workers)
        try:
            yield
        finally:
            await asyncio.to_thread(workers.stop)
            await asyncio.to_thread(svc.submissions.stop)
            if checkpointer is not None:
                await asyncio.to_thread(checkpointer.stop)
            engine.dispose()
            read_engine.dispose()

    app = FastAPI(
        title="kinema", version="1", lifespan=lifespan, description="Text-to-video tasks, credits and webhooks. See docs/service.md.",
        **fastapi_telemetry(settings.opentelemetry),
    )  # fmt: skip
    app.state.service = svc
    app.state.checkpointer = checkpointer
    add_routes(app, svc)
    install_error_handlers(app, settings)  # after the routes: its body limit is the outer middleware, before the fast lane
    try:
        from kinema.service.studio import mount_studio

        mount_studio(app)
    except ImportError:  # the studio module is optional
        pass
    return app


def make_submit_writer(settings: Settings, engine: Engine, worker_threads_here: bool) -> SubmitWriter | LoopWriter:
    """The writer of creates (submissions.py says why each):

    - SQLite, and no worker threads in this process (`--workers 0`, workers in `kinema worker`
      processes): on the event loop, on a connection of its own that never waits for the lock;
    - SQLite with worker threads here: a thread on the process's one write connection, where
      the workers' writes take turns with it first come, first served. (On the loop, a worker
      thread holding the write lock needs the GIL from the busy loop to finish its transaction,
      and creates waited for it: at 50 creates/s p99 85 ms, against 27 ms this way.)
    - any other database: a thread, so that network waits never stop the loop.
    """
    if engine.dialect.name == "sqlite" and not worker_threads_here:
        return LoopWriter(make_engine(settings.url, sqlite_synchronous=settings.sqlite_synchronous, busy_seconds=0, auto_checkpoint=False))
    return SubmitWriter(engine)


def freeze_startup_objects() -> None:
    """Exclude everything loaded at start-up (torch, the models, the app) from the garbage collector's full passes.

    A full collection walks every tracked object: with torch imported that is about
    a million, and each pass stopped the whole server for some 150 ms every few
    seconds under load (all requests in flight waited). Frozen objects are never freed,
    which is right for what lives as long as the process."""
    gc.collect()
    gc.freeze()


def fastapi_telemetry(enabled: bool) -> dict[str, Any]:
    """FastAPI's own OpenTelemetry instrumentation (FastAPI >= 0.165), off unless the operator asks.

    On, every request first asks OpenTelemetry whether a tracer, meter or logger
    provider is configured (environment lookups), some 5% of a create's CPU
    even when nothing is exported. Older FastAPI has no such option."""
    if enabled or "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def seed_plans(sessions: Any, settings: Settings) -> None:
    """The plans named in Settings exist (credits/limits updated to what Settings says)."""
    with sessions.begin() as s:
        for name, (credits, concurrency, priority) in settings.plans.items():
            plan = s.get(Plan, name)
            if plan is None:
                s.add(Plan(name=name, monthly_credits=credits, concurrency=concurrency, priority=priority))
            else:
                plan.monthly_credits, plan.concurrency, plan.priority = credits, concurrency, priority


def install_error_handlers(app: FastAPI, settings: Settings) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = from_validation_errors(list(exc.errors()))
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method.not_allowed"}.get(exc.status_code, f"http.{exc.status_code}")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code)

    class _BodyLimit:
        """A body over the limit is refused from its Content-Length, before anything reads it.

        Plain ASGI (not @app.middleware("http"), whose per-request task group and
        body stream cost every request more CPU than the task insert)."""

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                path = scope["path"]
                length = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-length"), None)
                limit = settings.max_body_bytes
                if path == "/v1/uploads":
                    limit = max(settings.max_upload_bytes, settings.max_media_upload_bytes) + 64 * 1024
                elif path.startswith("/v1/storyboards"):
                    limit = settings.max_storyboard_bytes
                if length is not None and (not length.isdigit() or int(length) > limit):
                    code = "input.upload.too_large" if path == "/v1/uploads" else "input.body.too_large"
                    err = ApiError(413, code, f"the body is over {limit} bytes")
                    await JSONResponse(err.body(), status_code=413)(scope, receive, send)
                    return
            await self.app(scope, receive, send)

    app.add_middleware(_BodyLimit)


def add_routes(app: FastAPI, svc: Service) -> None:
    settings = svc.settings

    keys = KeyCache(svc.readers, settings.auth_cache_seconds)
    app.state.key_cache = keys  # `.forget()` after revoking a key in this process

    async def account(authorization: str | None = Header(default=None, description="Bearer <api key>")) -> Account:
        return await authenticate(authorization)

    async def authenticate(authorization: str | None) -> Account:
        """The account of an `Authorization: Bearer <key>` header, or 401."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise ApiError(401, "auth.missing", "send an API key: Authorization: Bearer <key>")
        token = authorization[7:].strip()
        acct = keys.get(token)  # a recent key costs no query
        if acct is None:
            # One indexed read, on the event loop: handing it to a thread costs more under load,
            # as the thread must win the GIL back from the busy loop (up to the interpreter's
            # 5 ms switch interval per hand-over), and a burst of new keys then stalled every request.
            acct = keys.load(token)
        if acct is None:
            raise ApiError(401, "auth.invalid", "this API key is not valid")
        return acct

    def own_task(s: Any, task_id: str, acct: Account) -> Task:
        if not TASK_ID.match(task_id):
            raise ApiError(404, "task.not_found", "no such task")
        task = s.get(Task, task_id, populate_existing=True)
        if task is None or task.account_id != acct.id or task.deleted:
            raise ApiError(404, "task.not_found", "no such task")
        return task

    def resolve(body: TaskCreate, acct: Account, stage: Staging) -> tuple[GenerationRequest, ResolvedRequest]:
        verdict = svc.moderator(body)
        if verdict is not None:
            raise ApiError(422, verdict.code, verdict.message)
        try:
            if has_media(body):  # image, last_image, keyframes[].image, video: upload ids or data URLs -> checked files (uploads.py)
                given = body.model_dump(exclude_unset=True, exclude={"callback_url"})
                request = GenerationRequest(**resolve_request_media(stage, acct.id, given))
            else:  # validated as this very model already (a TaskCreate is a GenerationRequest): not again
                request = GenerationRequest.model_construct(body.model_fields_set - {"callback_url"}, **{name: getattr(body, name) for name in GenerationRequest.model_fields})
            resolved = svc.backend.validate(request)
        except KinemaInputError as exc:
            raise from_input_error(KinemaInputError(stage.scrub(str(exc)))) from None
        return request, resolved

    @app.post("/v1/quotes", response_model=QuoteView, responses=ERRORS, tags=["tasks"])
    def create_quote(body: TaskCreate, acct: Account = Depends(account), stage: Staging = Depends(staging)) -> QuoteView:
        """The price of a request, from its compute, without running it (the seed is not chosen here)."""
        _, resolved = resolve(body, acct, stage)
        q = pricing.quote(svc.backend, resolved, settings.credits_per_tflop)
        return QuoteView(**q.as_dict(), width=resolved.width, height=resolved.height, num_frames=resolved.num_frames, fps=resolved.fps, seed=body.seed)

    def prepare_task(body: TaskCreate, acct: Account, stage: Staging, body_hash: str, key: str | None) -> Submission:
        """All a create does before storing: moderation, media, validation, the price, the request as the worker will run it."""
        request, resolved = resolve(body, acct, stage)
        check_callback_url(body.callback_url, settings)
        q = pricing.quote(svc.backend, resolved, settings.credits_per_tflop)
        stored = pin_request(stage, request.model_copy(update={"seed": resolved.seed}))  # a retry makes the same video, from the task's own inputs
        fields = dict(
            id=stage.task_id, account_id=acct.id, request_json=body.model_dump_json(exclude_unset=True),
            resolved_json=stored.model_dump_json(exclude_defaults=True), body_hash=body_hash, idempotency_key=key,
            callback_url=body.callback_url, output_format=body.format or "mp4", total_steps=resolved.steps,
        )  # fmt: skip
        return Submission(fields, q.credits)

    async def create(body: TaskCreate, acct: Account, idempotency_key: str | None) -> tuple[int, TaskView]:
        """A video task's create, whichever way it arrived (the route below, or the fast lane): (201 or 200, the task).

        On the event loop with no thread hop unless there are files to read (a text request
        is pure computation; storing is the submissions writer's), and its Staging opened
        here rather than by a generator dependency, which costs a create some 10% more CPU.
        """
        body_hash = body_hash_of(body)
        with closing(new_staging(svc)) as stage:
            try:
                if not has_media(body):
                    sub = prepare_task(body, acct, stage, body_hash, idempotency_key)
                else:
                    sub = await asyncio.to_thread(prepare_task, body, acct, stage, body_hash, idempotency_key)
            except ApiError:  # a retry whose inputs no longer pass (an upload since deleted) still gets its task
                existing = None if idempotency_key is None else await asyncio.to_thread(find_idempotent, acct, idempotency_key, body_hash)
                if existing is None:
                    raise
                return 200, existing
            return answer(await svc.submissions.submit_async(sub), sub, stage)

    @app.post("/v1/tasks", response_model=TaskView, status_code=201, responses=ERRORS, tags=["tasks"])
    async def create_task(
        body: TaskCreate, response: Response, acct: Account = Depends(account),
        idempotency_key: str | None = Header(default=None, max_length=200, description="Same key + same body = the same task"),
    ) -> TaskView:  # fmt: skip
        """Most creates do not get here: the fast lane (fastlane.py) answers them with the same `create`."""
        response.status_code, view = await create(body, acct, idempotency_key)
        return view

    app.add_middleware(CreateFastLane, create=create, authenticate=authenticate, body_model=TaskCreate)

    def submit_task(sub: Submission, response: Response, stage: Staging) -> TaskView:
        """`create`'s store for a caller in a worker thread (storyboard tasks): the same writer, waited for."""
        response.status_code, view = answer(svc.submissions.submit(sub).result(), sub, stage)
        return view

    def answer(outcome: Outcome, sub: Submission, stage: Staging) -> tuple[int, TaskView]:
        """A stored create's answer: 201 and its task, 200 and the task an earlier create with its
        Idempotency-Key made (then nothing it staged is kept), or 402 or 422."""
        if isinstance(outcome, ledger.InsufficientCredits):
            raise ApiError(402, "credits.insufficient", str(outcome))
        if not outcome.created:
            return 200, earlier_task_view(outcome.task, sub.fields["body_hash"])
        stage.commit()  # keep the task's inputs
        return 201, task_view(outcome.task)

    def idempotent_replay(acct: Account, body: BaseModel, key: str | None, response: Response) -> tuple[str, TaskView | None]:
        """A create's body hash, and the task an earlier create with this Idempotency-Key and body made (status 200), if any."""
        body_hash = body_hash_of(body)
        existing = find_idempotent(acct, key, body_hash) if key is not None else None
        if existing is not None:
            response.status_code = 200
        return body_hash, existing

    def find_idempotent(acct: Account, key: str, body_hash: str) -> TaskView | None:
        task = svc.queue.find_idempotent(acct.id, key)
        return None if task is None else earlier_task_view(task, body_hash)

    def earlier_task_view(task: Task | TaskRecord, body_hash: str) -> TaskView:
        """The task an earlier create with the same Idempotency-Key made: its view if the bodies match, else 422."""
        if task.body_hash != body_hash:
            raise ApiError(422, "idempotency.key_reused", "this Idempotency-Key was used with a different body")
        return task_view(task)

    @app.get("/v1/tasks", response_model=TaskPage, responses=ERRORS, tags=["tasks"])
    def list_tasks(
        acct: Account = Depends(account),
        state: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
        limit: int = Query(20, ge=1, le=100),
        cursor: str | None = Query(None, max_length=100, description="next_cursor of the previous page"),
    ) -> TaskPage:  # fmt: skip
        query = select(Task).where(Task.account_id == acct.id, Task.deleted.is_(False))
        if state is not None:
            query = query.where(Task.state == state)
        if cursor:
            try:
                created, tid = cursor.split("_", 1)
                query = query.where((Task.created_at < float(created)) | ((Task.created_at == float(created)) & (Task.id < tid)))
            except ValueError:
                raise ApiError(422, "input.cursor.invalid", "cursor must be a next_cursor this API returned") from None
        with svc.readers() as s:
            rows = s.scalars(query.order_by(Task.created_at.desc(), Task.id.desc()).limit(limit + 1)).all()
        items = [task_view(t) for t in rows[:limit]]
        nxt = f"{rows[limit - 1].created_at!r}_{rows[limit - 1].id}" if len(rows) > limit else None
        return TaskPage(items=items, next_cursor=nxt)

    @app.get("/v1/tasks/{task_id}", response_model=TaskView, responses=ERRORS, tags=["tasks"])
    def get_task(task_id: str, acct: Account = Depends(account)) -> TaskView:
        with svc.readers() as s:
            return task_view(own_task(s, task_id, acct))

    @app.post("/v1/tasks/{task_id}/cancel", response_model=TaskView, responses=ERRORS, tags=["tasks"])
    def cancel_task(task_id: str, acct: Account = Depends(account)) -> TaskView:
        """Queued: cancelled now. Running: stops within one denoising step. Credits are released either way."""
        with svc.sessions() as s:
            own_task(s, task_id, acct)
        if svc.queue.cancel(task_id) == RUNNING:
            svc.workers.cancel_local(task_id)
        with svc.sessions() as s:
            return task_view(own_task(s, task_id, acct))

    @app.delete("/v1/tasks/{task_id}", status_code=204, responses=ERRORS, tags=["tasks"])
    def delete_task(task_id: str, acct: Account = Depends(account)) -> Response:
        """Only a finished task can be deleted (cancel it first); its file is removed."""
        with svc.sessions.begin() as s:
            task = own_task(s, task_id, acct)
            if task.state not in TERMINAL:
                raise ApiError(409, "task.not_finished", f"the task is {task.state}; cancel it first")
            task.deleted = True
            name = task.output_path
        if name:
            (settings.outputs_dir / name).unlink(missing_ok=True)
        remove_task_inputs(settings, task_id)
        return Response(status_code=204)

    @app.get("/v1/tasks/{task_id}/download", responses={**ERRORS, 200: {"content": {"video/mp4": {}, "image/gif": {}}}}, tags=["tasks"])
    def download(task_id: str, acct: Account = Depends(account)) -> FileResponse:
        """The video. The file name is made from the task id (never from user input)."""
        with svc.sessions() as s:
            task = own_task(s, task_id, acct)
            if task.state != "succeeded" or not task.output_path:
                raise ApiError(409, "task.not_ready", f"the task is {task.state}; there is nothing to download")
            name, fmt = task.output_path, task.output_format
        path = (settings.outputs_dir / name).resolve()
        if path.parent != settings.outputs_dir.resolve() or not path.is_file():
            raise ApiError(404, "task.output_missing", "the video file is gone")
        return FileResponse(path, media_type=MEDIA.get(fmt, "application/octet-stream"), filename=f"kinema-{task_id}.{fmt}")

    @app.get("/v1/tasks/{task_id}/events", responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}}, tags=["tasks"])
    async def events(task_id: str, acct: Account = Depends(account)) -> StreamingResponse:
        """Server-sent events: `event: task` with the task JSON on every change, until it is terminal."""

        def read() -> TaskView:
            with svc.readers() as s:
                return task_view(own_task(s, task_id, acct))

        first = await asyncio.to_thread(read)

        async def stream() -> AsyncIterator[str]:
            view, last = first, None
            while True:
                data = view.model_dump_json()
                if data != last:
                    yield f"event: task\ndata: {data}\n\n"
                    last = data
                if view.state in TERMINAL:
                    return
                await asyncio.sleep(SSE_POLL_SECONDS)
                try:
                    view = await asyncio.to_thread(read)
                except ApiError:  # deleted meanwhile
                    return

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"})

    @app.get("/v1/account", response_model=AccountView, responses=ERRORS, tags=["account"])
    def get_account(acct: Account = Depends(account)) -> AccountView:
        with svc.sessions.begin() as s:
            plan = s.get(Plan, acct.plan)
            reserved = s.scalar(
                select(func.coalesce(func.sum(Task.credits_reserved), 0)).where(Task.account_id == acct.id, Task.state.in_((QUEUED, RUNNING)))
            )
            return AccountView(
                id=acct.id, name=acct.name, plan=acct.plan, credits_available=ledger.balance(s, acct.id), credits_reserved=int(reserved or 0),
                concurrency=plan.concurrency if plan else 1, priority=plan.priority if plan else 0, webhook_secret=webhooks.secret_for(s, acct.id),
            )  # fmt: skip

    from kinema.service import storyboards, uploads

    uploads.add_routes(app, svc, account, ERRORS)
    storyboards.add_routes(app, svc, account, idempotent_replay, submit_task, ERRORS)
