"""kinema.train.precision: "auto" takes the faster of fp32 and bf16 for the stage's own step."""

import json
import re
import time

import pytest
import torch

from kinema.train import precision
from kinema.train.precision import PRECISION_RECORD, choose_precision, resolve_precision, time_precisions


def _probe(slow: str, calls: list, delay: float = 0.02):
    """A step that takes `delay` seconds longer in the `slow` precision and draws from the global RNG."""

    def step(p: str, i: int) -> None:
        calls.append((p, i))
        torch.rand(3)
        time.sleep(delay if p == slow else 0.0)

    return step


@pytest.mark.parametrize("slow, expected", [("bf16", "fp32"), ("fp32", "bf16")])
def test_auto_times_both_precisions_and_takes_the_faster(monkeypatch, tmp_path, slow, expected):
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: True)
    calls: list = []
    record = tmp_path / "ckpt" / PRECISION_RECORD
    choice = choose_precision("auto", _probe(slow, calls), record, repeats=2)
    assert choice.precision == expected and choice.how == "measured"
    # one warm-up each on the first input, then the two take turns on inputs 0 and 1
    assert calls == [("fp32", 0), ("bf16", 0), ("fp32", 0), ("bf16", 0), ("bf16", 1), ("fp32", 1)]
    assert choice.step_seconds[slow] > choice.step_seconds[expected]
    assert json.loads(record.read_text())["precision"] == expected
    assert expected in choice.describe() and "s/step" in choice.describe()


def test_a_resumed_stage_keeps_its_recorded_choice_without_timing_again(monkeypatch, tmp_path):
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: True)
    record = tmp_path / PRECISION_RECORD
    first = choose_precision("auto", _probe("fp32", []), record, repeats=1)
    calls: list = []
    again = choose_precision("auto", _probe("bf16", calls), record, repeats=1)  # would now time fp32 faster
    assert (again.precision, again.how, calls) == (first.precision, "recorded", [])


def test_explicit_precisions_and_cpus_without_native_bf16_time_nothing(monkeypatch):
    calls: list = []
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: True)
    assert choose_precision("bf16", _probe("bf16", calls)).precision == "bf16"
    assert choose_precision("fp32", _probe("fp32", calls)).precision == "fp32"
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: False)  # emulated bf16: many times slower
    assert choose_precision("auto", _probe("fp32", calls)).precision == "fp32"
    assert calls == []
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision("fp16", _probe("fp32", calls))
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16")


def test_timing_leaves_the_global_rng_as_it_was(monkeypatch):
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: True)
    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    choose_precision("auto", _probe("bf16", [], delay=0.0), repeats=1)
    assert torch.equal(torch.rand(4), expected)


def test_announce_prints_what_auto_became_on_rank_zero(monkeypatch, capsys):
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: True)
    choose_precision("auto", _probe("bf16", []), repeats=1, announce="dit")
    assert re.search(r"\[kinema train\] dit: precision auto -> fp32 \(measured in [0-9.]+ s: bf16 [0-9.]+ s/step, fp32", capsys.readouterr().out)


def test_a_precision_that_is_slow_only_while_the_machine_is_busy_is_not_blamed_for_it():
    """Taking turns: a slowdown during the first calls (another job, memory being mapped) hits both precisions."""
    clock = {"calls": 0}

    def step(p: str, i: int) -> None:
        clock["calls"] += 1
        busy = 0.03 if clock["calls"] <= 6 else 0.0  # the warm-ups and the first two rounds
        time.sleep(busy + (0.01 if p == "bf16" else 0.0))

    seconds = time_precisions(step, repeats=4)
    assert seconds["fp32"] < seconds["bf16"]
