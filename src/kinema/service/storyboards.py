"""Storyboard tasks: a whole film (kinema.studio's format) as one task of the durable queue.

    POST /v1/storyboards/quotes   {storyboard}                 -> the price, per shot and in total; runs nothing
    POST /v1/storyboards          {storyboard, callback_url?}  -> 201, a task of kind "storyboard"

A storyboard task is a row of the same `tasks` table as a video task, so
everything else is shared: GET /v1/tasks/{id} (progress), /events, /cancel,
/download (the film's MP4, with its soundtrack and soft subtitles), DELETE,
webhooks, credits (reserved at submit, captured on success, released on
failure, cancel or a lost worker), leases, retries. Its `resolved_json` is
`{"kind":"storyboard", ...}` with the validated storyboard (media paths = the
task's own copies); the worker hands it to `run_storyboard_claim`.

Pricing: the studio's plan gives one engine request per shot (and one per
generated subject reference frame); each is priced exactly as a video task
with that request (`pricing.quote`), and the film costs the sum. So a shot's
price is what previewing it as a video task costs (the quote returns that
video task's body per shot).

Running: `Studio.render` with a backend that hands every generation to the
service's executor (the workers' loaded models, or the Ray pool), so a
storyboard's shots run where video tasks run, report each denoising step
(progress and lease), and stop within one step on cancel; composition
checks the cancel flag every frame. Generated shots are kept in a per-account
shot cache (`Settings.shot_cache_dir`), so a retry or a re-render after
editing one shot generates only what changed, and is charged only for what
it generated (`charge_for`: the quoted prices of the shots and reference
frames that ran; the rest of the reservation is released on success).
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Header, Response
from pydantic import BaseModel, ConfigDict, Field

from kinema.engine.backend import Backend, Progress, ResolvedRequest, Video
from kinema.engine.pipeline import Pipeline
from kinema.errors import KinemaInputError
from kinema.request import GenerationRequest
from kinema.service import pricing
from kinema.service.errors import ApiError, code_for_message
from kinema.service.executors import JobCancelled, is_worker_lost
from kinema.service.moderation import check_text
from kinema.service.submissions import Submission
from kinema.service.uploads import Staging, staging
from kinema.studio.storyboard import SHOT_REQUEST_FIELDS, Storyboard

KIND_PREFIX = '{"kind":"storyboard"'
_PATH = re.compile(r"^([A-Za-z_]+(?:\[\d+\])*(?:\.[A-Za-z_]+(?:\[\d+\])*)*): (.*)$", re.DOTALL)


class StoryboardCreate(BaseModel):
    """A storyboard (docs/storyboards.md) to render as one film, and where to send the webhook."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    storyboard: Storyboard = Field(
        description="the film: shots, subjects, transitions, cards, captions, soundtrack, output. Media fields "
        "(subjects[].image, shots[].image/last_image/keyframes[].image, soundtrack.file) take upload ids or base64 data URLs"
    )
    callback_url: str | None = Field(default=None, max_length=2000, description="POSTed, signed, when the task ends")


class StoryboardQuoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    storyboard: Storyboard


class ShotQuote(BaseModel):
    index: int
    id: str
    prompt: str
    seconds: float
    start: float = Field(description="where the shot starts on the film's timeline (s)")
    seed: int
    frames: int
    subjects: list[str]
    condition: str = Field(description="none, image (its own), subject (the subject's reference frame) or previous (the previous shot's last frame)")
    credits: int
    tflops: float
    steps: int
    request: dict[str, Any] = Field(description="a POST /v1/tasks body that previews this shot alone (same request and seed as in the film)")


class ReferenceQuote(BaseModel):
    subject: str
    credits: int
    tflops: float
    steps: int


class StoryboardQuoteView(BaseModel):
    credits: int = Field(description="what the film costs: the sum of its shots' and reference frames' prices")
    tflops: float
    steps: int = Field(description="denoising steps of every generation in the film")
    duration: float
    width: int
    height: int
    fps: float
    generation_width: int
    generation_height: int
    image_conditioning: bool
    warnings: list[str]
    shots: list[ShotQuote]
    references: list[ReferenceQuote]


