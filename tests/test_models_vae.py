"""CausalVideoVAE: shapes, causality, chunked decoding, normalisation, loss, save/load."""

from __future__ import annotations

import pytest
import torch

from kinema.errors import KinemaInputError
from kinema.models.io import load_pretrained, save_pretrained
from kinema.models.vae import CausalVideoVAE, VAEConfig, salient_pixel_weights, vae_loss


@pytest.fixture(scope="module")
def vae() -> CausalVideoVAE:
    torch.manual_seed(0)
    return CausalVideoVAE(VAEConfig()).eval()


def _video(t: int, h: int, w: int, b: int = 1, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


@pytest.mark.parametrize("t,h,w", [(1, 16, 16), (5, 32, 32), (17, 64, 64), (9, 64, 112), (9, 112, 64)])
def test_shapes(vae: CausalVideoVAE, t: int, h: int, w: int) -> None:
    x = _video(t, h, w, b=2)
    with torch.no_grad():
        mean, logvar = vae.encode_dist(x)
        y = vae.decode(mean)
    expected = (2, *vae.latent_shape(t, h, w))
    assert tuple(mean.shape) == expected == (2, 16, 1 + (t - 1) // 4, h // 8, w // 8)
    assert logvar.shape == mean.shape
    assert y.shape == x.shape


def test_patch_size_two_also_compresses_8x4() -> None:
    cfg = VAEConfig(patch_size=2, encoder_channels=(16, 16, 16), decoder_channels=(16, 16, 16))
    m = CausalVideoVAE(cfg).eval()
    with torch.no_grad():
        z = m.encode(_video(5, 16, 32))
        assert z.shape == (1, 16, 2, 2, 4)
        assert m.decode(z).shape == (1, 3, 5, 16, 32)


def test_first_frame_is_encoded_alone(vae: CausalVideoVAE) -> None:
    x = _video(17, 32, 32)
    with torch.no_grad():
        full = vae.encode(x)
        first = vae.encode(x[:, :, :1])
        prefix = vae.encode(x[:, :, :5])
        # The future must not leak into the past: change the last frames, keep the first latents.
        x2 = x.clone()
        x2[:, :, 9:] = -x2[:, :, 9:]
        changed = vae.encode(x2)
    torch.testing.assert_close(first, full[:, :, :1], atol=1e-5, rtol=0)
    torch.testing.assert_close(prefix, full[:, :, :2], atol=1e-5, rtol=0)
    torch.testing.assert_close(changed[:, :, :3], full[:, :, :3], atol=1e-5, rtol=0)
    assert not torch.allclose(changed[:, :, 3:], full[:, :, 3:], atol=1e-3)


def test_decoder_is_causal(vae: CausalVideoVAE) -> None:
    z = torch.randn(1, 16, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = vae.decode(z)
        first = vae.decode(z[:, :, :1])
    assert first.shape[2] == 1
    torch.testing.assert_close(first, full[:, :, :1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_chunked_decode_equals_full(vae: CausalVideoVAE, chunk: int) -> None:
    z = torch.randn(1, 16, 5, 4, 6, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = vae.decode(z)
        chunked = vae.decode(z, chunk_frames=chunk)
    assert chunked.shape == full.shape == (1, 3, 17, 32, 48)
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(1, 3, 4, 32, 32), (1, 3, 5, 30, 32), (1, 1, 5, 32, 32), (3, 5, 32, 32)])
def test_bad_video_shapes_are_refused(vae: CausalVideoVAE, shape: tuple[int, ...]) -> None:
    with pytest.raises(KinemaInputError):
        vae.encode(torch.zeros(shape))


def test_bad_chunk_is_refused(vae: CausalVideoVAE) -> None:
    with pytest.raises(KinemaInputError):
        vae.decode(torch.zeros(1, 16, 3, 2, 2), chunk_frames=0)


def test_normalize_roundtrip_with_per_channel_stats() -> None:
    mean = [float(i) for i in range(16)]
    std = [0.5 + i / 10 for i in range(16)]
    m = CausalVideoVAE(VAEConfig(latent_mean=mean, latent_std=std, encoder_channels=(8, 8, 8), decoder_channels=(8, 8, 8)))
    z = torch.randn(2, 16, 2, 3, 3)
    n = m.normalize(z)
    torch.testing.assert_close(n[:, 3], (z[:, 3] - 3.0) / 0.8)
    torch.testing.assert_close(m.denormalize(n), z, atol=1e-5, rtol=1e-5)
    scalar = CausalVideoVAE(VAEConfig(latent_mean=1.0, latent_std=2.0, encoder_channels=(8, 8, 8), decoder_channels=(8, 8, 8)))
    torch.testing.assert_close(scalar.normalize(z), (z - 1.0) / 2.0)


def test_loss_parts() -> None:
    x = _video(5, 16, 16)
    zeros = torch.zeros(1, 16, 2, 2, 2)
    loss, parts = vae_loss(x, x, zeros, zeros, kl_weight=1.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    noisy = x + 0.1 * torch.randn_like(x)
    loss2, parts2 = vae_loss(noisy, x, zeros + 1.0, zeros, kl_weight=1e-2)
    assert parts2["l1"] > 0.05 and parts2["edge"] > 0 and parts2["kl"] == pytest.approx(0.5)
    assert loss2.item() == pytest.approx(parts2["l1"] + 0.5 * parts2["edge"] + 1e-2 * parts2["kl"], rel=1e-5)


def test_salient_weights_pick_out_colourful_and_bright_pixels_but_not_a_dark_textured_background() -> None:
    # A Shapes World-like frame in [0, 1]: dark navy base, a grey texture line, a red object, a white object.
    frame = torch.zeros(1, 3, 1, 4, 4)
    frame[0, :, 0] = torch.tensor([0.1, 0.1, 0.3]).view(3, 1, 1)
    frame[0, :, 0, 0, :] = 0.35  # grey texture mark
    frame[0, :, 0, 1, 1] = torch.tensor([0.9, 0.16, 0.16])  # red
    frame[0, :, 0, 2, 2] = 0.96  # white
    w = salient_pixel_weights(frame * 2 - 1, weight=9.0)[0, 0, 0]
    assert w.shape == (4, 4)
    assert w[1, 1] == pytest.approx(10.0) and w[2, 2] == pytest.approx(10.0)
    assert w[0, 0] == pytest.approx(1.0) and w[3, 3] == pytest.approx(1.0)


def test_salient_weight_moves_the_loss_towards_errors_on_salient_pixels() -> None:
    target = torch.full((1, 3, 1, 8, 8), -0.8)
    target[:, 0, :, 2:4, 2:4] = 0.8  # a red-ish square
    zeros = torch.zeros(1, 4, 1, 1, 1)
    on_object, on_background = target.clone(), target.clone()
    on_object[:, :, :, 2, 2] += 0.2
    on_background[:, :, :, 6, 6] += 0.2
    plain = [vae_loss(r, target, zeros, zeros)[1]["l1"] for r in (on_object, on_background)]
    weighted = [vae_loss(r, target, zeros, zeros, salient_weight=9.0)[1]["l1"] for r in (on_object, on_background)]
    assert plain[0] == pytest.approx(plain[1])
    assert weighted[0] > 5 * weighted[1]
    assert vae_loss(target, target, zeros, zeros, salient_weight=9.0)[0].item() == pytest.approx(0.0, abs=1e-7)


def test_training_step_reduces_loss() -> None:
    torch.manual_seed(0)
    m = CausalVideoVAE(VAEConfig(encoder_channels=(16, 16, 16), decoder_channels=(16, 16, 16)))
    x = _video(5, 16, 16, b=2)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        recon, mean, logvar = m(x, sample=False)
        loss, _ = vae_loss(recon, x, mean, logvar, kl_weight=1e-6)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_param_count_matches_modules(vae: CausalVideoVAE) -> None:
    counts = vae.num_params()
    assert counts["total"] == counts["encoder"] + counts["decoder"] == sum(p.numel() for p in vae.parameters())
    assert 1_000_000 < counts["total"] < 4_000_000


def test_save_fp16_load_roundtrip(tmp_path, vae: CausalVideoVAE) -> None:
    vae.config.latent_mean = [0.1] * 16
    try:
        save_pretrained(vae, tmp_path / "vae", dtype=torch.float16)
    finally:
        vae.config.latent_mean = 0.0
    loaded = load_pretrained(tmp_path / "vae")
    assert isinstance(loaded, CausalVideoVAE)
    assert loaded.config.latent_mean == [0.1] * 16
    assert loaded.config.encoder_channels == vae.config.encoder_channels
    for (k, a), (k2, b) in zip(vae.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and b.dtype == torch.float32
        torch.testing.assert_close(b, a.half().float(), atol=0, rtol=0)
    x = _video(5, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), vae.encode(x), atol=2e-2, rtol=2e-2)
