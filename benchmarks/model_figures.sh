#!/usr/bin/env bash
# Re-measure every figure that depends on the built-in model's weights, after
# `kinema train configs/builtin.toml` and `cp -r runs/builtin/model/. src/kinema/assets/builtin/`.
#
#   benchmarks/model_figures.sh            # ~20 min on the 2-core reference machine
#
# Pick the default guidance first, on the seen suite only (the held-out suite stays untuned):
#   .venv/bin/python benchmarks/guidance_sweep.py --guidance 3 4 6 8 --json docs/results/guidance_sweep.json
# and write the best value into src/kinema/assets/builtin/pipeline.json ("guidance").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RESULTS=docs/results
MODEL=src/kinema/assets/builtin

step() { echo "== $(date +%H:%M:%S) $*" >&2; }

step "VAE ceiling: the judge on VAE round trips of held-out ground truth"
"$PY" benchmarks/vae_roundtrip.py "$MODEL/vae" --suite heldout --limit 48 | tee "$RESULTS/vae_roundtrip.json"
step "judge evaluation, seen and held-out suites (and the judge on ground truth)"
benchmarks/judge_accuracy.sh
step "conditioning (issue 3)"
"$PY" benchmarks/conditioning.py --json "$RESULTS/conditioning.json" > /dev/null
step "storyboard subject consistency (issue 6)"
"$PY" benchmarks/story_consistency.py --json "$RESULTS/story_consistency.json" > /dev/null
step "done"
