"""Plan a storyboard: one validated engine request per shot, its conditioning, seed and price.

Nothing heavy runs here (the backend's `validate` reads only configs and the
tokenizer), so a plan answers "will this work, and what will it cost?" in
milliseconds, and every problem names the shot it is in.

Subject consistency is decided here:

- a shot shows the subjects it lists (`subject:`), else those whose name its
  prompt mentions;
- with `consistency: true`, a shot of a subject is conditioned on the
  subject's reference frame as its first frame (`image`): the subject's own
  `image`, or a frame generated once from its description; a `continuous`
  shot is conditioned on the previous shot's last frame instead;
- the subject's shots also share the subject's seed (unless they set one), so
  even a model without image conditioning starts them from the same noise.

If the model cannot condition on images (no "image-to-video" in its
capabilities), the plan keeps the shared seed, drops the image conditioning
and says so in `warnings`.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

from kinema.engine.backend import Capabilities, ResolvedRequest
from kinema.engine.pipeline import Pipeline
from kinema.errors import KinemaInputError
from kinema.request import GenerationRequest, make_request
from kinema.studio.storyboard import Shot, Storyboard, Subject
from kinema.studio.timeline import Layout, layout

IMAGE_TASK = "image-to-video"


@dataclass(frozen=True)
class PriceConfig:
    """How a plan turns model FLOPs into an estimate of seconds (a rough CPU figure; set yours)."""

    flops_per_second: float = 5e10


@dataclass(frozen=True)
class SubjectPlan:
    name: str
    image: str | None  # the subject's own reference image, if it has one
    request: GenerationRequest | None  # else: the one-frame generation of its reference
    resolved: ResolvedRequest | None
    seed: int


@dataclass(frozen=True)
class ShotPlan:
    index: int
    id: str
    path: str  # "shots[2]", for messages
    request: GenerationRequest  # what the engine runs, before conditioning on frames made at render time
    resolved: ResolvedRequest
    subjects: tuple[str, ...]
    condition: str  # "none", "image" (the shot's own), "subject" (its reference frame) or "previous" (last frame)
    condition_subject: str | None
    flops: float | None
    seconds_estimate: float | None


@dataclass
class StoryPlan:
    board: Storyboard
    film: Layout
    generation_size: tuple[int, int]  # (width, height) shots are generated at
    image_conditioning: bool
    subjects: dict[str, SubjectPlan]
    shots: list[ShotPlan]
    warnings: list[str] = field(default_factory=list)

    @property
    def flops(self) -> float | None:
        values = [s.flops for s in self.shots]
        return None if any(v is None for v in values) else float(sum(values))  # type: ignore[arg-type]

    @property
    def seconds_estimate(self) -> float | None:
        values = [s.seconds_estimate for s in self.shots]
        return None if any(v is None for v in values) else float(sum(values))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (for `--plan`, the HTTP service and editors)."""
        w, h = self.board.size()
        return {
            "duration": self.film.duration,
            "size": [w, h],
            "fps": self.board.fps,
            "generation_size": list(self.generation_size),
            "image_conditioning": self.image_conditioning,
            "flops": self.flops,
            "seconds_estimate": self.seconds_estimate,
            "warnings": list(self.warnings),
            "shots": [
                {
                    "index": s.index, "id": s.id, "prompt": s.request.prompt, "seconds": s.request.seconds,
                    "start": self.film.shot_item(s.index).start, "seed": s.resolved.seed, "frames": s.resolved.num_frames,
                    "subjects": list(s.subjects), "condition": s.condition, "flops": s.flops, "seconds_estimate": s.seconds_estimate,
                }
                for s in self.shots
            ],
        }


def derived_seed(base: int, text: str) -> int:
    """A seed that depends only on the storyboard seed and a text (stable across runs and reorders)."""
    return (base + zlib.crc32(text.encode("utf-8"))) % 2**32


def nearest_bucket(caps: Capabilities, aspect_ratio: str) -> tuple[int, int]:
    """(width, height) of the model size whose aspect is nearest (in log ratio) to the film's."""
    aw, ah = (int(x) for x in aspect_ratio.split(":"))
    target = math.log(aw / ah)
    h, w = min(caps.buckets, key=lambda b: abs(math.log(b[1] / b[0]) - target))
    return w, h


def shot_subjects(shot: Shot, subjects: list[Subject]) -> tuple[str, ...]:
    if shot.subject is not None:
        return tuple(shot.subject_names())
    prompt = shot.prompt.lower()
    return tuple(s.name for s in subjects if re.search(rf"(?<!\w){re.escape(s.name.lower())}(?!\w)", prompt))


