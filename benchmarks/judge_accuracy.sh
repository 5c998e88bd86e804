#!/usr/bin/env bash
# Built-in model, judge-read attribute accuracy on the seen and held-out suites
# (48 prompts each), plus the judge's own check on renderer ground truth.
# Writes docs/results/eval_builtin.json and docs/results/eval_ground_truth.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
.venv/bin/kinema evaluate --suite all --json docs/results/eval_builtin.json --no-progress
.venv/bin/kinema evaluate --suite all --ground-truth --json docs/results/eval_ground_truth.json --no-progress
