"""Diffusion transformer over video latents (facebookresearch/DiT style, for video).

    x [B,C,T',h,w] --patchify+linear--> tokens [B,N,D]   (+ zero-init cond embedding; optionally + zero-init
                                                          embedding of the nearest given frame)
    c = timestep MLP(t) + MLP(masked mean of text) + zero-init MLP(camera)
    N x DiTBlock:  self-attn (3D RoPE, QK-norm) -> cross-attn to text (QK-norm,
                   key padding mask) -> MLP, each gated by adaLN-zero from c
    final adaLN-zero layer -> linear -> unpatchify -> velocity [B,C,T',h,w]

Positions are 3D rotary embeddings computed on the fly from the token grid,
so any duration, size and aspect ratio works with no learned position table
(the optional absolute positions and attention biases are learned functions of
the grid, so they keep that property). With `camera_positions`, a camera signal
moves each token's spatial rotary position to where it sits in the world.
Everything that could disturb a trained model when added later (frame
conditioning, camera) enters through zero-initialised layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kinema.errors import KinemaInputError
from kinema.models.io import register_model
from kinema.models.layers import count_params


TEMPORAL_BASES = ("frames", "dct")
# DiTConfig fields that change where tokens sit, not what the weights are: a DiT may start from weights
# trained with other values (`dit.init_from`, e.g. the built-in model finetuned with camera-aligned positions).
POSITION_ONLY_FIELDS = frozenset({"camera_positions", "camera_pan_speed", "camera_zoom_factor", "camera_temporal_stride"})
# DiTConfig fields that, switched on, only add a zero-initialised input (and its weights): a DiT trained without
# one may start a run with it, and starts out computing exactly what it computed before.
ADDED_INPUT_FIELDS = {"nearest_given": ("nearest_embed.",)}
NEAREST_GIVEN_EXTRA = 2  # channels after the reference latent: "a frame is given" and the signed time offset to it


@dataclass
class DiTConfig:
    latent_channels: int = 16
    hidden: int = 256
    depth: int = 8
    heads: int = 4
    mlp_ratio: float = 4.0
    text_dim: int = 384
    patch: tuple[int, int, int] = (1, 2, 2)  # (pt, ph, pw)
    cond_channels: int | None = None  # None -> latent_channels + 1 (clean latents + mask)
    camera_dim: int = 0
    rope_theta: float = 100.0  # small grids: a low base keeps every rotary frequency useful
    timestep_scale: float = 1000.0  # t in [0, 1] -> sinusoid argument
    # Training-only scene head (kinema.train.scene_labels): logits per token read after `scene_layer` blocks.
    scene_classes: int = 0
    scene_layer: int = 2
    # Trainable transformer layers over the (frozen encoder's) text tokens before any block reads them,
    # as HunyuanVideo's token refiner: room to pull apart words a frozen encoder keeps close. 0 = none.
    text_layers: int = 0
    # Features per latent cell that a small 3x3x3 convolutional head turns into the velocity (U-ViT's final
    # conv): neighbouring cells, within and across tokens, agree, where a linear head writes each token's
    # cells on its own (with large patches, objects break into fragments). 0 = the linear head. In a 50-minute
    # trial at 128 px it did not stop the fragments (docs/benchmarks.md), so the built-in model keeps 0.
    head_channels: int = 0
    # Add a learned projection of where each token sits (its fraction of the frame's height and width, its latent
    # frame index, whether it is the image-encoded first frame) to the tokens. Rotary positions are only relative:
    # without this a token cannot tell the frame's edge or the first latent frame from its own position. Two
    # 50-minute trials read no better than the control (docs/benchmarks.md), so the built-in model keeps False.
    absolute_positions: bool = False
    # Learned relative-position biases on the self-attention scores, per head and block, one table per axis
    # (Swin's relative position bias, factorised over time, height and width; zero at init). Rotary positions
    # under QK-norm make "attend to the same place in the other frames" something each head has to learn from
    # content; a bias lets a head hold an object steady across frames from its first steps. 0 = none; else the
    # largest offset per axis with its own entry (further offsets share the last). Two 50-minute trials at 8 read
    # no better than the control, nor kept objects steadier (docs/benchmarks.md), so the built-in model keeps 0.
    attention_bias_range: int = 0
    # Self-conditioning (Chen et al. 2022, "Analog Bits"; RIN): the model also reads its own previous estimate of
    # the clean latents through a zero-initialised input, so each sampling step refines the layout the last one
    # chose instead of deciding it afresh (objects that split and re-form between steps). Training feeds half
    # the samples an estimate from a gradient-free forward pass, the rest zeros; sampling feeds the last step's.
    # Two 50-minute trials read no better than the control (docs/benchmarks.md), so the built-in model keeps False.
    self_condition: bool = False
    # The basis the tokens see along time. "frames": a token is one (group of) latent frame(s). "dct": the latents
    # (and the frame-conditioning and self-conditioning inputs) go through an orthonormal DCT-II over the latent
    # frames before patchifying, and the velocity comes back through its inverse, so a token is one temporal
    # frequency of its cells: what stays put over the clip is one token's content (the DC term), not the same
    # content redrawn by every frame's token, which an underfit DiT redraws differently (objects that pulse,
    # split and re-form at the token frames' stride). The transform is orthonormal, so noise, losses and the
    # sampler see exactly what they see in "frames"; only the DiT's inductive bias changes. Two 50-minute trials
    # read below the control, with more fragments (docs/benchmarks.md), so the built-in model keeps "frames".
    temporal_basis: str = "frames"
    # Masked training (MDT, Gao et al. 2023; MaskDiT, Zheng et al. 2023): the trainer may drop a share of the
    # tokens before the first `depth - mask_blocks` blocks; the last `mask_blocks` blocks see every position
    # again, the dropped ones as a learned mask token, and must predict their velocity from the tokens around
    # them, in their own and the other latent frames. Why: an object the DiT loses between token frames is
    # one it never had to infer from its other frames. Sampling never masks. 0 = the trainer cannot mask.
    mask_blocks: int = 0
    # Camera-aligned rotary positions: with a camera signal, each token's spatial rotary position is where its
    # centre sits in the world, not on the screen (`camera_token_positions`), so what stays still in the world
    # keeps its position from frame to frame under any pan, tilt or zoom, and the signal can move the camera
    # through the positions themselves. Two 26.6-minute trials moved no camera: the DiT draws texture where each
    # token's own edges are, and a pan under two tokens per clip asks for shifts within a token
    # (docs/benchmarks.md), so the built-in model keeps False. The geometry is Shapes World's at strength 1: pans of `camera_pan_speed` frame widths
    # per video frame (0.22 per second at 8 fps), zoom by `camera_zoom_factor` over the clip; each latent frame
    # after the first holds `camera_temporal_stride` video frames (the causal VAE's stride).
    camera_positions: bool = False
    camera_pan_speed: float = 0.0275
    camera_zoom_factor: float = 1.5
    camera_temporal_stride: int = 4
    # Nearest-given reference: every latent frame also reads the clean latent of the nearest frame the request
    # gives (first image, last image, keyframe, the frames a window continues), with its signed distance in
    # time, through a zero-initialised input, as Stable Video Diffusion concatenates its conditioning image to
    # every frame. Why: with `cond` alone, a given object reaches a later frame only if attention learns to fetch
    # it from the given frame; this puts a copy at the same place in every frame, so keeping it is local.
    nearest_given: bool = False

    def __post_init__(self) -> None:
        if self.cond_channels is None:
            self.cond_channels = self.latent_channels + 1
        if self.hidden % self.heads:
            raise ValueError("hidden must be divisible by heads")
        if (self.hidden // self.heads) % 8:
            raise ValueError("head dim must be a multiple of 8 (split into t/h/w rotary pairs)")
        if self.scene_classes and not 1 <= self.scene_layer <= self.depth:
            raise ValueError(f"scene_layer must be between 1 and depth {self.depth}")
        if self.text_layers < 0:
            raise ValueError(f"text_layers must be >= 0, got {self.text_layers}")
        if self.head_channels < 0:
            raise ValueError(f"head_channels must be >= 0, got {self.head_channels}")
        if self.attention_bias_range < 0:
            raise ValueError(f"attention_bias_range must be >= 0, got {self.attention_bias_range}")
        if self.temporal_basis not in TEMPORAL_BASES:
            raise ValueError(f"temporal_basis must be one of {', '.join(TEMPORAL_BASES)}, got {self.temporal_basis!r}")
        if self.camera_positions and self.camera_dim < 3:
            raise ValueError("camera_positions needs a camera input (camera_dim >= 3: pan, tilt, zoom)")
        if self.camera_temporal_stride < 1 or self.camera_zoom_factor <= 0:
            raise ValueError("camera_temporal_stride must be >= 1 and camera_zoom_factor > 0")
        if not 0 <= self.mask_blocks < self.depth:
            raise ValueError(f"mask_blocks must be between 0 and depth - 1 ({self.depth - 1}), got {self.mask_blocks}")
        if self.temporal_basis != "frames" and (self.scene_classes or self.nearest_given):
            raise ValueError("the scene head and the nearest-given reference work per latent frame: they need temporal_basis = 'frames'")


# --- positions ------------------------------------------------------------------


def rope_3d(grid: tuple[int, int, int], head_dim: int, theta: float, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [N, head_dim/2] for a (T', h, w) token grid flattened in t, h, w order.

    The head dim's rotary pairs are split: a quarter for time, the rest shared
    equally by height and width.
    """
    axes = torch.meshgrid(*(torch.arange(n, dtype=torch.float32, device=device) for n in grid), indexing="ij")
    return rope_from_positions(torch.stack([a.reshape(-1) for a in axes], dim=-1), head_dim, theta)


