#!/usr/bin/env bash
# Score a candidate built-in model the way shipped ones were chosen (docs/benchmarks.md): the guidance on the
# first 24 seen prompts only, written into the candidate's pipeline.json; then, at that guidance, both judge
# suites with SEEDS seeds per prompt (default 4: one seed's figure moves by ~3 points), the motion probe, the
# camera given as the signal only and image-to-video's objects kept.
#
#   benchmarks/score_candidate.sh runs/builtin-mixed/model mixed     # ~20 min on one thread
#
# Writes docs/results/{guidance_sweep,eval,motion_probe,conditioning_camera,conditioning_i2v}_NAME.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MODEL=${1:?usage: score_candidate.sh MODEL_DIR NAME}
NAME=${2:?usage: score_candidate.sh MODEL_DIR NAME}
OUT=docs/results
SEEDS=${SEEDS:-4}
[ -f "$MODEL/pipeline.json" ] || { echo "no model at $MODEL (no pipeline.json)" >&2; exit 2; }

step() { echo "== $(date +%H:%M:%S) $NAME: $*" >&2; }

step "guidance 3 / 4 / 6 on the first 24 seen prompts"
"$PY" benchmarks/guidance_sweep.py --model "$MODEL" --guidance 3 4 6 --limit 24 --json "$OUT/guidance_sweep_$NAME.json" > /dev/null
best=$("$PY" -c 'import json, sys; rows = json.load(open(sys.argv[1]))["rows"]; print(max(rows, key=lambda r: r["overall"])["guidance"])' "$OUT/guidance_sweep_$NAME.json")
"$PY" -c 'import json, sys; p = sys.argv[1] + "/pipeline.json"; d = json.load(open(p)); d["guidance"] = float(sys.argv[2]); open(p, "w").write(json.dumps(d, indent=2) + "\n")' "$MODEL" "$best"
step "guidance $best; both suites, $SEEDS seeds per prompt"
"$PY" -m kinema.cli evaluate --model "$MODEL" --suite all --guidance "$best" --seeds "$SEEDS" --no-progress --json "$OUT/eval_$NAME.json" > /dev/null
step "motion probe"
"$PY" benchmarks/motion_probe.py --model "$MODEL" --items 24 --json "$OUT/motion_probe_$NAME.json" > /dev/null
step "camera as the signal only"
"$PY" benchmarks/conditioning.py --model "$MODEL" --parts camera --items 24 --rss "" --json "$OUT/conditioning_camera_$NAME.json" > /dev/null
step "image-to-video objects kept"
"$PY" benchmarks/conditioning.py --model "$MODEL" --parts i2v --items 24 --rss "" --json "$OUT/conditioning_i2v_$NAME.json" > /dev/null
step "done"
"$PY" - "$OUT" "$NAME" <<'PY'
import json, sys
out, name = sys.argv[1:]
suites = json.load(open(f"{out}/eval_{name}.json"))["suites"]
summary = {f"{s}_overall": round(r["overall"], 3) for s, r in suites.items()}
summary |= {f"{s}_first_seed": round(r["overall_per_seed"][0], 3) for s, r in suites.items()}
summary |= {f"{s}_stderr": r["overall_stderr"] and round(r["overall_stderr"], 3) for s, r in suites.items()}
summary |= {f"heldout_{a}": round(v, 3) for a, v in suites["heldout"]["accuracy"].items()}
summary["motion_probe"] = json.load(open(f"{out}/motion_probe_{name}.json"))["summary"]
summary["camera_signal"] = json.load(open(f"{out}/conditioning_camera_{name}.json"))["camera"]["accuracy"]
summary["i2v"] = {k: v for k, v in json.load(open(f"{out}/conditioning_i2v_{name}.json"))["i2v"].items() if not isinstance(v, (list, dict))}
print(json.dumps(summary, indent=1))
PY
