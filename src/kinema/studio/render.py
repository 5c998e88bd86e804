"""From a plan to a finished film: generate (or reuse) every shot, then compose, mix and mux.

`Studio` is the one entry point the CLI, the HTTP service and an editor share:
`plan` (cheap), `shot` (one shot, e.g. a preview), `generate_shots` (all, in
order: a continuous shot needs the previous one's last frame) and `render`
(everything, to an MP4 plus .srt). A shot is looked up in the cache by its
request before anything is generated and stored the moment it is made, so a
failed shot leaves every other shot's cache entry in place. The film itself
is encoded in segments kept beside the shots (`studio.segments`), so a
re-render re-encodes only what an edit changed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kinema.engine.backend import Progress, Video
from kinema.engine.pipeline import Pipeline
from kinema.errors import KinemaInputError
from kinema.request import make_request
from kinema.studio.cache import ShotCache, file_digest, shot_key
from kinema.studio.plan import PriceConfig, ShotPlan, StoryPlan, plan_storyboard
from kinema.studio.storyboard import MEDIA_FIELDS, Storyboard

# (event, shot index or -1, total): "shot-start", "shot-cached", "shot-done", "frames"
StoryProgress = Callable[[str, int, int], None]


@dataclass
class ShotResult:
    index: int
    key: str
    video: Video
    cached: bool
    seconds: float  # wall time spent on it (0 when cached)
    made_by: str = ""  # the owner that generated it (this studio's when not cached; a retried task's own earlier attempt)


@dataclass
class RenderReport:
    output: Path
    srt: Path | None
    plan: StoryPlan
    shots: list[ShotResult]
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    segments_encoded: int = 0  # film segments drawn and encoded by this render
    segments_reused: int = 0  # ... and taken from the segment store unchanged
    references_made: list[str] = field(default_factory=list)  # subjects whose reference frame this owner generated

    @property
    def generated(self) -> int:
        return sum(not s.cached for s in self.shots)


def model_fingerprint(pipe: Pipeline) -> str:
    """Identifies the weights and settings a shot was generated with (config files + weight bytes)."""
    backend = pipe.backend
    model_dir = getattr(backend, "model_dir", None)
    if model_dir is None:
        return f"{type(backend).__module__}.{type(backend).__name__}:{getattr(backend, 'model_id', '')}"
    h = hashlib.sha256()
    for p in sorted(Path(model_dir).rglob("*")):
        if p.is_file() and p.suffix in (".json", ".safetensors"):
            h.update(str(p.relative_to(model_dir)).encode())
            h.update(file_digest(p).encode())
    return h.hexdigest()


class Studio:
    def __init__(self, pipe: Pipeline, cache: ShotCache, prices: PriceConfig | None = None, owner: str = ""):
        """`owner` labels what this studio generates in the cache (the service: the task id), so a
        retried task can tell the shots its earlier attempt made from ones another film made."""
        self.pipe, self.cache, self.prices, self.owner = pipe, cache, prices, owner
        self._fingerprint: str | None = None
        self.references_made: set[str] = set()  # since generate_shots began: what a charge counts

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.pipe)
        return self._fingerprint

    def plan(self, board: Storyboard) -> StoryPlan:
        return plan_storyboard(board, self.pipe, self.prices)

    # -- generation -------------------------------------------------------------------------
    def _run(self, request_key: str, run: Callable[[], Video]) -> tuple[Video, bool, float]:
        cached = self.cache.get(request_key)
        if cached is not None:
            return cached, True, 0.0
        start = time.perf_counter()
        video = run()
        self.cache.put(request_key, video, self.owner)
        return video, False, time.perf_counter() - start

    def _generate(self, request, resolved_where: str, progress: Progress | None) -> tuple[Video, bool, float, str]:  # type: ignore[no-untyped-def]
        """Validate, look up, generate and store one request."""
        try:
            resolved = self.pipe.validate(request)
        except KinemaInputError as e:
            raise KinemaInputError(f"{resolved_where}: {e}") from None
        media = {name: file_digest(getattr(request, name)) for name in MEDIA_FIELDS if getattr(request, name, None)}
        for j, kf in enumerate(getattr(request, "keyframes", ()) or ()):
            media[f"keyframes[{j}]"] = file_digest(kf.image)
        key = shot_key(request, resolved, media, self.fingerprint)
        video, cached, seconds = self._run(key, lambda: self.pipe.run(resolved, progress))
        return video, cached, seconds, key

    def reference_frame(self, plan: StoryPlan, name: str, progress: Progress | None = None) -> str:
        """Path of a subject's reference image: its own, or the first frame of its generated reference."""
        subject = plan.subjects[name]
        if subject.image is not None:
            return subject.image
        assert subject.request is not None, "a subject without an image is planned with a reference request"
        video, cached, _, key = self._generate(subject.request, f"subject {name!r}", progress)
        if self._made_here(cached, key):
            self.references_made.add(name)
        return str(self.cache.put_image(video.frames[0]))

    def shot(self, plan: StoryPlan, index: int, previous: Video | None = None, progress: Progress | None = None) -> ShotResult:
        """One shot (a preview in an editor). A continuous shot needs the previous shot's video."""
        sp: ShotPlan = plan.shots[index]
        request = sp.request
        if sp.condition == "subject" and sp.condition_subject is not None:
            request = request.model_copy(update={"image": self.reference_frame(plan, sp.condition_subject)})
        elif sp.condition == "previous":
            if previous is None:
                raise ValueError(f"{sp.path} continues the previous shot: generate that first")
            request = request.model_copy(update={"image": str(self.cache.put_image(previous.frames[-1]))})
        # model_copy skips validation: re-validate the combined request with the engine's own rules.
        try:
            request = make_request(**request.model_dump(exclude_defaults=True))
        except KinemaInputError as e:
            raise KinemaInputError(f"{sp.path}: {e}") from None
        try:
            video, cached, seconds, key = self._generate(request, sp.path, progress)
        except KinemaInputError:
            raise
        except Exception as e:  # a failed shot: earlier shots are already stored
            raise RuntimeError(f"{sp.path}: generation failed: {e}") from e
        return ShotResult(index, key, video, cached, seconds, self.owner if self._made_here(cached, key) else "")

    def _made_here(self, cached: bool, key: str) -> bool:
        """Generated now, or by this owner before (a retried task's earlier attempt)."""
        return not cached or bool(self.owner and self.cache.made_by(key) == self.owner)

    def generate_shots(self, plan: StoryPlan, progress: StoryProgress | None = None, step_progress: Progress | None = None) -> list[ShotResult]:
        results: list[ShotResult] = []
        self.references_made = set()
        n = len(plan.shots)
        for sp in plan.shots:
            if progress:
                progress("shot-start", sp.index, n)
            previous = results[-1].video if results else None
            result = self.shot(plan, sp.index, previous, step_progress)
            results.append(result)
            if progress:
                progress("shot-cached" if result.cached else "shot-done", sp.index, n)
        return results

    # -- the film ---------------------------------------------------------------------------
    def render(
        self,
        board: Storyboard,
        output: str | Path,
        *,
        srt: str | Path | None = None,
        progress: StoryProgress | None = None,
        step_progress: Progress | None = None,
        plan: StoryPlan | None = None,
    ) -> RenderReport:
        from kinema.studio.audio import mix_soundtrack
        from kinema.studio.compose import Clip, FilmComposer
        from kinema.studio.mux import SegmentedFilmWriter
        from kinema.studio.segments import SegmentStore, plan_segments
        from kinema.studio.subtitles import write_srt
        from kinema.studio.timeline import caption_cues

        timings: dict[str, float] = {}
        encoded = reused = 0
        t0 = time.perf_counter()
        plan = plan or self.plan(board)
        timings["plan"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        results = self.generate_shots(plan, progress, step_progress)
        timings["generate"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        cues = caption_cues(board, plan.film)
        clips = [Clip(r.video.frames, r.video.fps) for r in results]
        composer = FilmComposer(board, plan.film, clips, cues)
        seconds = composer.num_frames / composer.fps  # the picture's exact length: the sound matches it
        warnings = list(plan.warnings)
        audio = None
        if board.soundtrack is not None:
            mix = mix_soundtrack(board.soundtrack, cues, seconds)
            audio, warnings = mix.audio, warnings + mix.warnings
        timings["audio"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        out = board.output
        store = SegmentStore(self.cache.directory / "segments")
        segments = plan_segments(composer)
        paths = []
        for segment in segments:
            if segment in store:
                reused += 1
                if progress:
                    progress("frames", segment.stop, composer.num_frames)
            else:
                store.encode(composer, segment, (lambda i: progress("frames", i + 1, composer.num_frames)) if progress else None)
                encoded += 1
            paths.append(store.path(segment))
            self.cache.mark_used(store.path(segment))
        writer = SegmentedFilmWriter(
            output, paths[0], composer.width, composer.height, composer.fps, audio=audio,
            audio_bitrate=out.audio_bitrate, cues=cues if out.subtitles else None,
        )  # fmt: skip
        with writer:
            for path in paths:
                writer.append(path)
        srt_path = None
        if out.srt and cues:
            srt_path = write_srt(srt if srt is not None else writer.path.with_suffix(".srt"), cues)
        timings["compose"] = time.perf_counter() - t0
        self.cache.prune()  # within its size limit, if it has one; this film's files stay
        return RenderReport(writer.path, srt_path, plan, results, timings, warnings, encoded, reused, sorted(self.references_made))

