#!/usr/bin/env bash
# Built-in model, judge-read attribute accuracy on the seen and held-out suites
# (48 prompts each) with the suite's seeds (the issue's figure) and with 8 seeds per prompt (the mean and
# its standard error: one seed's figure moves by ~3 points), plus the judge's own check on renderer ground truth.
# Writes docs/results/eval_builtin.json, eval_builtin_seeds8_{seen,heldout}.json and eval_ground_truth.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
.venv/bin/kinema evaluate --suite all --json docs/results/eval_builtin.json --no-progress
for suite in seen heldout; do
    .venv/bin/kinema evaluate --suite "$suite" --seeds 8 --json "docs/results/eval_builtin_seeds8_$suite.json" --no-progress
done
.venv/bin/kinema evaluate --suite all --ground-truth --json docs/results/eval_ground_truth.json --no-progress
