"""Tiny random diffusers pipelines for every supported family, built from configs in memory.

Tests and benchmarks need a real diffusers model directory without a download:
each builder makes the family's own component classes (transformer, VAE, text
encoder(s), scheduler, image encoder) at toy sizes, a tokenizer that needs no
files (`ByT5Tokenizer()`: bytes are tokens), and `save_pretrained`s the
pipeline. The result loads through `DiffusersBackend` exactly as a hub
checkpoint would; only the sizes differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

TEXT_DIM = 32  # d_model of the tiny T5/UMT5 (and the transformers' text input)
BYTE_VOCAB = 384  # ByT5Tokenizer(): 3 specials + 256 bytes + 125 extra ids


def _byte_tokenizer() -> Any:
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer()


def _t5(umt5: bool = False) -> Any:
    import torch
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    kw = dict(vocab_size=BYTE_VOCAB, d_model=TEXT_DIM, d_kv=8, d_ff=32, num_layers=1, num_heads=4, relative_attention_num_buckets=8)
    return UMT5EncoderModel(UMT5Config(**kw)) if umt5 else T5EncoderModel(T5Config(**kw))


def wan_components(variant: str = "t2v") -> dict[str, Any]:
    """Wan layouts: UMT5 + AutoencoderKLWan + WanTransformer3DModel.

    "t2v" (2.1 T2V), "i2v" (2.1 I2V: CLIP vision features of the image), "i2v-a14b" (2.2 I2V: two
    transformers split by a timestep boundary, no image encoder), "ti2v" (2.2 TI2V-5B: one model for
    text and image to video, a 16x-compressing VAE with 48 latent channels).
    """
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

    ti2v = variant == "ti2v"
    torch.manual_seed(0)
    if ti2v:
        vae = AutoencoderKLWan(
            base_dim=3, z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2, latents_mean=[0.0] * 48,
            latents_std=[1.0] * 48, dim_mult=[1, 1, 1, 1], num_res_blocks=1, scale_factor_spatial=16, scale_factor_temporal=4,
            temperal_downsample=[False, True, True],
        )  # fmt: skip
    else:
        vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
    in_channels = {"t2v": 16, "i2v": 36, "i2v-a14b": 36, "ti2v": 48}[variant]

    def transformer() -> Any:
        torch.manual_seed(0)
        return WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=in_channels,
            out_channels=48 if ti2v else 16, text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", rope_max_seq_len=32, image_dim=4 if variant == "i2v" else None,
        )  # fmt: skip

    parts: dict[str, Any] = dict(
        transformer=transformer(), vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        text_encoder=_t5(umt5=True), tokenizer=_byte_tokenizer(),
    )  # fmt: skip
    if variant == "i2v":
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

        torch.manual_seed(0)
        parts["image_encoder"] = CLIPVisionModel(
            CLIPVisionConfig(hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2, image_size=32, intermediate_size=16, patch_size=1)
        )
        parts["image_processor"] = CLIPImageProcessor(crop_size=32, size=32)
    if variant == "i2v-a14b":
        parts.update(transformer_2=transformer(), boundary_ratio=0.875)
    if ti2v:
        parts["expand_timesteps"] = True
    return parts


def ltx_components() -> dict[str, Any]:
    """LTX-Video layout: T5 + AutoencoderKLLTXVideo + LTXVideoTransformer3DModel."""
    import torch
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel

    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4, attention_head_dim=8,
        cross_attention_dim=32, num_layers=1, caption_channels=TEXT_DIM,
    )  # fmt: skip
    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False), decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False), upsample_factor=(1, 1, 1, 1), timestep_conditioning=False,
        patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False,
    )  # fmt: skip
    return dict(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(), text_encoder=_t5(), tokenizer=_byte_tokenizer())


def cogvideox_components(image_to_video: bool = False) -> dict[str, Any]:
    """CogVideoX layout: T5 + AutoencoderKLCogVideoX + CogVideoXTransformer3DModel (I2V: learned positions, one size)."""
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=8 if image_to_video else 4, out_channels=4,
        time_embed_dim=2, text_embed_dim=TEXT_DIM, num_layers=1, sample_width=2, sample_height=2, sample_frames=9,
        patch_size=2, temporal_compression_ratio=4, max_text_seq_length=16,
        use_rotary_positional_embeddings=image_to_video, use_learned_positional_embeddings=image_to_video,
    )  # fmt: skip
    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4,
    )  # fmt: skip
    return dict(transformer=transformer, vae=vae, scheduler=CogVideoXDDIMScheduler(), text_encoder=_t5(), tokenizer=_byte_tokenizer())


def _hunyuan_text_and_vae() -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    torch.manual_seed(0)
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1, act_fn="silu",
        norm_num_groups=4, scaling_factor=0.476986, spatial_compression_ratio=8, temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )  # fmt: skip
    torch.manual_seed(0)
    llama = LlamaModel(LlamaConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=0, hidden_size=16, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, vocab_size=BYTE_VOCAB, hidden_act="gelu",
    ))  # fmt: skip
    torch.manual_seed(0)
    clip = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, pad_token_id=0, hidden_size=8, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, vocab_size=BYTE_VOCAB, hidden_act="gelu", projection_dim=32,
    ))  # fmt: skip
    return dict(
        vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder=llama, tokenizer=_byte_tokenizer(),
        text_encoder_2=clip, tokenizer_2=_byte_tokenizer(),
    )  # fmt: skip


def hunyuan_components() -> dict[str, Any]:
    """HunyuanVideo layout: Llama + CLIP text encoders, AutoencoderKLHunyuanVideo, HunyuanVideoTransformer3DModel."""
    import torch
    from diffusers import HunyuanVideoTransformer3DModel

    parts = _hunyuan_text_and_vae()
    torch.manual_seed(0)
    parts["transformer"] = HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=1, num_single_layers=1,
        num_refiner_layers=1, patch_size=1, patch_size_t=1, guidance_embeds=True, text_embed_dim=16,
        pooled_projection_dim=8, rope_axes_dim=(2, 4, 4),
    )  # fmt: skip
    return parts


def framepack_components() -> dict[str, Any]:
    """HunyuanVideo FramePack layout: the HunyuanVideo parts plus a SigLIP image encoder."""
    import torch
    from diffusers import HunyuanVideoFramepackTransformer3DModel
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    parts = _hunyuan_text_and_vae()
    torch.manual_seed(0)
    parts["transformer"] = HunyuanVideoFramepackTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=1, num_single_layers=1,
        num_refiner_layers=1, patch_size=2, patch_size_t=1, guidance_embeds=True, text_embed_dim=16,
        pooled_projection_dim=8, rope_axes_dim=(2, 4, 4), image_condition_type=None, has_image_proj=True,
        image_proj_dim=32, has_clean_x_embedder=True,
    )  # fmt: skip
    torch.manual_seed(0)
    parts["image_encoder"] = SiglipVisionModel(
        SiglipVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4, image_size=30, patch_size=2)
    )
    parts["feature_extractor"] = SiglipImageProcessor(size={"height": 30, "width": 30})
    return parts


def skyreels_components(variant: str = "t2v") -> dict[str, Any]:
    """SkyReels-V2 layout (Wan's: UMT5 + AutoencoderKLWan) with SkyReelsV2Transformer3DModel and UniPC.

    "t2v" (SkyReels-V2 T2V), "i2v" (I2V: CLIP image features and a 36-channel input, as Wan 2.1 I2V),
    "df" (diffusion forcing: a 16-channel input; first frames and continuations ride as clean latents).
    """
    import torch
    from diffusers import AutoencoderKLWan, SkyReelsV2Transformer3DModel, UniPCMultistepScheduler

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
    torch.manual_seed(0)
    transformer = SkyReelsV2Transformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36 if variant == "i2v" else 16,
        out_channels=16, text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32, image_dim=4 if variant == "i2v" else None,
    )  # fmt: skip
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=8.0)
    parts: dict[str, Any] = dict(transformer=transformer, vae=vae, scheduler=scheduler, text_encoder=_t5(umt5=True), tokenizer=_byte_tokenizer())
    if variant == "i2v":
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

        torch.manual_seed(0)
        parts["image_encoder"] = CLIPVisionModelWithProjection(
            CLIPVisionConfig(hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2, image_size=32, intermediate_size=16, patch_size=1)
        )
        parts["image_processor"] = CLIPImageProcessor(crop_size=32, size=32)
    return parts


def mochi_components() -> dict[str, Any]:
    """Mochi layout: T5 + AutoencoderKLMochi (8x space, 6x time) + MochiTransformer3DModel (asymmetric joint attention)."""
    import torch
    from diffusers import AutoencoderKLMochi, FlowMatchEulerDiscreteScheduler, MochiTransformer3DModel

    torch.manual_seed(0)
    transformer = MochiTransformer3DModel(
        patch_size=2, num_attention_heads=2, attention_head_dim=8, num_layers=2, pooled_projection_dim=16, in_channels=12,
        out_channels=None, qk_norm="rms_norm", text_embed_dim=TEXT_DIM, time_embed_dim=4, activation_fn="swiglu", max_sequence_length=16,
    )  # fmt: skip
    torch.manual_seed(0)
    vae = AutoencoderKLMochi(
        latent_channels=12, out_channels=3, encoder_block_out_channels=(32, 32, 32, 32),
        decoder_block_out_channels=(32, 32, 32, 32), layers_per_block=(1, 1, 1, 1, 1),
    )  # fmt: skip
    return dict(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(), text_encoder=_t5(), tokenizer=_byte_tokenizer())


def _pipeline(class_name: str, parts: Callable[[], dict[str, Any]]) -> Callable[[], Any]:
    def build() -> Any:
        import diffusers

        return getattr(diffusers, class_name)(**parts())

    return build


TINY_PIPELINES: dict[str, Callable[[], Any]] = {
    "wan-t2v": _pipeline("WanPipeline", wan_components),
    "wan-i2v": _pipeline("WanImageToVideoPipeline", lambda: wan_components("i2v")),
    "wan22-i2v": _pipeline("WanImageToVideoPipeline", lambda: wan_components("i2v-a14b")),
    "wan22-ti2v": _pipeline("WanPipeline", lambda: wan_components("ti2v")),
    "ltx": _pipeline("LTXPipeline", ltx_components),
    "cogvideox-t2v": _pipeline("CogVideoXPipeline", cogvideox_components),
    "cogvideox-i2v": _pipeline("CogVideoXImageToVideoPipeline", lambda: cogvideox_components(image_to_video=True)),
    "hunyuan-t2v": _pipeline("HunyuanVideoPipeline", hunyuan_components),
    "hunyuan-framepack": _pipeline("HunyuanVideoFramepackPipeline", framepack_components),
    "skyreels-t2v": _pipeline("SkyReelsV2Pipeline", skyreels_components),
    "skyreels-i2v": _pipeline("SkyReelsV2ImageToVideoPipeline", lambda: skyreels_components("i2v")),
    "skyreels-df": _pipeline("SkyReelsV2DiffusionForcingPipeline", lambda: skyreels_components("df")),
    "mochi": _pipeline("MochiPipeline", mochi_components),
}


def build_tiny_pipeline(name: str) -> Any:
    """The diffusers pipeline object itself (benchmarks call it directly for the no-wrapper baseline)."""
    if name not in TINY_PIPELINES:
        raise KeyError(f"unknown tiny pipeline {name!r}; known: {', '.join(TINY_PIPELINES)}")
    return TINY_PIPELINES[name]()


def save_tiny_pipeline(name: str, directory: str | Path) -> Path:
    """A diffusers model directory (model_index.json + one folder per component) at `directory`."""
    directory = Path(directory)
    build_tiny_pipeline(name).save_pretrained(directory)
    return directory