def storyboard_validation_error(err: dict[str, Any]) -> ApiError:
    """A FastAPI/pydantic error inside `storyboard`: `input.storyboard.invalid`, the message naming the field path."""
    from kinema.studio.load import _message, field_path

    loc = tuple(err.get("loc", ()))[2:]
    path = field_path(loc)
    last = next((p for p in reversed(loc) if isinstance(p, str)), "")
    return ApiError(422, "input.storyboard.invalid", f"{path}: {_message(err, str(last))}" if path else _message(err, str(last)))


def input_error(exc: KinemaInputError, stage: Staging | None = None) -> ApiError:
    """A studio error (`shots[2]: seconds 6 is too long ...`) as a coded 422; the path stays in the message."""
    message = stage.scrub(str(exc)) if stage is not None else str(exc)
    m = _PATH.match(message)
    code = code_for_message(m.group(2) if m else message)
    return ApiError(422, code if code != "input.invalid" else "input.storyboard.invalid", message)


def map_media(data: dict[str, Any], fn: Callable[[Any, tuple[str, ...], str, str], Any]) -> dict[str, Any]:
    """A copy of storyboard data with every media field passed through fn(value, kinds, code_field, where)."""
    out = copy.deepcopy(data)
    for i, subject in enumerate(out.get("subjects") or []):
        if subject.get("image") is not None:
            subject["image"] = fn(subject["image"], ("image",), "image", f"subjects[{i}].image")
    for i, shot in enumerate(out.get("shots") or []):
        for name in ("image", "last_image"):
            if shot.get(name) is not None:
                shot[name] = fn(shot[name], ("image",), name, f"shots[{i}].{name}")
        for j, keyframe in enumerate(shot.get("keyframes") or []):
            keyframe["image"] = fn(keyframe.get("image"), ("image",), "keyframes", f"shots[{i}].keyframes[{j}].image")
    sound = out.get("soundtrack")
    if isinstance(sound, dict) and sound.get("file") is not None:
        sound["file"] = fn(sound["file"], ("audio", "video"), "soundtrack", "soundtrack.file")
    return out


def _short_data_urls(data: dict[str, Any]) -> dict[str, Any]:
    """What the task view shows: inline data URLs shortened to their type and size."""

    def short(value: Any, *_: Any) -> Any:
        if isinstance(value, str) and value.startswith("data:") and len(value) > 80:
            return f"{value[: value.find(',') + 1]}<{len(value)} characters>"
        return value

    return map_media(data, short)


class Prepared:
    """A storyboard checked, planned and priced for one account (what a quote shows and a task stores)."""

    def __init__(self, data: dict[str, Any], board: Storyboard, plan: Any, quote: StoryboardQuoteView, total_steps: int) -> None:
        self.data, self.board, self.plan, self.quote, self.total_steps = data, board, plan, quote, total_steps


def step_bounds(plan: Any) -> tuple[list[int], int]:
    """Cumulative denoising steps at the end of each shot (a subject's reference is made before its first shot), and the total."""
    seen: set[str] = set()
    bounds, acc = [], 0
    for sp in plan.shots:
        if sp.condition == "subject" and sp.condition_subject is not None and sp.condition_subject not in seen:
            seen.add(sp.condition_subject)
            ref = plan.subjects[sp.condition_subject].resolved
            acc += ref.steps if ref is not None else 0
        acc += sp.resolved.steps
        bounds.append(acc)
    return bounds, acc + 1  # + 1: composition


