"""FLOPs per generated token for each family, from its transformer config (no weights needed).

Counted like `kinema.models.dit.DiT.flops_per_sample`: 2 FLOPs per
multiply-add, every matmul and attention product; elementwise work (norms,
activations, RoPE) is left out. What each architecture spends per step:

    Wan        self-attention over N video tokens, cross-attention to L text tokens (+257 CLIP image tokens for 2.1 I2V), GELU MLP
    LTX-Video  the same block shape as Wan (self + cross attention, GELU MLP)
    CogVideoX  one joint attention over text + video tokens (N + L), MLP on both
    Hunyuan    dual-stream blocks (separate weights for video and text, joint attention) then single-stream
               blocks (parallel attention + MLP on N + L tokens); a small text refiner first
    FramePack  Hunyuan's transformer over one window plus the compressed history it attends to
    SkyReels   Wan 2.1's transformer (the same count)
    Mochi      asymmetric dual stream: video at width d, text at a narrower width, one joint attention over
               N + L tokens at width d, SwiGLU MLPs on both; an attention pool over the prompt first

"Per generated token" divides one transformer pass by the video tokens it
denoises, so a quote is tokens x flops_per_token x passes per step x steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kinema.engine.diffusers.families import Configs, Family

CLIP_IMAGE_TOKENS = 257  # Wan 2.1 I2V: CLIP ViT-H/14 hidden states of a 224px image (256 patches + class token)


@dataclass(frozen=True)
class Cost:
    tokens: int  # video tokens one transformer pass denoises
    text_tokens: int
    flops_per_pass: float  # one transformer forward
    passes_per_step: int  # 2 with classifier-free guidance
    steps: int
    windows: int = 1  # FramePack denoises the clip window by window, each for every step

    @property
    def flops_per_token(self) -> float:
        return self.flops_per_pass / self.tokens

    @property
    def total_flops(self) -> float:
        return self.flops_per_pass * self.passes_per_step * self.steps * self.windows


def _attn_block(n: int, d: int) -> float:
    """Self-attention on n tokens: q, k, v, out projections and the two n x n products."""
    return 8.0 * n * d * d + 4.0 * n * n * d


def _cross_block(n: int, m: int, d: int, kv_dim: int | None = None) -> float:
    kv = kv_dim or d
    return 4.0 * n * d * d + 4.0 * m * kv * d + 4.0 * n * m * d


def _mlp(n: int, d: int, hidden: int) -> float:
    return 4.0 * n * d * hidden


def wan_flops(tr: dict[str, Any], n: int, text: int) -> float:
    d = int(tr["num_attention_heads"]) * int(tr["attention_head_dim"])
    p = math.prod(tr.get("patch_size", (1, 2, 2)))
    f = 2.0 * n * int(tr.get("in_channels", 16)) * p * d + 2.0 * n * d * int(tr.get("out_channels", 16)) * p
    f += 2.0 * text * (int(tr["text_dim"]) * d + d * d)  # text embedder MLP
    per_block = _attn_block(n, d) + _cross_block(n, text, d) + _mlp(n, d, int(tr["ffn_dim"]))
    if tr.get("image_dim"):
        img = CLIP_IMAGE_TOKENS
        f += 2.0 * img * (int(tr["image_dim"]) * d + d * d)
        per_block += 4.0 * img * d * d + 4.0 * n * img * d  # extra k, v and products for the image tokens
    return f + int(tr["num_layers"]) * per_block


def ltx_flops(tr: dict[str, Any], n: int, text: int) -> float:
    d = int(tr["num_attention_heads"]) * int(tr["attention_head_dim"])
    p = int(tr.get("patch_size", 1)) ** 2 * int(tr.get("patch_size_t", 1))
    f = 2.0 * n * int(tr.get("in_channels", 128)) * p * d + 2.0 * n * d * int(tr.get("out_channels", 128)) * p
    f += 2.0 * text * (int(tr.get("caption_channels", 4096)) * d + d * d)  # caption projection
    per_block = _attn_block(n, d) + _cross_block(n, text, d, int(tr.get("cross_attention_dim", d))) + _mlp(n, d, 4 * d)
    return f + int(tr["num_layers"]) * per_block


def cogvideox_flops(tr: dict[str, Any], n: int, text: int) -> float:
    d = int(tr["num_attention_heads"]) * int(tr["attention_head_dim"])
    p = int(tr.get("patch_size", 2)) ** 2 * int(tr.get("patch_size_t") or 1)
    m = n + text
    f = 2.0 * n * int(tr.get("in_channels", 16)) * p * d + 2.0 * n * d * int(tr.get("out_channels", 16)) * p
    f += 2.0 * text * int(tr.get("text_embed_dim", 4096)) * d
    per_block = _attn_block(m, d) + _mlp(m, d, 4 * d)
    return f + int(tr["num_layers"]) * per_block


def hunyuan_flops(tr: dict[str, Any], n: int, text: int) -> float:
    d = int(tr["num_attention_heads"]) * int(tr["attention_head_dim"])
    p = int(tr.get("patch_size", 2)) ** 2 * int(tr.get("patch_size_t", 1))
    mlp = int(d * float(tr.get("mlp_ratio", 4.0)))
    m = n + text
    f = 2.0 * n * int(tr.get("in_channels", 16)) * p * d + 2.0 * n * d * int(tr.get("out_channels", 16)) * p
    f += 2.0 * text * int(tr.get("text_embed_dim", 4096)) * d  # context embedder
    f += int(tr.get("num_refiner_layers", 2)) * (_attn_block(text, d) + _mlp(text, d, mlp))
    # Dual-stream: each stream has its own projections and MLP; attention runs over both jointly.
    dual = 8.0 * m * d * d + 4.0 * m * m * d + _mlp(m, d, mlp)
    # Single-stream: one fused in-projection (qkv + MLP up), attention, one out-projection from (d + mlp).
    single = 2.0 * m * d * (3 * d + mlp) + 4.0 * m * m * d + 2.0 * m * (d + mlp) * d
    return f + int(tr["num_layers"]) * dual + int(tr["num_single_layers"]) * single


def mochi_flops(tr: dict[str, Any], n: int, text: int) -> float:
    d = int(tr["num_attention_heads"]) * int(tr["attention_head_dim"])
    dt = int(tr.get("pooled_projection_dim", 1536))  # the text stream's width
    te = int(tr.get("text_embed_dim", 4096))
    p = int(tr.get("patch_size", 2)) ** 2
    in_ch = int(tr.get("in_channels", 12))
    out_ch = int(tr.get("out_channels") or in_ch)
    m = n + text
    h, hc = (4 * d * 2) // 3, (4 * dt * 2) // 3  # SwiGLU widths (video, text)
    f = 2.0 * n * in_ch * p * d + 2.0 * n * d * p * out_ch
    f += 2.0 * text * te * 2 * te + 2.0 * text * te * dt  # attention pool's key/value projection, caption projection
    layers = int(tr["num_layers"])
    block = 6.0 * n * d * d + 6.0 * text * dt * d + 4.0 * m * m * d + 2.0 * n * d * d + 6.0 * n * d * h  # qkv, joint attention, out, MLP
    text_out = 2.0 * text * d * dt + 6.0 * text * dt * hc  # the text stream's out-projection and MLP (not in the last block)
    return f + layers * block + (layers - 1) * text_out


def _framepack_history_tokens(latent_h: int, latent_w: int, patch: int) -> int:
    """Tokens of FramePack's clean history: 2 frames at full rate, 2 at 2x and 16 at 4x compression."""
    full = latent_h * latent_w // (patch * patch)
    return 2 * full + (2 // 2) * full // 4 + (16 // 4) * full // 16


FLOP_COUNTERS = {"wan": wan_flops, "ltx": ltx_flops, "cogvideox": cogvideox_flops, "hunyuan": hunyuan_flops, "skyreels": wan_flops, "mochi": mochi_flops}


def video_tokens(family: Family, configs: Configs, num_frames: int, height: int, width: int) -> int:
    """Tokens one transformer pass sees for a clip (for FramePack: one window plus its history)."""
    geo = family.geometry(configs)
    tr = configs["transformer"]
    ps = tr.get("patch_size", 2)
    ph = int(ps[1]) if isinstance(ps, (list, tuple)) else int(ps)
    pt = int(ps[0]) if isinstance(ps, (list, tuple)) else int(tr.get("patch_size_t") or 1)
    vae_spatial = _vae_spatial(family, configs)
    lat_h, lat_w = height // vae_spatial, width // vae_spatial
    lat_t = (num_frames - 1) // geo.temporal_stride + 1
    if configs["model_index"]["_class_name"] == "HunyuanVideoFramepackPipeline":
        window = int(family.call_defaults(configs).get("latent_window_size", 9))
        return window * (lat_h // ph) * (lat_w // ph) + _framepack_history_tokens(lat_h, lat_w, ph)
    return math.ceil(lat_t / pt) * (lat_h // ph) * (lat_w // ph)


def _vae_spatial(family: Family, configs: Configs) -> int:
    vae = configs["vae"]
    if family.name in ("wan", "skyreels"):
        return int(vae.get("scale_factor_spatial", 8))
    if family.name == "mochi":
        return math.prod(vae.get("spatial_expansions", (2, 2, 2)))
    if family.name == "ltx":
        scaling = sum(bool(x) for x in vae.get("spatio_temporal_scaling", (True, True, True, False)))
        return int(vae.get("spatial_compression_ratio") or int(vae.get("patch_size", 4)) * 2**scaling)
    if family.name == "cogvideox":
        return 2 ** (len(vae.get("block_out_channels", (128, 256, 256, 512))) - 1)
    return int(vae.get("spatial_compression_ratio", 8))


def text_tokens(family: Family, configs: Configs) -> int:
    """Text tokens the transformer attends to (the pipelines pad prompts to this length)."""
    if family.name == "cogvideox":
        return int(configs["transformer"].get("max_text_seq_length", 226))
    if family.name == "mochi":
        return int(configs["transformer"].get("max_sequence_length", 256))
    return {"wan": 512, "ltx": 128, "hunyuan": 256, "skyreels": 512}[family.name]


def estimate_cost(family: Family, configs: Configs, num_frames: int, height: int, width: int, steps: int, guidance: float) -> Cost:
    """FLOPs of a whole generation; guidance > 1 doubles the passes except for guidance-distilled families."""
    n = video_tokens(family, configs, num_frames, height, width)
    text = text_tokens(family, configs)
    per_pass = FLOP_COUNTERS[family.name](configs["transformer"], n, text)
    passes = 2 if family.supports_negative_prompt and guidance > 1.0 else 1
    windows = 1
    if configs["model_index"]["_class_name"] == "HunyuanVideoFramepackPipeline":
        window_frames = (int(family.call_defaults(configs)["latent_window_size"]) - 1) * family.geometry(configs).temporal_stride + 1
        windows = max(1, math.ceil(num_frames / window_frames))
    return Cost(tokens=n, text_tokens=text, flops_per_pass=per_pass, passes_per_step=passes, steps=steps, windows=windows)