def subject_seed(board: Storyboard, subject: Subject) -> int:
    return subject.seed if subject.seed is not None else derived_seed(board.seed, f"subject:{subject.name}")


def _validate(pipe: Pipeline, request: GenerationRequest, where: str) -> ResolvedRequest:
    try:
        return pipe.validate(request)
    except KinemaInputError as e:
        raise KinemaInputError(f"{where}: {e}") from None


def _build(where: str, **fields: Any) -> GenerationRequest:
    try:
        return make_request(**fields)
    except KinemaInputError as e:
        raise KinemaInputError(f"{where}: {e}") from None


def plan_storyboard(board: Storyboard, pipe: Pipeline, prices: PriceConfig | None = None) -> StoryPlan:
    caps = pipe.capabilities
    width, height = nearest_bucket(caps, board.aspect_ratio)
    can_condition = IMAGE_TASK in caps.tasks
    warnings: list[str] = []
    flops_of = _flops_counter(pipe)
    prices = prices or PriceConfig()

    subjects: dict[str, SubjectPlan] = {}
    for i, subject in enumerate(board.subjects):
        seed = subject_seed(board, subject)
        request = resolved = None
        if subject.image is None and board.consistency and can_condition:
            frame_seconds = 1.0 / caps.default_fps  # one frame: the reference picture
            request = _build(f"subjects[{i}]", prompt=subject.description or subject.name, seconds=frame_seconds, width=width, height=height, seed=seed)
            resolved = _validate(pipe, request, f"subjects[{i}]")
        subjects[subject.name] = SubjectPlan(subject.name, subject.image, request, resolved, seed)

    shots: list[ShotPlan] = []
    degraded = False
    for i, shot in enumerate(board.shots):
        where = f"shots[{i}]"
        names = shot_subjects(shot, board.subjects)
        fields = shot.request_fields()
        if "seed" not in fields:
            locked = board.consistency and names
            fields["seed"] = subjects[names[0]].seed if locked else derived_seed(board.seed, shot.prompt)
        condition, condition_subject = "none", None
        if getattr(shot, "image", None) is not None:
            condition = "image"
        elif board.consistency and (shot.continuous or names):
            if can_condition:
                condition, condition_subject = ("previous", None) if shot.continuous else ("subject", names[0])
            else:
                degraded = True
        request = _build(where, **fields, seconds=shot.duration, width=width, height=height)
        resolved = _validate(pipe, request, where)
        flops = flops_of(resolved)
        shots.append(ShotPlan(
            i, shot.id or f"shot-{i + 1}", where, request, resolved, names, condition, condition_subject,
            flops, None if flops is None else flops / prices.flops_per_second,
        ))  # fmt: skip
    if degraded:
        warnings.append(
            f"this model cannot condition on images (its tasks: {', '.join(sorted(caps.tasks))}); "
            "subjects are kept consistent by a shared seed only, and continuous shots do not start from the previous last frame"
        )
    return StoryPlan(board, layout(board), (width, height), can_condition, subjects, shots, warnings)


def _flops_counter(pipe: Pipeline) -> Any:
    """resolved -> transformer FLOPs of generating it (all steps, both CFG passes), or None if unknown.

    A backend with its own cost model (diffusers families: `cost(resolved)`)
    answers itself; for kinema's DiT it is built on the meta device: its size,
    not its weights, is needed.
    """
    cost = getattr(pipe.backend, "cost", None)
    if callable(cost):
        return lambda resolved: float(cost(resolved).total_flops)
    model_dir = getattr(pipe.backend, "model_dir", None)
    config = getattr(pipe.backend, "config", None)
    if model_dir is None or config is None or not (model_dir / "dit" / "config.json").is_file():
        return lambda resolved: None
    import torch

    from kinema.models.dit import DiT, DiTConfig
    from kinema.models.io import config_from_dict

    raw = json.loads((model_dir / "dit" / "config.json").read_text())
    cfg = config_from_dict(DiTConfig, {k: v for k, v in raw.items() if not k.startswith("_")})
    with torch.device("meta"):
        dit = DiT(cfg)
    text_len = int(getattr(config, "max_prompt_tokens", 64))

    def count(resolved: ResolvedRequest) -> float:
        t_lat = 1 + (resolved.generated_frames - 1) // 4
        per_pass = dit.flops_per_sample(t_lat, resolved.height // 8, resolved.width // 8, text_len)
        return float(per_pass * resolved.steps * (2 if resolved.guidance != 1.0 else 1))

    return count


def resolved_dict(resolved: ResolvedRequest) -> dict[str, Any]:
    return asdict(resolved)