def prepare(svc: Any, account_id: str, storyboard: Storyboard, stage: Staging) -> Prepared:
    """Media references -> files, validation (the studio's, with field paths), moderation, plan, price."""
    from kinema.studio.load import parse_storyboard
    from kinema.studio.plan import plan_storyboard

    settings = svc.settings
    raw = storyboard.model_dump(mode="json", exclude_unset=True)
    if (raw.get("output") or {}).get("font") is not None:
        raise ApiError(422, "input.storyboard.invalid", "output.font: the service renders text with its bundled font (Noto Sans CJK); fonts cannot be uploaded")
    data = map_media(raw, lambda value, kinds, field, where: stage.resolve(account_id, value, kinds, field, where))
    try:
        board = parse_storyboard(data, base_dir=settings.data_dir, check_files=True)
    except KinemaInputError as exc:
        raise input_error(exc, stage) from None
    moderate(svc.moderator, board)
    try:
        plan = plan_storyboard(board, Pipeline(svc.backend))
    except KinemaInputError as exc:
        raise input_error(exc, stage) from None
    for i, sp in enumerate(plan.shots):
        verdict = svc.moderator(sp.request)
        if verdict is not None:
            raise ApiError(422, verdict.code, f"shots[{i}]: {verdict.message}")

    shots: list[ShotQuote] = []
    gen_w, gen_h = plan.generation_size
    total_credits, total_tflops, total_steps = 0, 0.0, 0
    for sp in plan.shots:
        q = pricing.quote(svc.backend, sp.resolved, settings.credits_per_tflop)
        given = raw["shots"][sp.index]
        preview = {k: given[k] for k in SHOT_REQUEST_FIELDS if k in given}
        preview.update(seed=sp.resolved.seed, seconds=sp.request.seconds, width=gen_w, height=gen_h)
        item = plan.film.shot_item(sp.index)
        shots.append(ShotQuote(
            index=sp.index, id=sp.id, prompt=sp.request.prompt, seconds=float(sp.request.seconds or 0), start=item.start, seed=sp.resolved.seed,
            frames=sp.resolved.num_frames, subjects=list(sp.subjects), condition=sp.condition, credits=q.credits, tflops=q.tflops, steps=q.steps,
            request=preview,
        ))  # fmt: skip
        total_credits, total_tflops, total_steps = total_credits + q.credits, total_tflops + q.tflops, total_steps + q.steps
    references: list[ReferenceQuote] = []
    used = {sp.condition_subject for sp in plan.shots if sp.condition == "subject"}
    for name, subject in plan.subjects.items():
        if subject.resolved is not None and name in used:
            q = pricing.quote(svc.backend, subject.resolved, settings.credits_per_tflop)
            references.append(ReferenceQuote(subject=name, credits=q.credits, tflops=q.tflops, steps=q.steps))
            total_credits, total_tflops, total_steps = total_credits + q.credits, total_tflops + q.tflops, total_steps + q.steps
    w, h = board.size()
    quote = StoryboardQuoteView(
        credits=total_credits, tflops=total_tflops, steps=total_steps, duration=plan.film.duration, width=w, height=h, fps=board.fps,
        generation_width=gen_w, generation_height=gen_h, image_conditioning=plan.image_conditioning, warnings=list(plan.warnings),
        shots=shots, references=references,
    )  # fmt: skip
    return Prepared(data, board, plan, quote, step_bounds(plan)[1])


def moderate(moderator: Any, board: Storyboard) -> None:
    """Prompts of shots (checked again on the planned requests) and subjects, and every text put on screen."""
    for i, subject in enumerate(board.subjects):
        for field, text in (("name", subject.name), ("description", subject.description)):
            verdict = check_text(moderator, text, "moderation.prompt") if text else None
            if verdict is not None:
                raise ApiError(422, verdict.code, f"subjects[{i}].{field}: {verdict.message}")
    texts: list[tuple[str, str]] = [("title", board.title)]
    for name, card in (("intro", board.intro), ("outro", board.outro)):
        if card is not None:
            texts += [(f"{name}.title", card.title), (f"{name}.subtitle", card.subtitle)]
    texts += [(f"shots[{i}].caption", s.caption or "") for i, s in enumerate(board.shots)]
    texts += [(f"captions[{i}].text", c.text) for i, c in enumerate(board.captions)]
    for where, text in texts:
        verdict = check_text(moderator, text) if text else None
        if verdict is not None:
            raise ApiError(422, verdict.code, f"{where}: {verdict.message}")


# ---------------------------------------------------------------- routes


