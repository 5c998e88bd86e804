"""Text encoders: MiniLM offline encoding, refusal of over-long prompts, the hash test encoder."""

from __future__ import annotations

import os

import pytest
import torch

from kinema.errors import KinemaInputError
from kinema.models.text import HashTextEncoder, MiniLMEncoder, TextEncoder, load_text_encoder, register_text_encoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def minilm() -> MiniLMEncoder:
    threads = torch.get_num_threads()
    enc = load_text_encoder("all-MiniLM-L6-v2", max_tokens=16)
    assert torch.get_num_threads() == threads
    return enc


def test_minilm_encodes_per_token_states(minilm: MiniLMEncoder) -> None:
    threads = torch.get_num_threads()
    prompts = ["a red circle moves left", "", "two small blue squares bounce on a grid"]
    hidden, mask = minilm.encode(prompts)
    assert torch.get_num_threads() == threads
    assert isinstance(minilm, TextEncoder) and minilm.dim == 384
    lengths = [minilm.count_tokens(p) for p in prompts]
    assert lengths[1] == 2  # [CLS] [SEP]: the empty prompt is the unconditional embedding
    assert hidden.shape == (3, max(lengths), 384) and hidden.dtype == torch.float32
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == lengths
    assert not any(p.requires_grad for p in minilm.model.parameters())


def test_minilm_is_deterministic_and_padding_free(minilm: MiniLMEncoder) -> None:
    alone, _ = minilm.encode(["a yellow star spins"])
    batched, mask = minilm.encode(["a yellow star spins", "a large white cross moves quickly to the right"])
    again, _ = minilm.encode(["a yellow star spins"])
    torch.testing.assert_close(again, alone, atol=0, rtol=0)
    n = alone.shape[1]
    torch.testing.assert_close(batched[0, :n], alone[0], atol=1e-5, rtol=1e-5)
    assert not mask[0, n:].any()
    other, _ = minilm.encode(["a yellow star grows"])
    assert other.shape == alone.shape
    assert not torch.allclose(other, alone, atol=1e-3)


def test_minilm_refuses_over_long_prompt(minilm: MiniLMEncoder) -> None:
    prompt = "a red circle and a blue square move left while the camera pans right slowly"
    assert minilm.count_tokens(prompt) > 16
    with pytest.raises(KinemaInputError, match="at most 16 tokens"):
        minilm.encode(["ok", prompt])


def test_minilm_max_tokens_limit() -> None:
    with pytest.raises(KinemaInputError, match="512"):
        MiniLMEncoder(max_tokens=1000)


def test_hash_encoder_is_deterministic() -> None:
    a, b = HashTextEncoder(dim=32, max_tokens=8), HashTextEncoder(dim=32, max_tokens=8)
    ha, ma = a.encode(["Red circle, left", ""])
    hb, mb = b.encode(["red circle , left", ""])
    torch.testing.assert_close(ha, hb, atol=0, rtol=0)
    assert torch.equal(ma, mb) and ma.sum(1).tolist() == [5, 1]
    assert isinstance(a, TextEncoder)
    # same word, same vector, wherever it appears
    hc, _ = a.encode(["circle"])
    torch.testing.assert_close(hc[0, 1], ha[0, 2], atol=0, rtol=0)
    assert not torch.allclose(ha[0, 1], ha[0, 2])
    with pytest.raises(KinemaInputError, match="at most 8 tokens"):
        a.encode(["one two three four five six seven eight"])


def test_load_by_name_and_register() -> None:
    enc = load_text_encoder("hash-test", dim=16, max_tokens=4)
    assert isinstance(enc, HashTextEncoder) and enc.dim == 16 and enc.max_tokens == 4
    with pytest.raises(KinemaInputError, match="hash-test"):
        load_text_encoder("no-such-encoder")
    register_text_encoder("hash-wide", lambda **kw: HashTextEncoder(dim=8, **kw))
    assert load_text_encoder("hash-wide").dim == 8