def rope_from_positions(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [..., N, head_dim/2] for token positions [..., N, 3] (time, height, width; any real values)."""
    pairs = head_dim // 2
    pt = pairs // 4
    ph = (pairs - pt) // 2
    pw = pairs - pt - ph
    angles = []
    for axis, p in enumerate((pt, ph, pw)):
        freqs = theta ** (-torch.arange(p, dtype=torch.float32, device=positions.device) / p)
        angles.append(positions[..., axis : axis + 1] * freqs)
    ang = torch.cat(angles, dim=-1)
    return ang.cos(), ang.sin()


def camera_token_positions(
    camera: torch.Tensor, grid: tuple[int, int, int], patch_t: int, temporal_stride: int, pan_speed: float, zoom_factor: float
) -> torch.Tensor:
    """[B, N, 3] token positions in the *world's* coordinates under each sample's camera [B, 4].

    Shapes World renders ``screen = c + zoom(t) (world - c - cam(t))`` (c the frame
    centre): a pan at strength 1 moves the camera `pan_speed` frame widths per
    video frame (tilt too, in frame widths, as the renderer does), and a zoom at
    strength 1 scales by `zoom_factor` over the clip. Inverting that for every
    token's centre, at the mean video-frame time of its latent frames (frame 0 is
    one image, each later latent frame `temporal_stride` frames), puts what stays
    still in the world at the same rotary position in every frame. So a moving
    camera looks to attention like a still one, and the signal can steer the
    camera by where the tokens are rather than only by what the DiT learns to draw.
    A static or absent camera (all zeros) gives the plain grid positions.
    """
    gt, gh, gw = grid
    device = camera.device
    camera = camera.float()
    latent_frames = gt * patch_t
    k = torch.arange(latent_frames, dtype=torch.float32, device=device)
    frame_time = torch.where(k == 0, k, temporal_stride * k - (temporal_stride - 1) / 2)  # video frames
    frame_time = frame_time.view(gt, patch_t).mean(dim=1)  # [gt]
    video_frames = temporal_stride * (latent_frames - 1) + 1
    progress = frame_time / max(video_frames - 1, 1)

    pan, tilt, zoom = camera[:, 0:1], camera[:, 1:2], camera[:, 2:3]  # [B, 1]
    shift_x = pan * pan_speed * gw * frame_time  # camera offset in tokens, [B, gt]
    shift_y = -tilt * pan_speed * gw * frame_time  # tilt up moves the camera up (y points down)
    scale = zoom_factor ** (zoom * progress)  # [B, gt]

    ys = torch.arange(gh, dtype=torch.float32, device=device) + 0.5 - gh / 2  # token centres about the frame centre
    xs = torch.arange(gw, dtype=torch.float32, device=device) + 0.5 - gw / 2
    world_y = gh / 2 - 0.5 + shift_y[:, :, None, None] + ys[None, None, :, None] / scale[:, :, None, None]
    world_x = gw / 2 - 0.5 + shift_x[:, :, None, None] + xs[None, None, None, :] / scale[:, :, None, None]
    b = camera.shape[0]
    time = torch.arange(gt, dtype=torch.float32, device=device).view(1, gt, 1, 1)
    positions = torch.stack([time.expand(b, gt, gh, gw), world_y.expand(b, gt, gh, gw), world_x.expand(b, gt, gh, gw)], dim=-1)
    return positions.reshape(b, gt * gh * gw, 3)


POSITION_FREQUENCIES = 4  # sinusoid pairs per axis in `absolute_position_features`
POSITION_FEATURES = 3 * 2 * POSITION_FREQUENCIES + 1  # (sin, cos) per axis for time, height, width + the first-frame flag


def absolute_position_features(grid: tuple[int, int, int], device: torch.device | None = None) -> torch.Tensor:
    """[N, POSITION_FEATURES] for a (T', h, w) token grid flattened in t, h, w order.

    Height and width enter as the token centre's fraction of the frame, so every
    size and aspect ratio has its edges at the same values; time enters as the
    latent frame index, plus a flag for frame 0, which the causal VAE encodes
    from one image where every later latent frame holds several.
    """
    gt, gh, gw = grid
    k = torch.arange(1, POSITION_FREQUENCIES + 1, dtype=torch.float32, device=device)

    def spatial(n: int) -> torch.Tensor:
        frac = (torch.arange(n, dtype=torch.float32, device=device) + 0.5) / n
        a = math.pi * frac[:, None] * k[None]
        return torch.cat([a.sin(), a.cos()], dim=-1)  # [n, 2K]

    index = torch.arange(gt, dtype=torch.float32, device=device)
    a = index[:, None] / (4.0 ** (k[None] - 1))
    time = torch.cat([a.sin(), a.cos(), (index == 0).float()[:, None]], dim=-1)  # [gt, 2K + 1]
    parts = [
        time[:, None, None].expand(gt, gh, gw, -1),
        spatial(gh)[None, :, None].expand(gt, gh, gw, -1),
        spatial(gw)[None, None, :].expand(gt, gh, gw, -1),
    ]
    return torch.cat(parts, dim=-1).reshape(gt * gh * gw, POSITION_FEATURES)


def nearest_given_reference(cond: torch.Tensor, latent_channels: int) -> torch.Tensor:
    """[B, C + 2, T', h, w]: for every latent frame, the clean latent of the nearest given frame in `cond`.

    `cond` is the frame-conditioning input [B, C + 1, T', h, w] (clean latents, then the per-frame mask). The
    two extra channels are 1 where the sample has any given frame, and the signed offset (this frame - the
    given one) over the clip's latent length; a sample with nothing given gets zeros. Ties go to the earlier
    frame, the one motion has carried forward from.
    """
    c = latent_channels
    b, _, tl, h, w = cond.shape
    given = cond[:, c, :, 0, 0] > 0.5  # [B, T']
    frames = torch.arange(tl, device=cond.device, dtype=torch.float32)
    distance = (frames[None, :, None] - frames[None, None, :]).abs().expand(b, -1, -1)  # [B, T' (this), T' (given)]
    distance = distance.masked_fill(~given[:, None, :], float("inf"))
    nearest = distance.argmin(dim=-1)  # [B, T']: the first minimum, i.e. the earlier frame on a tie
    index = nearest[:, None, :, None, None].expand(b, c, tl, h, w)
    reference = cond[:, :c].gather(2, index)
    any_given = given.any(dim=1).to(cond.dtype)[:, None]  # [B, 1]
    offset = (frames[None] - nearest.to(torch.float32)) / max(tl - 1, 1)
    extra = torch.stack([any_given.expand(b, tl), offset.to(cond.dtype) * any_given], dim=1)  # [B, 2, T']
    reference = reference * any_given[:, :, None, None, None]
    return torch.cat([reference, extra[:, :, :, None, None].expand(b, NEAREST_GIVEN_EXTRA, tl, h, w)], dim=1)


def relative_offsets(grid: tuple[int, int, int], max_offset: int, device: torch.device | None = None) -> torch.Tensor:
    """[3, N, N] indices into per-axis bias tables of 2 * max_offset + 1 entries: (i's - j's position) per axis, clamped."""
    axes = torch.meshgrid(*(torch.arange(n, device=device) for n in grid), indexing="ij")
    pos = torch.stack([a.reshape(-1) for a in axes])  # [3, N]
    return (pos[:, :, None] - pos[:, None, :]).clamp(-max_offset, max_offset) + max_offset


def temporal_dct_matrix(frames: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Orthonormal DCT-II [frames, frames]: row k is temporal frequency k (row 0: the mean, scaled)."""
    n = torch.arange(frames, dtype=torch.float64)
    k = n[:, None]
    basis = torch.cos(torch.pi * (n[None, :] + 0.5) * k / frames) * (2.0 / frames) ** 0.5
    basis[0] /= 2.0**0.5
    return basis.to(device=device, dtype=dtype)


def along_time(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply `matrix` [T, T] to the time axis of x [B, C, T, H, W]."""
    return torch.einsum("kn,bcnhw->bckhw", matrix.to(x.dtype), x)


def keep_indices(batch: int, tokens: int, mask_ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """[B, K] sorted indices of the tokens masked training keeps: a fresh random subset per sample.

    K = round(tokens * (1 - mask_ratio)), at least 1.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    k = max(1, round(tokens * (1.0 - mask_ratio)))
    order = torch.rand(batch, tokens, generator=generator).argsort(dim=1)
    return order[:, :k].sort(dim=1).values


def masked_rope(rope: tuple[torch.Tensor, torch.Tensor], keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample rotary tables [B, 1, K, pairs] for the kept tokens (broadcast over heads).

    `rope` holds shared tables [N, pairs] or per-sample ones [B, 1, N, pairs] (camera-aligned positions).
    """

    def kept(table: torch.Tensor) -> torch.Tensor:
        if table.ndim == 2:
            return table[keep][:, None]
        return table[:, 0].gather(1, keep[..., None].expand(-1, -1, table.shape[-1]))[:, None]

    return kept(rope[0]), kept(rope[1])


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate [B, H, N, d] by the half-split convention (x1, x2) -> (x1 c - x2 s, x1 s + x2 c)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scaled dot-product attention; q/k/v [B, heads, N, hd], mask broadcastable: bool (True = attend) or a float bias.

    On the CPU this is the plain softmax(q k^T) v: for our short sequences (80-300
    tokens) PyTorch's CPU flash kernel is the slowest part of a training step (its
    backward alone took a third of it), and the plain form is 1.6x faster to train
    and lets torch.compile fuse it. Elsewhere the fused SDPA kernels win.
    """
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    if mask is not None and mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask is not None:
        scores = scores + mask
    return scores.softmax(dim=-1).to(v.dtype) @ v


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


# --- blocks ---------------------------------------------------------------------------


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, bias_range: int = 0):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.out = nn.Linear(dim, dim)
        # [3 axes, heads, 2 * range + 1]: the score bias for an offset along time, height and width
        self.position_bias = nn.Parameter(torch.zeros(3, heads, 2 * bias_range + 1)) if bias_range > 0 else None

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], offsets: torch.Tensor | None = None) -> torch.Tensor:
        """`offsets` [3, N, N] (relative_offsets) is needed when the layer has position biases."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q = apply_rope(self.q_norm(q), *rope)
        k = apply_rope(self.k_norm(k), *rope)
        bias = None
        if self.position_bias is not None:
            if offsets is None:
                raise ValueError("this attention layer has position biases: pass the token offsets")
            table = self.position_bias.to(q.dtype)
            bias = sum(table[a][:, offsets[a]] for a in range(3))[None]  # [1, heads, N, N]
        y = attend(q, k, v, bias)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.q_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor) -> torch.Tensor:
        """ctx [B, L, D]; ctx_mask [B, L] bool, True = attend."""
        b, n, d = x.shape
        hd = d // self.heads
        q = self.q_norm(self.q(x).view(b, n, self.heads, hd).transpose(1, 2))
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, self.heads, hd).permute(2, 0, 3, 1, 4)
        y = attend(q, self.k_norm(k), v, ctx_mask[:, None, None, :])
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class TextRefiner(nn.Module):
    """Pre-norm self-attention + MLP layers over the text tokens, padding masked out.

    Why: a frozen sentence encoder keeps words that change a video a lot
    ("left" / "right") close together; the DiT's own linear projections can
    only rescale that difference, these layers can also mix it with context.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleDict(
                {
                    "norm1": nn.LayerNorm(dim, eps=1e-6),
                    "attn": CrossAttention(dim, heads),
                    "norm2": nn.LayerNorm(dim, eps=1e-6),
                    "mlp": Mlp(dim, int(dim * mlp_ratio)),
                }
            )
            for _ in range(layers)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, L, D], mask [B, L] bool (True = a real token)."""
        for layer in self.layers:
            h = layer["norm1"](x)
            x = x + layer["attn"](h, h, mask)
            x = x + layer["mlp"](layer["norm2"](x))
        return x


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    """Self-attn, cross-attn and MLP, each pre-normed, modulated and gated by adaLN-zero."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, bias_range: int = 0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads, bias_range)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.cross = CrossAttention(dim, heads)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], ctx: torch.Tensor, ctx_mask: torch.Tensor, offsets: torch.Tensor | None = None
    ) -> torch.Tensor:
        sh1, sc1, g1, sh2, sc2, g2, sh3, sc3, g3 = self.ada(c).chunk(9, dim=-1)
        x = x + g1.unsqueeze(1) * self.attn(modulate(self.norm1(x), sh1, sc1), rope, offsets)
        x = x + g2.unsqueeze(1) * self.cross(modulate(self.norm2(x), sh2, sc2), ctx, ctx_mask)
        x = x + g3.unsqueeze(1) * self.mlp(modulate(self.norm3(x), sh3, sc3))
        return x


