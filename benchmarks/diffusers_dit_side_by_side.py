"""The built-in DiT next to a diffusers transformer of the same parameter and token count, on this CPU.

The diffusers side is a `WanTransformer3DModel` (the same block shape as ours:
self-attention with RoPE and q/k RMSNorm, cross-attention to text, GELU MLP,
adaLN modulation) sized to the built-in DiT: hidden 256, 4 heads, 8 layers,
text width 384, patch 1x2x2, and an MLP width chosen so the parameter counts
match (Wan's adaLN is a shared table, ours a per-block linear, so Wan gets the
difference back in its MLP). Both see the built-in model's default request:
64x112, 17 frames -> latents [16, 5, 8, 14] -> 140 tokens, a 64-token prompt,
and a batch of 2 (classifier-free guidance runs both branches in one pass).

Reported per model: parameters, analytic FLOPs per pass, the median thread CPU
time per denoising step (one guided pass; `time.thread_time`, so time spent
descheduled by other processes on this shared machine does not count; with one
torch thread all the work runs in this thread), GFLOP/s, and a torch.profiler
breakdown of CPU time by operator kind, which is where "why ours is slower"
comes from.

    nice -n 10 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/diffusers_dit_side_by_side.py

Writes docs/results/diffusers_side_by_side.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

KINDS = {
    "matmul": ("addmm", "mm", "bmm", "linear", "matmul", "baddbmm"),
    "attention": ("scaled_dot_product", "flash_attention", "_efficient_attention"),
    "norm": ("layer_norm", "rms_norm", "native_layer_norm", "_fused_rms_norm"),
    "copy/reshape": ("copy_", "clone", "contiguous", "cat", "permute", "transpose", "reshape", "view", "expand", "stack", "unflatten", "flatten", "to", "_to_copy", "empty", "zeros", "new_zeros", "slice", "select", "chunk", "split", "unbind", "narrow", "unsqueeze", "squeeze", "type_as"),
    "elementwise": ("add", "mul", "sub", "div", "gelu", "silu", "neg", "cos", "sin", "exp", "pow", "rsqrt", "mean", "sum", "where", "float", "tanh", "sigmoid", "addcmul", "masked_fill", "clamp", "arange", "outer", "polar", "view_as_real", "view_as_complex", "complex"),
}


def kind_of(op: str) -> str:
    name = op.split("::")[-1].lstrip("_")
    for kind, names in KINDS.items():
        if any(name == n.lstrip("_") or name.startswith(n.lstrip("_") + "_") for n in names):
            return kind
    return "other"


def builtin_dit() -> tuple[torch.nn.Module, dict]:
    from kinema.engine.pipeline import builtin_model_dir
    from kinema.models.io import load_pretrained

    dit = load_pretrained(builtin_model_dir() / "dit").eval()
    return dit, json.loads((builtin_model_dir() / "dit" / "config.json").read_text())


def make_wan(ffn: int, hidden: int, heads: int, depth: int, text_dim: int, latent: int) -> torch.nn.Module:
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=hidden // heads, in_channels=latent, out_channels=latent,
        text_dim=text_dim, freq_dim=256, ffn_dim=ffn, num_layers=depth, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
    ).eval()  # fmt: skip


def wan_like(params: int, hidden: int, heads: int, depth: int, text_dim: int, latent: int) -> torch.nn.Module:
    """A Wan transformer with `params` parameters: the MLP width absorbs the difference."""
    n0 = sum(p.numel() for p in make_wan(4 * hidden, hidden, heads, depth, text_dim, latent).parameters())
    per_ffn = depth * (2 * hidden + 1)  # each extra MLP unit: one row of fc1 (+bias), one column of fc2
    return make_wan(4 * hidden + round((params - n0) / per_ffn), hidden, heads, depth, text_dim, latent)


def time_interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:  # noqa: ANN001
    """Round-robin over the models so load from other processes hits each one alike."""
    out: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode():
        for fn in fns.values():
            for _ in range(3):
                fn()
        for _ in range(repeats):
            for name, fn in fns.items():
                t0 = time.thread_time()  # CPU time of this thread: time descheduled by other processes does not count
                fn()
                out[name].append(time.thread_time() - t0)
    return out


def profile(fn) -> dict[str, float]:  # noqa: ANN001
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch.inference_mode():
        fn()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                fn()
    by_kind: dict[str, float] = defaultdict(float)
    for evt in prof.key_averages():
        if evt.key.startswith("aten::"):
            by_kind[kind_of(evt.key)] += evt.self_cpu_time_total / 5 / 1000.0  # ms per pass
    return {k: round(v, 2) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", type=Path, default=Path("docs/results/diffusers_side_by_side.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    from kinema.engine.diffusers.cost import wan_flops

    dit, cfg = builtin_dit()
    n_dit = sum(p.numel() for p in dit.parameters())
    wan = wan_like(n_dit, cfg["hidden"], cfg["heads"], cfg["depth"], cfg["text_dim"], cfg["latent_channels"])
    n_wan = sum(p.numel() for p in wan.parameters())
    # The same MLP width as ours instead: fewer parameters (Wan's adaLN is one shared table), nearly the same FLOPs per token.
    wan_mlp = make_wan(int(cfg["hidden"] * cfg["mlp_ratio"]), cfg["hidden"], cfg["heads"], cfg["depth"], cfg["text_dim"], cfg["latent_channels"])
    n_wan_mlp = sum(p.numel() for p in wan_mlp.parameters())

    batch, text_len = 2, 64
    lat = (cfg["latent_channels"], 5, 8, 14)  # 64x112, 17 frames
    tokens = lat[1] * (lat[2] // 2) * (lat[3] // 2)
    x = torch.randn(batch, *lat)
    t = torch.full((batch,), 0.5)
    text = torch.randn(batch, text_len, cfg["text_dim"])
    mask = torch.ones(batch, text_len, dtype=torch.bool)
    cond = torch.zeros(batch, cfg["latent_channels"] + 1, *lat[1:])

    def ours() -> torch.Tensor:
        return dit(x, t, text, mask, cond=cond)  # the engine always passes the frame-conditioning input

    def ours_no_cond() -> torch.Tensor:
        return dit(x, t, text, mask)

    def theirs() -> torch.Tensor:
        return wan(hidden_states=x, timestep=t * 1000, encoder_hidden_states=text, return_dict=False)[0]

    def theirs_same_mlp() -> torch.Tensor:
        return wan_mlp(hidden_states=x, timestep=t * 1000, encoder_hidden_states=text, return_dict=False)[0]

    flops = {
        "kinema_dit": batch * dit.flops_per_sample(lat[1], lat[2], lat[3], text_len, with_cond=True),
        "kinema_dit_no_cond": batch * dit.flops_per_sample(lat[1], lat[2], lat[3], text_len),
        "diffusers_wan": batch * wan_flops(dict(wan.config), tokens, text_len),
        "diffusers_wan_same_mlp": batch * wan_flops(dict(wan_mlp.config), tokens, text_len),
    }
    fns = {"kinema_dit": ours, "kinema_dit_no_cond": ours_no_cond, "diffusers_wan": theirs, "diffusers_wan_same_mlp": theirs_same_mlp}
    all_times = time_interleaved(fns, args.repeats)
    results = {}
    for name, fn in fns.items():
        ms = 1000 * statistics.median(all_times[name])
        results[name] = {
            "cpu_ms_per_step": round(ms, 2),
            "gflop_per_step": round(flops[name] / 1e9, 3),
            "gflop_per_s": round(flops[name] / 1e9 / (ms / 1000), 2),
            "profile_ms_by_kind": profile(fn),
        }
        print(name, json.dumps(results[name]))
    report = {
        "what": "one guided denoising step (batch 2) of the built-in DiT vs a WanTransformer3DModel of the same parameter and token count",
        "machine": "2-core AMD EPYC, no GPU, torch " + torch.__version__.split("+")[0] + ", 1 torch thread",
        "diffusers": __import__("diffusers").__version__,
        "command": "nice -n 10 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/diffusers_dit_side_by_side.py",
        "params": {"kinema_dit": n_dit, "diffusers_wan": n_wan, "wan_ffn_dim": wan.config.ffn_dim, "diffusers_wan_same_mlp": n_wan_mlp},
        "tokens": tokens,
        "text_tokens": text_len,
        "batch": batch,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