def add_routes(app: FastAPI, svc: Any, account: Callable[..., Any], idempotent_replay: Callable[..., Any], submit_task: Callable[..., Any], errors: dict[int | str, dict[str, Any]]) -> None:
    from kinema.service.app import TaskView, check_callback_url

    settings = svc.settings

    @app.post("/v1/storyboards/quotes", response_model=StoryboardQuoteView, responses=errors, tags=["storyboards"])
    def quote_storyboard(body: StoryboardQuoteRequest, acct: Any = Depends(account), stage: Staging = Depends(staging)) -> StoryboardQuoteView:
        """The film's price (per shot, per reference frame, total) and its plan, without running or charging anything.
        Each shot carries the video task body that previews it alone."""
        return prepare(svc, acct.id, body.storyboard, stage).quote

    @app.post("/v1/storyboards", response_model=TaskView, status_code=201, responses=errors, tags=["storyboards"])
    def create_storyboard_task(
        body: StoryboardCreate, response: Response, acct: Any = Depends(account), stage: Staging = Depends(staging),
        idempotency_key: str | None = Header(default=None, max_length=200, description="Same key + same body = the same task"),
    ) -> TaskView:  # fmt: skip
        """Render a storyboard as one task (kind "storyboard") in the same queue as video tasks: progress, events,
        cancel, download (the film's MP4), delete and credits work as for a video task."""
        body_hash, existing = idempotent_replay(acct, body, idempotency_key, response)
        if existing is not None:
            return existing
        prepared = prepare(svc, acct.id, body.storyboard, stage)
        check_callback_url(body.callback_url, settings)
        pinned = map_media(prepared.data, lambda value, *_: stage.pin(value))
        prices = {"shots": [q.credits for q in prepared.quote.shots], "references": {r.subject: r.credits for r in prepared.quote.references}}
        job = {"kind": "storyboard", "account_id": acct.id, "seed": prepared.board.seed, "storyboard": pinned, "prices": prices}
        shown = {**body.model_dump(mode="json", exclude_unset=True), "storyboard": _short_data_urls(body.storyboard.model_dump(mode="json", exclude_unset=True))}
        fields = dict(
            id=stage.task_id, account_id=acct.id, request_json=json.dumps(shown), resolved_json=json.dumps(job, separators=(",", ":")),
            body_hash=body_hash, idempotency_key=idempotency_key, callback_url=body.callback_url, output_format="mp4",
            total_steps=prepared.total_steps,
        )  # fmt: skip
        return submit_task(Submission(fields, prepared.quote.credits), response, stage)  # the same store + reservation as a video task


# ---------------------------------------------------------------- the worker side


class StoryCancelled(Exception):
    """The task's stop flag was set (cancel, or the lease is gone): stop generating or composing."""


class ExecutorBackend:
    """A Backend for `Studio` that validates with the service's backend and generates on the service's executor."""

    def __init__(self, inner: Backend, executor: Any, job_id: str, cancelled: Callable[[], bool], on_step: Progress) -> None:
        self.inner, self.executor, self.job_id, self.cancelled, self.on_step = inner, executor, job_id, cancelled, on_step

    def capabilities(self) -> Any:
        return self.inner.capabilities()

    def validate(self, request: GenerationRequest) -> ResolvedRequest:
        return self.inner.validate(request)

    def generate(self, resolved: ResolvedRequest, progress: Progress | None = None) -> Video:
        if self.cancelled():
            raise StoryCancelled(self.job_id)
        video = self.executor.run(self.job_id, resolved, self.on_step, self.cancelled)
        if video is None:
            raise StoryCancelled(self.job_id)
        return video


class _Tracker:
    """Studio events and per-generation steps -> one progress (step, total) over the whole film."""

    def __init__(self, plan: Any, report: Progress, cancelled: Callable[[], bool]) -> None:
        self.bounds, self.total = step_bounds(plan)
        self.report, self.cancelled = report, cancelled
        self.base = self.done_in_shot = 0
        self.index = 0

    def event(self, name: str, index: int, n: int) -> None:
        if name == "shot-start":
            self.index, self.base, self.done_in_shot = index, self.bounds[index - 1] if index > 0 else 0, 0
        elif name in ("shot-done", "shot-cached"):
            self.report(min(self.bounds[index], self.total - 1), self.total)
        elif name == "frames" and self.cancelled():
            raise StoryCancelled("cancelled while composing")

    def step(self, step: int, total: int) -> None:
        value = self.base + self.done_in_shot + step
        if step >= total:
            self.done_in_shot += total
        self.report(min(value, self.bounds[self.index], self.total - 1), self.total)


