"""The moderation hook: a check that refuses a request before it is stored or charged.

A `Moderator` is any callable `(request) -> Verdict | None` (None = allowed);
the default is a word blocklist from Settings. A refusal becomes the API error
`moderation.prompt` (or `moderation.negative_prompt`, `moderation.image`): a
422, nothing stored, nothing charged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kinema.request import GenerationRequest


@dataclass(frozen=True)
class Verdict:
    code: str  # "moderation.prompt", ...
    message: str


Moderator = Callable[[GenerationRequest], "Verdict | None"]


class BlocklistModerator:
    """Refuses prompts containing a blocked word (whole words, any case)."""

    def __init__(self, words: Iterable[str]) -> None:
        words = [w.strip().lower() for w in words if w.strip()]
        self.pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE) if words else None

    def __call__(self, request: GenerationRequest) -> Verdict | None:
        if self.pattern is None:
            return None
        for field in ("prompt", "negative_prompt"):
            match = self.pattern.search(getattr(request, field) or "")
            if match:
                return Verdict(f"moderation.{field}", f"the {field.replace('_', ' ')} contains a blocked term ({match.group(0).lower()!r})")
        return None
