"""Which compute precision a training stage runs in.

Why "auto": bf16 autocast is many times slower than fp32 on a CPU that only
emulates it (on a 2-core AVX2-only AMD EPYC VM the built-in DiT's training step
ran at 1.0 samples/s in bf16 against 15.7 in fp32), and on CPUs that do bf16
natively it is sometimes faster and sometimes not, by model and by CPU
(docs/benchmarks.md, "Training throughput"). So "auto" is fp32 without native
bf16 and, with it, whichever of the two the stage's own step runs faster in,
timed when the stage starts (`choose_precision`). A recipe that names "auto"
runs as fast as the machine allows on any kind of CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from kinema.train.checkpoint import write_json_atomic

PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_RECORD = "precision.json"  # in a stage's checkpoint directory: the choice "auto" made, kept on resume


def autocast(precision: str) -> Any:
    """bf16 autocast on the CPU for "bf16"; no autocast (fp32) for anything else."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles), as PyTorch sees it."""
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(bool(check()) for check in checks if check is not None)


def _check_name(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def resolve_precision(precision: str) -> str:
    """"fp32" or "bf16" without timing anything: "auto" becomes bf16 where the CPU does it natively, else fp32.

    For code outside the trainers (probes, benchmarks) that needs a precision at once; the
    trainers time both with `choose_precision`."""
    _check_name(precision)
    if precision == "auto":
        return "bf16" if native_cpu_bf16() else "fp32"
    return precision


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a stage trains in, and why.

    `how` is "config" (named in the config), "no native bf16" ("auto" on a CPU
    that emulates bf16), "measured" (timed here) or "recorded" (timed by an earlier
    run of this stage, which a resume keeps so one stage trains in one precision
    throughout).
    `step_seconds` holds the measured median seconds per probe step by precision,
    `probe_seconds` what timing them took (outside the stage's own time budget).
    """

    precision: str
    how: str
    step_seconds: dict[str, float] = field(default_factory=dict)
    probe_seconds: float = 0.0

    def describe(self) -> str:
        timed = ", ".join(f"{p} {s:.3f} s/step" for p, s in sorted(self.step_seconds.items()))
        took = f" in {self.probe_seconds:.1f} s" if self.how == "measured" else ""
        return f"{self.precision} ({self.how}{took}{': ' + timed if timed else ''})"


def time_precisions(step: Callable[[str, int], Any], repeats: int, precisions: tuple[str, ...] = ("fp32", "bf16")) -> dict[str, float]:
    """Median wall seconds of `step(precision, i)` per precision, over calls i = 0 .. repeats - 1.

    One untimed warm-up call each first (the first call in a precision builds its kernels); then
    the precisions take turns on each i, so a machine that speeds up or slows down meanwhile
    (a shared VM, memory still being allocated) weighs on both alike, and each sees the same
    `repeats` inputs, so one unusual batch cannot decide it.
    """
    for p in precisions:
        step(p, 0)
    times: dict[str, list[float]] = {p: [] for p in precisions}
    for i in range(repeats):
        for p in precisions if i % 2 == 0 else precisions[::-1]:
            start = time.perf_counter()
            step(p, i)
            times[p].append(time.perf_counter() - start)
    return {p: statistics.median(t) for p, t in times.items()}


def choose_precision(
    requested: str, probe: Callable[[str, int], Any], record: Path | None = None, dist: Any = None, repeats: int = 6, announce: str | None = None
) -> PrecisionChoice:
    """The precision a stage should train in: `requested`, or for "auto" the faster of fp32 and bf16 here.

    Why measure: native bf16 is not always the faster. On a CPU with AMX tiles the
    built-in DiT's step ran 1.5x faster in bf16 than fp32, on an AMD EPYC with
    AVX512-BF16 about as fast, and on an Intel Xeon with AVX512-BF16 but no AMX
    20-35% slower, the VAE's and the cache stage's too (docs/benchmarks.md,
    "Training throughput").
    `probe(precision, i)` runs one forward and backward of the stage's own step i
    (no optimizer update); a few of each take seconds against a stage of minutes.
    The global RNG is left as it was, so the run's randomness does not depend on
    the probe. Under torchrun every rank times, rank 0's choice holds for all.
    With `record` (a JSON file in the stage's checkpoint directory) the choice is
    written once and reused when the stage resumes. With `announce` (the stage's
    name), rank 0 prints what "auto" became.
    """
    _check_name(requested)
    if requested != "auto":
        return PrecisionChoice(requested, "config")
    if not native_cpu_bf16():
        return PrecisionChoice("fp32", "no native bf16")
    if record is not None and record.is_file():
        saved = json.loads(record.read_text())
        choice = PrecisionChoice(saved["precision"], "recorded", saved.get("step_seconds", {}))
        _announce(announce, choice, dist)
        return choice
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        seconds = time_precisions(probe, repeats)
    faster = min(seconds, key=seconds.__getitem__)
    if dist is not None and dist.enabled:
        from kinema.train.distributed import broadcast_values

        (is_bf16,) = broadcast_values(dist, float(faster == "bf16"))
        faster = "bf16" if is_bf16 else "fp32"
    choice = PrecisionChoice(faster, "measured", seconds, time.perf_counter() - start)
    if record is not None and (dist is None or dist.is_main):
        write_json_atomic(record, dataclasses.asdict(choice))
    _announce(announce, choice, dist)
    return choice


def _announce(stage: str | None, choice: PrecisionChoice, dist: Any) -> None:
    if stage is not None and (dist is None or dist.is_main):
        print(f"[kinema train] {stage}: precision auto -> {choice.describe()}", flush=True)