_FINGERPRINTS: dict[int, str] = {}
_FINGERPRINT_LOCK = threading.Lock()


def fingerprint_of(backend: Backend) -> str:
    """The shot cache's model fingerprint (weights and configs), computed once per backend object."""
    from kinema.studio.render import model_fingerprint

    with _FINGERPRINT_LOCK:
        if id(backend) not in _FINGERPRINTS:
            _FINGERPRINTS[id(backend)] = model_fingerprint(Pipeline(backend))
        return _FINGERPRINTS[id(backend)]


def _lost_in(exc: BaseException) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if is_worker_lost(current):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _cancelled_in(exc: BaseException) -> bool:
    current: BaseException | None = exc
    for _ in range(10):
        if current is None:
            return False
        if isinstance(current, (StoryCancelled, JobCancelled)):
            return True
        current = current.__cause__ or current.__context__
    return False


def charge_for(job: dict[str, Any], report: Any, task_id: str) -> int | None:
    """What a rendered film costs: the quoted prices of the shots and reference frames this task generated.

    Shots another film left in the account's shot cache (a re-render after editing
    one shot) ran no compute for this task, so they are not charged; ones an earlier
    attempt of this same task made (a retry after a lost worker) are. The quote is
    the upper bound that was reserved. None (charge the reservation) for a task
    stored without per-shot prices.
    """
    prices = job.get("prices")
    if not prices:
        return None
    shots = sum(prices["shots"][r.index] for r in report.shots if r.made_by == task_id)
    return shots + sum(prices["references"].get(name, 0) for name in report.references_made)


def run_storyboard_claim(workers: Any, claim: Any, owner: str, progress: Progress, stop: threading.Event) -> bool:
    """Run a claimed task if it is a storyboard (True), else leave it to the video path (False).

    Finishes the task itself (succeed / cancelled); errors propagate to the worker's
    handlers (input.* for KinemaInputError, internal.generation, or a retry for a lost worker).
    """
    if not claim.resolved_json.startswith(KIND_PREFIX):
        return False
    from kinema.studio.cache import ShotCache
    from kinema.studio.load import parse_storyboard
    from kinema.studio.render import Studio

    settings, queue = workers.settings, workers.queue
    job = json.loads(claim.resolved_json)
    data = copy.deepcopy(job["storyboard"])
    data["output"] = {**(data.get("output") or {}), "srt": False}  # the captions are in the MP4 (soft subtitles); one file to download
    board = parse_storyboard(data, base_dir=settings.inputs_dir / claim.task_id, check_files=True)
    tracker: _Tracker | None = None

    def on_step(step: int, total: int) -> None:
        if tracker is not None:
            tracker.step(step, total)

    backend = ExecutorBackend(workers.backend, workers.executor, claim.task_id, stop.is_set, on_step)
    studio = Studio(Pipeline(backend), ShotCache(settings.shot_cache_dir / job["account_id"], max_bytes=settings.shot_cache_max_bytes), owner=claim.task_id)
    studio._fingerprint = fingerprint_of(workers.backend)  # the real model's, not the adapter's
    plan = studio.plan(board)
    tracker = _Tracker(plan, progress, stop.is_set)
    target = settings.outputs_dir / f"{claim.task_id}.mp4"
    try:
        report = studio.render(board, target, progress=tracker.event, plan=plan)
    except Exception as exc:
        lost = _lost_in(exc)
        if lost is not None:
            raise lost from None
        if stop.is_set() or _cancelled_in(exc):
            queue.cancelled(claim.task_id, owner)
            return True
        raise
    progress(tracker.total, tracker.total)
    if not queue.succeed(claim.task_id, owner, report.output.name, charge_for(job, report, claim.task_id)):
        report.output.unlink(missing_ok=True)  # the lease was lost or the task cancelled: nobody may download this
    return True