class ConvHead(nn.Module):
    """Per-cell features [B, F, T, H, W] -> velocity [B, C, T, H, W] through two 3x3x3 convolutions."""

    def __init__(self, features: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv3d(features, features, 3, padding=1)
        self.conv2 = nn.Conv3d(features, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.silu(self.conv1(x)))


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


# --- the model ---------------------------------------------------------------------------


@register_model(DiTConfig)
class DiT(nn.Module):
    def __init__(self, config: DiTConfig | None = None):
        super().__init__()
        cfg = self.config = config or DiTConfig()
        d = cfg.hidden
        pt, ph, pw = cfg.patch
        self.patch_volume = pt * ph * pw
        self.x_embed = nn.Linear(cfg.latent_channels * self.patch_volume, d)
        self.cond_embed = nn.Linear(cfg.cond_channels * self.patch_volume, d)
        reference_channels = cfg.latent_channels + NEAREST_GIVEN_EXTRA
        self.nearest_embed = nn.Linear(reference_channels * self.patch_volume, d) if cfg.nearest_given else None
        self.self_cond_embed = nn.Linear(cfg.latent_channels * self.patch_volume, d) if cfg.self_condition else None
        self.pos_embed = nn.Linear(POSITION_FEATURES, d) if cfg.absolute_positions else None
        self.t_embed = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.pool_embed = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.text_embed = nn.Sequential(nn.LayerNorm(cfg.text_dim), nn.Linear(cfg.text_dim, d))
        self.text_refiner = TextRefiner(d, cfg.heads, cfg.mlp_ratio, cfg.text_layers) if cfg.text_layers > 0 else None
        # Always-visible key: lets attention "look at nothing" and keeps an all-padding prompt well defined.
        self.null_token = nn.Parameter(torch.zeros(1, 1, d))
        # What the last `mask_blocks` blocks read at the positions masked training dropped.
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.mask_blocks > 0 else None
        self.camera_embed = nn.Sequential(nn.Linear(cfg.camera_dim, d), nn.SiLU(), nn.Linear(d, d)) if cfg.camera_dim > 0 else None
        self.blocks = nn.ModuleList(DiTBlock(d, cfg.heads, cfg.mlp_ratio, cfg.attention_bias_range) for _ in range(cfg.depth))
        head_in = cfg.head_channels or cfg.latent_channels
        self.final = FinalLayer(d, head_in * self.patch_volume)
        self.head = ConvHead(cfg.head_channels, cfg.latent_channels) if cfg.head_channels > 0 else None
        # Read only by the trainer's scene loss; sampling never runs it.
        self.scene_head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, cfg.scene_classes)) if cfg.scene_classes > 0 else None
        self._init_weights()

    def _init_weights(self) -> None:
        def base(m: nn.Module) -> None:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

        self.apply(base)
        for m in (*self.t_embed, *self.pool_embed):
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        nn.init.normal_(self.null_token, std=0.02)
        if self.mask_token is not None:
            nn.init.normal_(self.mask_token, std=0.02)
        # adaLN-zero: the model starts as "predict zero velocity"; with a conv head, its last conv starts at zero.
        zero = [self.cond_embed, self.final.ada[-1]] + [b.ada[-1] for b in self.blocks]
        if self.nearest_embed is not None:
            zero.append(self.nearest_embed)
        if self.self_cond_embed is not None:
            zero.append(self.self_cond_embed)
        zero.append(self.final.linear if self.head is None else self.head.conv2)
        if self.camera_embed is not None:
            zero.append(self.camera_embed[-1])
        for m in zero:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    # -- patches ------------------------------------------------------------------------
    def grid(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        pt, ph, pw = self.config.patch
        if t % pt or h % ph or w % pw:
            raise KinemaInputError(f"latent size {t}x{h}x{w} must be divisible by the patch {pt}x{ph}x{pw}")
        return t // pt, h // ph, w // pw

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] -> [B, N, C*pt*ph*pw]."""
        b, c, t, h, w = x.shape
        pt, ph, pw = self.config.patch
        x = x.reshape(b, c, t // pt, pt, h // ph, ph, w // pw, pw)
        return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, -1, c * self.patch_volume)

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        b = x.shape[0]
        gt, gh, gw = grid
        pt, ph, pw = self.config.patch
        c = x.shape[-1] // self.patch_volume
        x = x.reshape(b, gt, gh, gw, c, pt, ph, pw).permute(0, 4, 1, 5, 2, 6, 3, 7)
        return x.reshape(b, c, gt * pt, gh * ph, gw * pw)

    # -- forward ---------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        cond: torch.Tensor | None = None,
        camera: torch.Tensor | None = None,
        return_scene: bool = False,
        x0_estimate: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Velocity (noise - x0) for normalised latents x [B,C,T',h,w] at times t [B] in [0, 1].

        `keep` [B, K] (training only, a model with `mask_blocks`): the token indices
        the first `depth - mask_blocks` blocks see (`keep_indices`); the velocity still
        covers every position.

        `x0_estimate` (like x) is the previous estimate of the clean latents a
        self-conditioned model reads (`self_condition`); None means none yet (zeros).

        With `return_scene` (training a model with a scene head), also the scene
        logits [B, classes, T'', gh, gw] on the token grid.
        """
        cfg = self.config
        if x.ndim != 5 or x.shape[1] != cfg.latent_channels:
            raise KinemaInputError(f"latents must be [B, {cfg.latent_channels}, T', h, w], got {list(x.shape)}")
        grid = self.grid(*x.shape[2:])
        dct = temporal_dct_matrix(x.shape[2], x.device) if cfg.temporal_basis == "dct" else None
        to_basis = (lambda v: along_time(v, dct)) if dct is not None else (lambda v: v)
        tokens = self.x_embed(self.patchify(to_basis(x)))
        if self.pos_embed is not None:
            tokens = tokens + self.pos_embed(absolute_position_features(grid, x.device).to(x.dtype))
        if cond is not None:
            if cond.shape[1] != cfg.cond_channels or cond.shape[2:] != x.shape[2:]:
                raise KinemaInputError(f"cond must be [B, {cfg.cond_channels}, {', '.join(map(str, x.shape[2:]))}], got {list(cond.shape)}")
            tokens = tokens + self.cond_embed(self.patchify(to_basis(cond.to(x.dtype))))
            if self.nearest_embed is not None:
                reference = nearest_given_reference(cond.to(x.dtype), cfg.latent_channels)
                tokens = tokens + self.nearest_embed(self.patchify(reference))
        if self.self_cond_embed is not None:
            if x0_estimate is None:
                x0_estimate = torch.zeros_like(x)
            elif x0_estimate.shape != x.shape:
                raise KinemaInputError(f"x0_estimate must be shaped like the latents {list(x.shape)}, got {list(x0_estimate.shape)}")
            tokens = tokens + self.self_cond_embed(self.patchify(to_basis(x0_estimate.to(x.dtype))))

        text = text.to(x.dtype)
        mask = text_mask.to(torch.bool)
        weights = mask.to(x.dtype).unsqueeze(-1)
        pooled = (text * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        c = self.t_embed(timestep_embedding(t * cfg.timestep_scale, 256).to(x.dtype)) + self.pool_embed(pooled)
        if self.camera_embed is not None and camera is not None:
            c = c + self.camera_embed(camera.to(x.dtype))

        b = x.shape[0]
        ctx = torch.cat([self.null_token.expand(b, -1, -1), self.text_embed(text)], dim=1)
        ctx_mask = torch.cat([mask.new_ones(b, 1), mask], dim=1)
        if self.text_refiner is not None:
            ctx = self.text_refiner(ctx, ctx_mask)
        if cfg.camera_positions and camera is not None:
            positions = camera_token_positions(camera, grid, cfg.patch[0], cfg.camera_temporal_stride, cfg.camera_pan_speed, cfg.camera_zoom_factor)
            cos, sin = (table[:, None] for table in rope_from_positions(positions, cfg.hidden // cfg.heads, cfg.rope_theta))
        else:
            cos, sin = rope_3d(grid, cfg.hidden // cfg.heads, cfg.rope_theta, x.device)
        rope = (cos.to(x.dtype), sin.to(x.dtype))
        offsets = relative_offsets(grid, cfg.attention_bias_range, x.device) if cfg.attention_bias_range > 0 else None

        scene = None
        masked_blocks = 0
        if keep is not None:
            self._check_keep(keep, tokens.shape[1], return_scene)
            full_rope, rope = rope, masked_rope(rope, keep)
            tokens = tokens.gather(1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
            masked_blocks = cfg.depth - cfg.mask_blocks
        for i, block in enumerate(self.blocks):
            if keep is not None and i == masked_blocks:
                tokens = self._unmask(tokens, keep, grid)
                rope = full_rope
            tokens = block(tokens, c, rope, ctx, ctx_mask, offsets)
            if return_scene and i + 1 == cfg.scene_layer:
                if self.scene_head is None:
                    raise ValueError("this DiT has no scene head (scene_classes = 0)")
                scene = self.scene_head(tokens).transpose(1, 2).reshape(b, -1, *grid)
        velocity = self.unpatchify(self.final(tokens, c), grid)
        if dct is not None:
            velocity = along_time(velocity, dct.T)  # orthonormal: the inverse is the transpose
        if self.head is not None:
            velocity = self.head(velocity)
        return (velocity, scene) if return_scene else velocity

    def _check_keep(self, keep: torch.Tensor, n: int, return_scene: bool) -> None:
        cfg = self.config
        if self.mask_token is None:
            raise ValueError("this DiT cannot be trained masked (mask_blocks = 0)")
        if cfg.attention_bias_range > 0 or return_scene:
            raise ValueError("masked training cannot be combined with attention biases or the scene head")
        if keep.ndim != 2 or not 0 < keep.shape[1] <= n:
            raise ValueError(f"keep must be [B, K] token indices with 0 < K <= {n}, got {list(keep.shape)}")

    def _unmask(self, kept: torch.Tensor, keep: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """[B, K, D] tokens at `keep` -> [B, N, D] with the mask token everywhere else."""
        b, _, d = kept.shape
        full = self.mask_token.to(kept.dtype).expand(b, math.prod(grid), d).clone()
        return full.scatter(1, keep[..., None].expand(-1, -1, d), kept)

    # -- accounting ------------------------------------------------------------------------
    def num_params(self) -> int:
        return count_params(self)

    def flops_per_sample(self, num_frames_latent: int, h: int, w: int, text_len: int, with_cond: bool = False) -> float:
        """Forward FLOPs for one sample (2 per multiply-add), counting every matmul and attention.

        Elementwise work (norms, activations, RoPE) is left out; it is a few
        percent here and is not what a GFLOP/s figure measures.
        """
        cfg = self.config
        d = cfg.hidden
        gt, gh, gw = self.grid(num_frames_latent, h, w)
        n = gt * gh * gw
        l_ctx = text_len + 1  # + null token
        hidden_mlp = int(d * cfg.mlp_ratio)
        f = 2 * n * cfg.latent_channels * self.patch_volume * d  # x embed
        if cfg.absolute_positions:
            f += 2 * n * POSITION_FEATURES * d
        if with_cond:
            f += 2 * n * cfg.cond_channels * self.patch_volume * d
            if self.nearest_embed is not None:
                f += 2 * n * (cfg.latent_channels + NEAREST_GIVEN_EXTRA) * self.patch_volume * d
        if cfg.self_condition:
            f += 2 * n * cfg.latent_channels * self.patch_volume * d
        f += 2 * (256 * d + d * d) + 2 * (cfg.text_dim * d + d * d)  # timestep and pooled-text MLPs
        if self.camera_embed is not None:
            f += 2 * (cfg.camera_dim * d + d * d)
        f += 2 * text_len * cfg.text_dim * d  # text projection
        f += cfg.text_layers * (2 * l_ctx * d * 4 * d + 4 * l_ctx * l_ctx * d + 2 * l_ctx * d * int(d * cfg.mlp_ratio) * 2)  # refiner
        per_block = (
            2 * n * d * 3 * d + 4 * n * n * d + 2 * n * d * d  # self-attention: qkv, QK^T + AV, out
            + 2 * n * d * d + 2 * l_ctx * d * 2 * d + 4 * n * l_ctx * d + 2 * n * d * d  # cross-attention
            + 2 * n * d * hidden_mlp * 2  # MLP
            + 2 * d * 9 * d  # adaLN
        )
        f += cfg.depth * per_block
        head_in = cfg.head_channels or cfg.latent_channels
        f += 2 * d * 2 * d + 2 * n * d * head_in * self.patch_volume  # final layer
        if cfg.head_channels:
            cells = n * self.patch_volume
            f += 2 * cells * 27 * head_in * (head_in + cfg.latent_channels)  # conv head
        return float(f)
