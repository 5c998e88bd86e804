"""Causal video VAE: 4x temporal, 8x spatial compression, built to train on a CPU.

Layout (LTX-Video style, for throughput): a pixel-unshuffle patchify first, so
every convolution runs at 1/patch_size of the resolution; mostly (1,3,3)
spatial convs; causal temporal convs (past-side replicate padding only) so
frame 0 is encoded on its own and an image is a one-frame video.

    video [B,3,T,H,W]                                        T = 1 + 4k
      -> unshuffle(p)     [B,3p^2,T,H/p,W/p]
      -> level 0 blocks -> down 1 (time x2, space x2 if p == 2)
      -> level 1 blocks -> down 2 (time x2, space x2)
      -> level 2 blocks -> (mean, logvar) [B,C,1+(T-1)/4,H/8,W/8]

The decoder mirrors it; temporal upsampling is channel-to-time depth-to-space
that drops the first (ft - 1) produced frames, so latent frame 0 becomes
exactly one pixel frame (the LTX/CogVideoX trick).

Normalisation is GroupNorm applied per frame: a norm that pooled over time
would let future frames leak into the past and break both causality and
chunked decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kinema.errors import KinemaInputError
from kinema.models.io import register_model
from kinema.models.layers import as_channel_tensor, count_params

# A decode cache maps a module's id to what it carries between chunks.
Cache = dict[int, torch.Tensor]


@dataclass
class VAEConfig:
    in_channels: int = 3
    latent_channels: int = 16
    patch_size: int = 4  # pixel-unshuffle factor: 2 or 4
    encoder_channels: tuple[int, int, int] = (48, 80, 112)  # per level (post-patch res, after down 1, after down 2)
    encoder_blocks: tuple[int, int, int] = (1, 1, 1)
    decoder_channels: tuple[int, int, int] = (64, 96, 128)  # same level order as the encoder; decoding is harder
    decoder_blocks: tuple[int, int, int] = (1, 2, 2)
    norm_groups: int = 8
    logvar_min: float = -30.0
    logvar_max: float = 20.0
    # Filled by the trainer after measuring latent statistics; DiT sees (z - mean) / std.
    latent_mean: list[float] | float = 0.0
    latent_std: list[float] | float = 1.0


class CausalConv3d(nn.Module):
    """Conv3d that pads time only on the past side (replicating the first frame).

    With a `cache` (chunked decoding, stride 1 only) it prepends the last kt-1
    input frames of the previous chunk instead, so chunked == full.
    """

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (3, 3, 3), stride: tuple[int, int, int] = (1, 1, 1)):
        super().__init__()
        kt, kh, kw = kernel
        self.time_pad = kt - 1
        self.time_stride = stride[0]
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride, padding=(0, kh // 2, kw // 2))

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        if self.time_pad:
            key = id(self)
            if cache is not None and key in cache:
                past = cache[key]
            else:
                past = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
            x = torch.cat([past, x], dim=2)
            if cache is not None:
                if self.time_stride != 1:
                    raise RuntimeError("chunked (cached) evaluation needs stride-1 temporal convs")
                cache[key] = x[:, :, -self.time_pad :]
        return self.conv(x)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over (C/G, H, W) of each frame separately, keeping the model causal."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = super().forward(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.view(b, t, c, h, w).transpose(1, 2)


def _norm(channels: int, groups: int) -> FrameGroupNorm:
    g = groups
    while channels % g:
        g //= 2
    return FrameGroupNorm(g, channels, eps=1e-6)


class ResBlock(nn.Module):
    """Pre-norm residual block: causal (kt,3,3) conv then spatial (1,3,3) conv."""

    def __init__(self, cin: int, cout: int, kt: int, groups: int):
        super().__init__()
        self.norm1 = _norm(cin, groups)
        self.conv1 = CausalConv3d(cin, cout, (kt, 3, 3))
        self.norm2 = _norm(cout, groups)
        self.conv2 = CausalConv3d(cout, cout, (1, 3, 3))
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(F.silu(self.norm2(h)), cache)
        return self.skip(x) + h


class DepthToSpaceUp(nn.Module):
    """Upsample by (ft, fs, fs): conv to cout*ft*fs*fs channels, then move channels into time/space.

    The first ft-1 frames produced from latent frame 0 are dropped, so a
    1 + n frame input gives 1 + ft*n frames and frame 0 stays alone.
    """

    def __init__(self, cin: int, cout: int, factor: tuple[int, int, int]):
        super().__init__()
        self.factor = factor
        ft, fs, _ = factor
        # 1x1: the residual blocks after it do the spatial smoothing, and a 3x3 here would
        # hold most of the decoder's parameters (its output has cout*ft*fs*fs channels).
        self.conv = CausalConv3d(cin, cout * ft * fs * fs, (1, 1, 1))

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        ft, fh, fw = self.factor
        y = self.conv(x, cache)
        b, c, t, h, w = y.shape
        c //= ft * fh * fw
        y = y.view(b, c, ft, fh, fw, t, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, c, t * ft, h * fh, w * fw)
        first_chunk = cache is None or id(self) not in cache
        if cache is not None:
            cache[id(self)] = y.new_zeros(())  # marker: later chunks keep every frame
        return y[:, :, ft - 1 :] if first_chunk and ft > 1 else y


def _down_factors(patch_size: int) -> list[tuple[int, int, int]]:
    """Stride of the two downsamplers so that patch * spatial strides = 8 and time strides = 4."""
    if patch_size == 4:
        return [(2, 1, 1), (2, 2, 2)]
    if patch_size == 2:
        return [(2, 2, 2), (2, 2, 2)]
    raise ValueError(f"patch_size must be 2 or 4, got {patch_size}")


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, nb, p, g = cfg.encoder_channels, cfg.encoder_blocks, cfg.patch_size, cfg.norm_groups
        self.patch = p
        self.conv_in = CausalConv3d(cfg.in_channels * p * p, ch[0], (1, 3, 3))
        self.levels = nn.ModuleList()
        self.downs = nn.ModuleList()
        for level in range(3):
            kt = 1 if level == 0 else 3  # full-res level stays spatial-only: that is where the FLOPs are
            self.levels.append(nn.ModuleList(ResBlock(ch[level], ch[level], kt, g) for _ in range(nb[level])))
            if level < 2:
                self.downs.append(CausalConv3d(ch[level], ch[level + 1], (3, 3, 3), stride=_down_factors(p)[level]))
        self.norm_out = _norm(ch[2], g)
        self.conv_out = CausalConv3d(ch[2], 2 * cfg.latent_channels, (1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(F.pixel_unshuffle(x.transpose(1, 2), self.patch).transpose(1, 2))
        for level, blocks in enumerate(self.levels):
            for block in blocks:
                x = block(x)
            if level < 2:
                x = self.downs[level](x)
        return self.conv_out(F.silu(self.norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, nb, p, g = cfg.decoder_channels, cfg.decoder_blocks, cfg.patch_size, cfg.norm_groups
        self.patch = p
        self.conv_in = CausalConv3d(cfg.latent_channels, ch[2], (3, 3, 3))
        self.levels = nn.ModuleList()
        self.ups = nn.ModuleList()
        for level in (2, 1, 0):
            kt = 1 if level == 0 else 3
            self.levels.append(nn.ModuleList(ResBlock(ch[level], ch[level], kt, g) for _ in range(nb[level])))
            if level > 0:
                self.ups.append(DepthToSpaceUp(ch[level], ch[level - 1], _down_factors(p)[level - 1]))
        self.norm_out = _norm(ch[0], g)
        self.conv_out = CausalConv3d(ch[0], cfg.in_channels * p * p, (1, 3, 3))

    def forward(self, z: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        x = self.conv_in(z, cache)
        for i, blocks in enumerate(self.levels):
            for block in blocks:
                x = block(x, cache)
            if i < 2:
                x = self.ups[i](x, cache)
        x = self.conv_out(F.silu(self.norm_out(x)), cache)
        return F.pixel_shuffle(x.transpose(1, 2), self.patch).transpose(1, 2)


@register_model(VAEConfig)
class CausalVideoVAE(nn.Module):
    """Video <-> latent. See the module docstring for the layout and why it is causal."""

    spatial_stride = 8
    temporal_stride = 4

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        self.config = config or VAEConfig()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)

    # -- shapes ---------------------------------------------------------------
    def check_video_shape(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != self.config.in_channels:
            raise KinemaInputError(f"video must be [B, {self.config.in_channels}, T, H, W], got {list(video.shape)}")
        t, h, w = video.shape[2:]
        if (t - 1) % self.temporal_stride:
            raise KinemaInputError(f"frame count must be 1 + {self.temporal_stride}k, got {t}")
        if h % self.spatial_stride or w % self.spatial_stride:
            raise KinemaInputError(f"height and width must be multiples of {self.spatial_stride}, got {h}x{w}")

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, T', h, w) of the latent for a video of this size."""
        return (
            self.config.latent_channels,
            1 + (num_frames - 1) // self.temporal_stride,
            height // self.spatial_stride,
            width // self.spatial_stride,
        )

    # -- encode / decode --------------------------------------------------------
    def encode_dist(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior (mean, logvar), each [B, C, T', H/8, W/8]."""
        self.check_video_shape(video)
        mean, logvar = self.encoder(video).chunk(2, dim=1)
        return mean, logvar.clamp(self.config.logvar_min, self.config.logvar_max)

    def encode(self, video: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latent of `video` (the posterior mean unless `sample`); not normalised."""
        mean, logvar = self.encode_dist(video)
        if not sample:
            return mean
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + torch.exp(0.5 * logvar) * noise

    def decode(self, z: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """Latent [B,C,T',h,w] -> video [B,3,1+4(T'-1),8h,8w].

        With `chunk_frames`, latent frames are decoded that many at a time,
        each causal conv carrying its own past frames between chunks, so
        peak memory depends on the chunk and not on the clip length while the
        result equals full decoding.
        """
        if z.ndim != 5 or z.shape[1] != self.config.latent_channels:
            raise KinemaInputError(f"latent must be [B, {self.config.latent_channels}, T', h, w], got {list(z.shape)}")
        if chunk_frames is None or chunk_frames >= z.shape[2]:
            return self.decoder(z)
        if chunk_frames < 1:
            raise KinemaInputError(f"chunk_frames must be at least 1, got {chunk_frames}")
        cache: Cache = {}
        parts = [self.decoder(z[:, :, s : s + chunk_frames], cache) for s in range(0, z.shape[2], chunk_frames)]
        return torch.cat(parts, dim=2)

    def forward(self, video: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (reconstruction, posterior mean, posterior logvar)."""
        mean, logvar = self.encode_dist(video)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if sample else mean
        return self.decoder(z), mean, logvar

    # -- latent normalisation for the DiT ------------------------------------------
    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        c = self.config.latent_channels
        return (z - as_channel_tensor(self.config.latent_mean, c, z)) / as_channel_tensor(self.config.latent_std, c, z)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        c = self.config.latent_channels
        return z * as_channel_tensor(self.config.latent_std, c, z) + as_channel_tensor(self.config.latent_mean, c, z)

    def num_params(self) -> dict[str, int]:
        return {"encoder": count_params(self.encoder), "decoder": count_params(self.decoder), "total": count_params(self)}


def salient_pixel_weights(target: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-pixel loss weights [B, 1, T, H, W]: 1 + `weight` on colourful or bright pixels.

    Why: in Shapes World the objects, the only thing a prompt's colour, shape and count words
    describe, cover about 6% of the pixels, and random crops hold mostly background texture, so
    a plain L1 spends nearly all of the VAE's capacity on the texture and loses small shapes
    (a small star comes back as a blob). Saliency is read from the pixels alone, so it works on
    any footage: chroma (max - min channel) above 0.2, or value above 0.45, ramping to full
    weight over 0.4; Shapes World's backgrounds stay under both (chroma <= 0.16, value <= 0.4).
    `target` is in [-1, 1].
    """
    rgb = (target.detach() + 1.0) * 0.5
    high, low = rgb.amax(dim=1, keepdim=True), rgb.amin(dim=1, keepdim=True)
    saliency = torch.maximum((high - low - 0.2) / 0.4, (high - 0.45) / 0.4).clamp(0.0, 1.0)
    return 1.0 + weight * saliency


def vae_loss(
    recon: torch.Tensor,
    target: torch.Tensor,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    kl_weight: float = 1e-6,
    edge_weight: float = 0.5,
    salient_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 + edge L1 + kl_weight * KL, the pixel terms optionally weighted towards salient pixels.

    The edge term (L1 between spatial finite differences) costs almost nothing
    and keeps the small shapes' outlines crisp, which plain L1 tends to blur.
    With `salient_weight` > 0 each pixel's error counts 1 + salient_weight times
    its saliency (`salient_pixel_weights`), normalised so the loss keeps its scale.
    KL is averaged per latent element, so kl_weight does not depend on size.
    """
    dx = lambda v: v[..., :, 1:] - v[..., :, :-1]  # noqa: E731
    dy = lambda v: v[..., 1:, :] - v[..., :-1, :]  # noqa: E731
    if salient_weight > 0:
        w = salient_pixel_weights(target, salient_weight)
        w = w / w.mean()
        wx, wy = torch.maximum(w[..., :, 1:], w[..., :, :-1]), torch.maximum(w[..., 1:, :], w[..., :-1, :])
    else:
        w = wx = wy = torch.ones((), dtype=recon.dtype, device=recon.device)
    l1 = ((recon - target).abs() * w).mean()
    edge = ((dx(recon) - dx(target)).abs() * wx).mean() + ((dy(recon) - dy(target)).abs() * wy).mean()
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
    loss = l1 + edge_weight * edge + kl_weight * kl
    return loss, {"l1": l1.item(), "edge": edge.item(), "kl": kl.item(), "loss": loss.item()}
