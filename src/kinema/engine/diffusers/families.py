"""What each open-model family can do: tasks, size and frame rules, defaults, memory figures.

A family is recognised from a diffusers model directory's `model_index.json`
(`_class_name`, the pipeline a checkpoint was saved with) and its component
configs. Everything here is read from JSON, so the capability map, the snap
rules and the refusals all happen before any weights load.

Tasks use the engine's names: "text-to-video", "image-to-video" (first frame
given), "first-last-frame" (first and last frames given) and
"video-extension" (continue a clip from its last frame(s)). Each family maps a
task to the diffusers pipeline class that runs it on the same components
(e.g. an LTX checkpoint runs image-to-video through `LTXImageToVideoPipeline`
and first+last frame through `LTXConditionPipeline`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

T2V, I2V, FLF, EXTEND = "text-to-video", "image-to-video", "first-last-frame", "video-extension"
ALL_TASKS = (T2V, I2V, FLF, EXTEND)

Configs = dict[str, dict[str, Any]]  # "model_index", "transformer", "vae", "scheduler" -> parsed JSON


@dataclass(frozen=True)
class Geometry:
    """Size, frame and time rules read from a checkpoint's configs."""

    spatial_multiple: int  # height and width must be multiples of this
    temporal_stride: int  # frame counts are 1 + temporal_stride * k
    default_size: tuple[int, int]  # (height, width)
    default_frames: int
    max_frames: int
    fps: float  # the rate the model was trained at
    fps_range: tuple[float, float]  # (fps, fps) when the model has no frame-rate input
    fixed_size: bool = False  # learned positional embeddings: one size only (CogVideoX 1.0 I2V)
    max_side: int = 1920


@dataclass(frozen=True)
class Family:
    """One model family: how to recognise it, what it can do, and how to price and fit it."""

    name: str
    title: str
    pipeline_classes: tuple[str, ...]  # model_index `_class_name`s that belong to this family
    transformer_class: str
    routes: Callable[[Configs], dict[str, str]]  # task -> diffusers pipeline class that runs it
    geometry: Callable[[Configs], Geometry]
    default_steps: int
    default_guidance: float
    supports_negative_prompt: bool
    guidance_note: str
    vram_note: str  # what the family's own docs say it needs
    examples: tuple[str, ...]  # hub ids of checkpoints this family covers
    call_defaults: Callable[[Configs], dict[str, Any]] = field(default=lambda cfg: {})


def _snap_up(value: int, multiple: int) -> int:
    return multiple * max(1, math.ceil(value / multiple))


# -- Wan 2.1 / 2.2 -----------------------------------------------------------------------------


def _wan_routes(cfg: Configs) -> dict[str, str]:
    index = cfg["model_index"]
    if index["_class_name"] == "WanImageToVideoPipeline":
        tr = cfg["transformer"]
        if tr.get("pos_embed_seq_len"):  # Wan 2.1 FLF2V: its image tokens are both frames' CLIP features, always two
            return {FLF: "WanImageToVideoPipeline"}
        if tr.get("image_dim"):  # Wan 2.1 I2V: CLIP features of one image; no last frame
            return {I2V: "WanImageToVideoPipeline", EXTEND: "WanImageToVideoPipeline"}
        # Wan 2.2 I2V (A14B): no image encoder, the first and last frames ride in the VAE condition
        return {I2V: "WanImageToVideoPipeline", FLF: "WanImageToVideoPipeline", EXTEND: "WanImageToVideoPipeline"}
    routes = {T2V: "WanPipeline"}
    if index.get("expand_timesteps"):  # Wan 2.2 TI2V-5B: one model for text and image to video (first frame only)
        routes.update({I2V: "WanImageToVideoPipeline", EXTEND: "WanImageToVideoPipeline"})
    return routes


def _wan_geometry(cfg: Configs) -> Geometry:
    vae, tr = cfg["vae"], cfg["transformer"]
    spatial = int(vae.get("scale_factor_spatial", 8)) * int(tr.get("patch_size", [1, 2, 2])[1])
    temporal = int(vae.get("scale_factor_temporal", 2 ** sum(bool(x) for x in vae.get("temperal_downsample", [False, True, True]))))
    if cfg["model_index"].get("expand_timesteps"):  # Wan 2.2 TI2V-5B: 720p at 24 fps
        return Geometry(math.lcm(16, spatial), temporal, (704, 1280), 121, 121, 24.0, (24.0, 24.0))
    return Geometry(math.lcm(16, spatial), temporal, (480, 832), 81, 81, 16.0, (16.0, 16.0))


