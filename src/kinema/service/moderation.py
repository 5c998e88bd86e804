"""The moderation hook: a check that refuses a request before it is stored or charged.

A `Moderator` is any callable `(request) -> Verdict | None` (None = allowed);
the default is a word blocklist from Settings. A refusal becomes the API error
`moderation.prompt` (or `moderation.negative_prompt`): a 422, nothing stored,
nothing charged.

Images are checked too: a moderator may also have a method
`check_image(pixels) -> Verdict | None` (pixels: uint8 [H, W, 3]), called on
every uploaded image, on images sent inline as data URLs, and on sampled
frames of every uploaded video, before anything is stored. A refusal is the
422 `moderation.image`. A moderator without `check_image` lets every image
through. The default's image rule is a perceptual-hash blocklist
(Settings.moderation_image_hashes): an image whose 64-bit difference hash
(`image_hash`) is within `IMAGE_HASH_DISTANCE` bits of a listed hash is
refused, so a blocked picture stays blocked when it is re-encoded, resized or
slightly recoloured. Storyboard texts (titles, captions) go through the same
callable as prompts; their refusals are `moderation.text`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kinema.request import GenerationRequest

IMAGE_HASH_DISTANCE = 6  # bits out of 64: near-duplicates (re-encoded, resized, recoloured) of a blocked image


@dataclass(frozen=True)
class Verdict:
    code: str  # "moderation.prompt", "moderation.image", ...
    message: str


Moderator = Callable[[GenerationRequest], "Verdict | None"]
ImageCheck = Callable[[np.ndarray], "Verdict | None"]


def image_hash(pixels: np.ndarray) -> str:
    """64-bit difference hash (dHash) of an image, as 16 hex digits.

    Grey 9x8 thumbnail; bit = "this pixel is brighter than its right neighbour".
    Robust to re-encoding, scaling and small colour changes; compare with `hash_distance`.
    """
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(pixels[..., :3].astype(np.uint8))).convert("L").resize((9, 8), Image.Resampling.LANCZOS)
    g = np.asarray(img, dtype=np.int16)
    bits = (g[:, 1:] > g[:, :-1]).flatten()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def image_hash_file(path: str | Path) -> str:
    """The `image_hash` of an image file (what an operator adds to Settings.moderation_image_hashes)."""
    from kinema.conditioning.images import load_image

    return image_hash(load_image(path))


def is_image_hash(value: str) -> bool:
    """16 lowercase hex digits: the form `image_hash` returns and the blocklists hold."""
    return re.fullmatch(r"[0-9a-f]{16}", value) is not None


def read_hash_list(path: str | Path) -> tuple[str, ...]:
    """The hashes of a blocked-images file: one 16-hex hash per line, `#` starts a comment.

    Checked here so that a typo stops `kinema serve` with the file's line
    number instead of passing every image.
    """
    from kinema.errors import KinemaInputError

    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise KinemaInputError(f"cannot read the blocked-images file {path}: {exc}") from None
    hashes = []
    for number, line in enumerate(lines, 1):
        value = line.split("#", 1)[0].strip().lower()
        if not value:
            continue
        if not is_image_hash(value):
            raise KinemaInputError(f"{path}:{number}: an image hash is 16 hex digits (`kinema admin image-hash IMAGE`), got {value!r}")
        hashes.append(value)
    return tuple(hashes)


def hash_distance(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


class BlocklistModerator:
    """Refuses prompts containing a blocked word (whole words, any case) and images near a blocked hash."""

    def __init__(self, words: Iterable[str], image_hashes: Iterable[str] = (), image_distance: int = IMAGE_HASH_DISTANCE) -> None:
        words = [w.strip().lower() for w in words if w.strip()]
        self.pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE) if words else None
        self.image_hashes = tuple(h.strip().lower() for h in image_hashes if h.strip())
        for h in self.image_hashes:
            if not is_image_hash(h):
                raise ValueError(f"an image hash is 16 hex digits (moderation.image_hash), got {h!r}")
        self.image_distance = image_distance

    def __call__(self, request: GenerationRequest) -> Verdict | None:
        if self.pattern is None:
            return None
        for field in ("prompt", "negative_prompt"):
            match = self.pattern.search(getattr(request, field) or "")
            if match:
                return Verdict(f"moderation.{field}", f"the {field.replace('_', ' ')} contains a blocked term ({match.group(0).lower()!r})")
        return None

    def check_image(self, pixels: np.ndarray) -> Verdict | None:
        if not self.image_hashes:
            return None
        h = image_hash(pixels)
        if any(hash_distance(h, blocked) <= self.image_distance for blocked in self.image_hashes):
            return Verdict("moderation.image", "the image matches a blocked image")
        return None


def check_image(moderator: Any, pixels: np.ndarray) -> Verdict | None:
    """The moderator's image verdict (None when it has no image check)."""
    check = getattr(moderator, "check_image", None)
    if check is None:
        return None
    verdict = check(pixels)
    if verdict is not None and not verdict.code.startswith("moderation."):
        verdict = Verdict("moderation.image", verdict.message)
    return verdict


def check_text(moderator: Any, text: str, code: str = "moderation.text") -> Verdict | None:
    """A free text (a caption, a card title) through the prompt check, without the prompt's length limit."""
    check = getattr(moderator, "check_text", None)
    if check is not None:
        return check(text)
    verdict = moderator(GenerationRequest.model_construct(prompt=text, negative_prompt=""))
    return None if verdict is None else Verdict(code, verdict.message.replace("the prompt", "the text"))
