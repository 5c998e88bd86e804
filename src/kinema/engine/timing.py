"""Named wall-clock spans, so every caller can print the same split of where time went."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


class Timings(dict[str, float]):
    """`{stage: seconds}`; `measure` adds to a stage, so a stage may be timed in pieces."""

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[stage] = self.get(stage, 0.0) + time.perf_counter() - start


def format_timings(timings: dict[str, float]) -> str:
    """Aligned `stage  seconds` lines plus the total, for `--timings`."""
    width = max([len(k) for k in timings] + [5])
    lines = [f"{k.replace('_', ' '):<{width}}  {v:8.3f} s" for k, v in timings.items()]
    lines.append(f"{'total':<{width}}  {sum(timings.values()):8.3f} s")
    return "\n".join(lines)