WAN = Family(
    name="wan",
    title="Wan 2.1 / 2.2",
    pipeline_classes=("WanPipeline", "WanImageToVideoPipeline"),
    transformer_class="WanTransformer3DModel",
    routes=_wan_routes,
    geometry=_wan_geometry,
    default_steps=50,
    default_guidance=5.0,
    supports_negative_prompt=True,
    guidance_note="classifier-free guidance (two transformer passes per step)",
    vram_note="diffusers docs: T2V-1.3B in bf16 with model CPU offload about 11 GB; the 14B models at least 35 GB",
    examples=("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "Wan-AI/Wan2.2-T2V-A14B-Diffusers"),
)


# -- LTX-Video ---------------------------------------------------------------------------------


def _ltx_routes(cfg: Configs) -> dict[str, str]:
    # Every LTX checkpoint shares one component layout; conditioning is a choice of pipeline class.
    return {T2V: "LTXPipeline", I2V: "LTXImageToVideoPipeline", FLF: "LTXConditionPipeline", EXTEND: "LTXConditionPipeline"}


def _ltx_geometry(cfg: Configs) -> Geometry:
    vae, tr = cfg["vae"], cfg["transformer"]
    scaling = sum(bool(x) for x in vae.get("spatio_temporal_scaling", (True, True, True, False)))
    spatial = vae.get("spatial_compression_ratio") or int(vae.get("patch_size", 4)) * 2**scaling
    temporal = vae.get("temporal_compression_ratio") or int(vae.get("patch_size_t", 1)) * 2**scaling
    spatial *= int(tr.get("patch_size", 1))
    temporal *= int(tr.get("patch_size_t", 1))
    return Geometry(math.lcm(32, int(spatial)), int(temporal), (480, 704), 121, 257, 25.0, (8.0, 60.0))


def _ltx_call_defaults(cfg: Configs) -> dict[str, Any]:
    # 0.9.1+ VAEs are timestep-conditioned: the model card decodes at t=0.05 with a little noise.
    if cfg["vae"].get("timestep_conditioning"):
        return {"decode_timestep": 0.05, "decode_noise_scale": 0.025}
    return {}


LTX = Family(
    name="ltx",
    title="LTX-Video",
    pipeline_classes=("LTXPipeline", "LTXImageToVideoPipeline", "LTXConditionPipeline"),
    transformer_class="LTXVideoTransformer3DModel",
    routes=_ltx_routes,
    geometry=_ltx_geometry,
    default_steps=50,
    default_guidance=3.0,
    supports_negative_prompt=True,
    guidance_note="classifier-free guidance; the model takes the frame rate as an input",
    vram_note=(
        "diffusers docs: about 10 GB with fp8 layerwise weight casting + group offloading; "
        "diffusers benchmarks: 0.9.7-dev (13B) in bf16 peaks at 25.2 GB"
    ),
    examples=("Lightricks/LTX-Video", "Lightricks/LTX-Video-0.9.5", "Lightricks/LTX-Video-0.9.7-dev"),
    call_defaults=_ltx_call_defaults,
)


# -- CogVideoX ---------------------------------------------------------------------------------


def _cog_routes(cfg: Configs) -> dict[str, str]:
    if cfg["model_index"]["_class_name"] == "CogVideoXImageToVideoPipeline":
        return {I2V: "CogVideoXImageToVideoPipeline", EXTEND: "CogVideoXImageToVideoPipeline"}
    return {T2V: "CogVideoXPipeline"}


def _cog_geometry(cfg: Configs) -> Geometry:
    vae, tr = cfg["vae"], cfg["transformer"]
    spatial = 2 ** (len(vae.get("block_out_channels", (128, 256, 256, 512))) - 1) * int(tr.get("patch_size", 2))
    temporal = int(vae.get("temporal_compression_ratio", 4))
    vae_spatial = 2 ** (len(vae.get("block_out_channels", (128, 256, 256, 512))) - 1)
    size = (int(tr.get("sample_height", 60)) * vae_spatial, int(tr.get("sample_width", 90)) * vae_spatial)
    v15 = tr.get("patch_size_t") is not None  # CogVideoX 1.5: 81 frames at 16 fps
    frames, fps = (81, 16.0) if v15 else (49, 8.0)
    fixed = bool(tr.get("use_learned_positional_embeddings")) and cfg["model_index"]["_class_name"] == "CogVideoXImageToVideoPipeline"
    return Geometry(math.lcm(16, spatial), temporal, size, frames, frames, fps, (fps, fps), fixed_size=fixed)


def _cog_call_defaults(cfg: Configs) -> dict[str, Any]:
    # The prompt length is baked into the transformer (its text positions); the pipeline must match it.
    return {"max_sequence_length": int(cfg["transformer"].get("max_text_seq_length", 226)), "use_dynamic_cfg": True}


COGVIDEOX = Family(
    name="cogvideox",
    title="CogVideoX",
    pipeline_classes=("CogVideoXPipeline", "CogVideoXImageToVideoPipeline"),
    transformer_class="CogVideoXTransformer3DModel",
    routes=_cog_routes,
    geometry=_cog_geometry,
    default_steps=50,
    default_guidance=6.0,
    supports_negative_prompt=True,
    guidance_note="classifier-free guidance with the dynamic schedule the model card recommends",
    vram_note=(
        "model cards (diffusers, no offload): 2B in fp16 12.5 GB, 5B in bf16 20.7 GB; "
        "5B from about 5 GB with sequential CPU offload + VAE tiling and slicing"
    ),
    examples=("THUDM/CogVideoX-2b", "THUDM/CogVideoX-5b", "THUDM/CogVideoX-5b-I2V", "THUDM/CogVideoX1.5-5B", "THUDM/CogVideoX1.5-5B-I2V"),
    call_defaults=_cog_call_defaults,
)


# -- HunyuanVideo (and FramePack) ---------------------------------------------------------------


def _hunyuan_routes(cfg: Configs) -> dict[str, str]:
    if cfg["model_index"]["_class_name"] == "HunyuanVideoFramepackPipeline":
        return {I2V: "HunyuanVideoFramepackPipeline", FLF: "HunyuanVideoFramepackPipeline", EXTEND: "HunyuanVideoFramepackPipeline"}
    return {T2V: "HunyuanVideoPipeline"}


def _hunyuan_geometry(cfg: Configs) -> Geometry:
    vae, tr = cfg["vae"], cfg["transformer"]
    spatial = int(vae.get("spatial_compression_ratio", 8)) * int(tr.get("patch_size", 2))
    temporal = int(vae.get("temporal_compression_ratio", 4))
    if cfg["model_index"]["_class_name"] == "HunyuanVideoFramepackPipeline":
        # FramePack denoises fixed windows and stitches them, so long clips are its point (30 fps, up to 2 min).
        return Geometry(math.lcm(16, spatial), temporal, (640, 640), 91, 30 * 120 + 1, 30.0, (30.0, 30.0))
    return Geometry(math.lcm(16, spatial), temporal, (720, 1280), 129, 129, 24.0, (24.0, 24.0))


def _hunyuan_call_defaults(cfg: Configs) -> dict[str, Any]:
    if cfg["model_index"]["_class_name"] == "HunyuanVideoFramepackPipeline":
        return {"latent_window_size": 9}
    return {}


HUNYUAN = Family(
    name="hunyuan",
    title="HunyuanVideo (and FramePack)",
    pipeline_classes=("HunyuanVideoPipeline", "HunyuanVideoFramepackPipeline"),
    transformer_class="HunyuanVideoTransformer3DModel",
    routes=_hunyuan_routes,
    geometry=_hunyuan_geometry,
    default_steps=50,
    default_guidance=6.0,
    supports_negative_prompt=False,
    guidance_note="guidance-distilled: `guidance` is the embedded guidance scale, one transformer pass per step, no negative prompt",
    vram_note="model card (no offload): 60 GB at 1280x720 x 129 frames, 45 GB at 960x544 x 129 frames; below that use model CPU offload + VAE tiling",
    examples=("hunyuanvideo-community/HunyuanVideo", "lllyasviel/FramePackI2V_HY (transformer) + hunyuanvideo-community/HunyuanVideo"),
    call_defaults=_hunyuan_call_defaults,
)


# -- SkyReels-V2 (Wan 2.1's architecture; diffusion-forcing checkpoints make long videos) -----------------

SKYREELS_DF = ("SkyReelsV2DiffusionForcingPipeline", "SkyReelsV2DiffusionForcingImageToVideoPipeline", "SkyReelsV2DiffusionForcingVideoToVideoPipeline")


def _skyreels_routes(cfg: Configs) -> dict[str, str]:
    cls = cfg["model_index"]["_class_name"]
    if cls in SKYREELS_DF:
        # Diffusion forcing: given frames ride as clean latents in a 16-channel input, so one checkpoint does
        # text-to-video, first frame, first + last frame and continuations (each window from the last frame).
        i2v = "SkyReelsV2DiffusionForcingImageToVideoPipeline"
        return {T2V: "SkyReelsV2DiffusionForcingPipeline", I2V: i2v, FLF: i2v, EXTEND: i2v}
    if cls == "SkyReelsV2ImageToVideoPipeline":
        if cfg["transformer"].get("pos_embed_seq_len"):  # FLF2V: both frames' CLIP features, always two
            return {FLF: cls}
        return {I2V: cls, EXTEND: cls}  # I2V: CLIP features of one image, as Wan 2.1 I2V
    return {T2V: "SkyReelsV2Pipeline"}


def _skyreels_geometry(cfg: Configs) -> Geometry:
    vae, tr = cfg["vae"], cfg["transformer"]
    spatial = int(vae.get("scale_factor_spatial", 8)) * int(tr.get("patch_size", [1, 2, 2])[1])
    temporal = int(vae.get("scale_factor_temporal", 2 ** sum(bool(x) for x in vae.get("temperal_downsample", [False, True, True]))))
    # 540P: 960x544, 97 frames at 24 fps (the 720P checkpoints take 1280x720 too; the configs do not say which one this is).
    return Geometry(math.lcm(16, spatial), temporal, (544, 960), 97, 97, 24.0, (24.0, 24.0))


SKYREELS = Family(
    name="skyreels",
    title="SkyReels-V2",
    pipeline_classes=("SkyReelsV2Pipeline", "SkyReelsV2ImageToVideoPipeline", *SKYREELS_DF),
    transformer_class="SkyReelsV2Transformer3DModel",
    routes=_skyreels_routes,
    geometry=_skyreels_geometry,
    default_steps=30,
    default_guidance=6.0,
    supports_negative_prompt=True,
    guidance_note="classifier-free guidance (two transformer passes per step); diffusion-forcing checkpoints take the frame rate as an input",
    vram_note="no figure in the diffusers docs; the transformer is Wan 2.1's at 1.3B and 14B, so Wan's figures are a guide",
    examples=("Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers", "Skywork/SkyReels-V2-DF-14B-720P-Diffusers", "Skywork/SkyReels-V2-T2V-14B-540P-Diffusers",
              "Skywork/SkyReels-V2-I2V-14B-540P-Diffusers", "Skywork/SkyReels-V2-FLF2V-1.3B-540P-Diffusers"),  # fmt: skip
)


# -- Mochi 1 -----------------------------------------------------------------------------------------


def _mochi_geometry(cfg: Configs) -> Geometry:
    vae, tr = cfg["vae"], cfg["transformer"]
    spatial = math.prod(vae.get("spatial_expansions", (2, 2, 2))) * int(tr.get("patch_size", 2))
    temporal = math.prod(vae.get("temporal_expansions", (1, 2, 3)))  # 6: frame counts are 1 + 6k
    return Geometry(math.lcm(16, spatial), int(temporal), (480, 848), 85, 163, 30.0, (30.0, 30.0))


def _mochi_call_defaults(cfg: Configs) -> dict[str, Any]:
    return {"max_sequence_length": int(cfg["transformer"].get("max_sequence_length", 256))}


MOCHI = Family(
    name="mochi",
    title="Mochi 1",
    pipeline_classes=("MochiPipeline",),
    transformer_class="MochiTransformer3DModel",
    routes=lambda cfg: {T2V: "MochiPipeline"},
    geometry=_mochi_geometry,
    default_steps=64,
    default_guidance=4.5,
    supports_negative_prompt=True,
    guidance_note="classifier-free guidance (two transformer passes per step)",
    vram_note=(
        "diffusers docs: at least 42 GB in full precision, 22 GB with the bf16 variant (both with model CPU offload + VAE tiling, 85 frames); "
        "decoding 163 frames in fp32 needs at least 70 GB"
    ),
    examples=("genmo/mochi-1-preview",),
    call_defaults=_mochi_call_defaults,
)


FAMILIES: dict[str, Family] = {f.name: f for f in (WAN, LTX, COGVIDEOX, HUNYUAN, SKYREELS, MOCHI)}
_BY_PIPELINE = {cls: f for f in FAMILIES.values() for cls in f.pipeline_classes}

# Video pipelines in diffusers (0.42) that kinema does not map yet, by family: the error says "not supported
# yet: <family>" (and lists what is) rather than "unknown". Why each is not mapped is in docs/diffusers.md.
KNOWN_UNSUPPORTED: dict[str, str] = {
    "WanVideoToVideoPipeline": "Wan video-to-video", "WanVACEPipeline": "Wan VACE", "WanAnimatePipeline": "Wan Animate",
    "CogVideoXVideoToVideoPipeline": "CogVideoX video-to-video", "CogVideoXFunControlPipeline": "CogVideoX Fun-Control",
    "ConsisIDPipeline": "ConsisID", "HunyuanVideoImageToVideoPipeline": "HunyuanVideo I2V",
    "HunyuanSkyreelsImageToVideoPipeline": "SkyReels-V1 (HunyuanVideo I2V)", "HunyuanVideo15Pipeline": "HunyuanVideo 1.5",
    "HunyuanVideo15ImageToVideoPipeline": "HunyuanVideo 1.5", "LTX2Pipeline": "LTX-2", "LTX2ImageToVideoPipeline": "LTX-2",
    "LTX2ConditionPipeline": "LTX-2", "LTX2InContextPipeline": "LTX-2", "LTX2HDRPipeline": "LTX-2",
    "LTXI2VLongMultiPromptPipeline": "LTX-Video long multi-prompt", "AllegroPipeline": "Allegro", "LattePipeline": "Latte",
    "EasyAnimatePipeline": "EasyAnimate", "EasyAnimateControlPipeline": "EasyAnimate", "EasyAnimateInpaintPipeline": "EasyAnimate",
    "CosmosTextToWorldPipeline": "Cosmos", "CosmosVideoToWorldPipeline": "Cosmos", "Cosmos2VideoToWorldPipeline": "Cosmos",
    "Cosmos2_5_PredictBasePipeline": "Cosmos", "Cosmos2_5_TransferPipeline": "Cosmos", "Cosmos3OmniPipeline": "Cosmos",
    "Kandinsky5T2VPipeline": "Kandinsky 5 video", "Kandinsky5I2VPipeline": "Kandinsky 5 video",
    "SanaVideoPipeline": "Sana-Video", "SanaImageToVideoPipeline": "Sana-Video", "MotifVideoPipeline": "Motif-Video",
    "MotifVideoImage2VideoPipeline": "Motif-Video", "HeliosPipeline": "Helios", "HeliosPyramidPipeline": "Helios",
    "ChronoEditPipeline": "ChronoEdit", "LucyEditPipeline": "Lucy Edit", "StableVideoDiffusionPipeline": "Stable Video Diffusion",
    "I2VGenXLPipeline": "I2VGen-XL", "PIAPipeline": "PIA", "AnimateDiffPipeline": "AnimateDiff", "AnimateDiffSDXLPipeline": "AnimateDiff",
    "AnimateDiffVideoToVideoPipeline": "AnimateDiff", "TextToVideoSDPipeline": "ModelScope text-to-video",
    "VideoToVideoSDPipeline": "ModelScope text-to-video", "TextToVideoZeroPipeline": "Text2Video-Zero",
    "TextToVideoZeroSDXLPipeline": "Text2Video-Zero",
}  # fmt: skip


def family_for(pipeline_class: str) -> Family | None:
    return _BY_PIPELINE.get(pipeline_class)


def supported_summary() -> str:
    """The families kinema runs and their pipeline classes, for error messages."""
    return "; ".join(f"{f.title} ({', '.join(f.pipeline_classes)})" for f in FAMILIES.values())


def unsupported_message(pipeline_class: str) -> str:
    """Why a model_index `_class_name` cannot run: "not supported yet: <family>" for a known diffusers video
    pipeline, "not a supported video pipeline" for anything else; both list what kinema runs."""
    if pipeline_class in KNOWN_UNSUPPORTED:
        return f"not supported yet: {KNOWN_UNSUPPORTED[pipeline_class]} ({pipeline_class}); kinema runs {supported_summary()}"
    return f"{pipeline_class} is not a supported video pipeline (unknown family); kinema runs {supported_summary()}"


def snap_size(height: int, width: int, geo: Geometry) -> tuple[int, int]:
    """Round each side up to the family's multiple (never down: the user asked for at least that many pixels)."""
    return _snap_up(height, geo.spatial_multiple), _snap_up(width, geo.spatial_multiple)
