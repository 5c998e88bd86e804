"""FLOPs per generated token for each family's released transformer size, from the cost model.

The transformer configs are the diffusers classes' own defaults (the released
sizes: Wan 14B, LTX-Video 2B, CogVideoX 2B, HunyuanVideo 13B) plus the
Wan 2.1 1.3B and CogVideoX 5B settings from their model cards; no weights are
loaded. Each row is the family's default clip.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/diffusers_cost_table.py

Writes docs/results/diffusers_cost.json.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

from kinema.engine.diffusers.cost import estimate_cost
from kinema.engine.diffusers.families import FAMILIES


def defaults(class_name: str) -> dict:
    import diffusers

    sig = inspect.signature(getattr(diffusers, class_name).__init__)
    return {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}


def main() -> None:
    wan14 = defaults("WanTransformer3DModel")
    rows = [
        ("Wan 2.1 T2V 14B", "wan", "WanPipeline", wan14, {}, 480, 832, 81),
        ("Wan 2.1 T2V 1.3B", "wan", "WanPipeline", {**wan14, "num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30}, {}, 480, 832, 81),
        ("LTX-Video 2B (0.9.x)", "ltx", "LTXPipeline", defaults("LTXVideoTransformer3DModel"), defaults("AutoencoderKLLTXVideo"), 480, 704, 121),
        ("CogVideoX 2B", "cogvideox", "CogVideoXPipeline", defaults("CogVideoXTransformer3DModel"), {}, 480, 720, 49),
        ("CogVideoX 5B", "cogvideox", "CogVideoXPipeline", {**defaults("CogVideoXTransformer3DModel"), "num_attention_heads": 48, "num_layers": 42}, {}, 480, 720, 49),
        ("HunyuanVideo 13B", "hunyuan", "HunyuanVideoPipeline", defaults("HunyuanVideoTransformer3DModel"), {}, 720, 1280, 129),
    ]
    out = []
    for title, fam, cls, tr, vae, h, w, frames in rows:
        family = FAMILIES[fam]
        configs = {"model_index": {"_class_name": cls}, "transformer": tr, "vae": vae, "scheduler": {}}
        c = estimate_cost(family, configs, frames, h, w, family.default_steps, family.default_guidance)
        out.append({
            "model": title, "clip": f"{w}x{h}, {frames} frames", "video_tokens": c.tokens, "text_tokens": c.text_tokens,
            "gflop_per_token_per_pass": round(c.flops_per_token / 1e9, 3), "tflop_per_pass": round(c.flops_per_pass / 1e12, 2),
            "passes_per_step": c.passes_per_step, "steps": c.steps, "pflop_total": round(c.total_flops / 1e15, 1),
        })  # fmt: skip
        print(json.dumps(out[-1]))
    path = Path("docs/results/diffusers_cost.json")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"command": "nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/diffusers_cost_table.py", "rows": out}, indent=2) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
