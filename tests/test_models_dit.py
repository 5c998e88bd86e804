"""DiT: shapes, zero-init conditioning, text mask, rotary positions, FLOP count, save/load."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from kinema.errors import KinemaInputError
from kinema.models.dit import (
    DiT,
    DiTConfig,
    absolute_position_features,
    along_time,
    apply_rope,
    attend,
    camera_token_positions,
    keep_indices,
    nearest_given_reference,
    relative_offsets,
    rope_3d,
    rope_from_positions,
    temporal_dct_matrix,
)
from kinema.models.io import load_pretrained, save_pretrained
from kinema.world.render import camera_track
from kinema.world.scene import CAMERA_SPEED, ZOOM_FACTOR, ClipSpec

SMALL = dict(hidden=64, depth=2, heads=2, text_dim=32)


def _pretend_trained(model: DiT, seed: int = 0, skip: tuple[str, ...] = ("cond_embed", "camera_embed.2")) -> DiT:
    """Perturb every weight except the listed zero-init ones: at init the output is exactly zero,
    which would make 'output unchanged' tests pass for the wrong reason."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith(skip):
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def _inputs(b: int, t: int, h: int, w: int, text_len: int, text_dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 16, t, h, w, generator=g)
    tt = torch.rand(b, generator=g)
    text = torch.randn(b, text_len, text_dim, generator=g)
    mask = torch.ones(b, text_len, dtype=torch.bool)
    return x, tt, text, mask


def test_cpu_attention_matches_pytorch_sdpa() -> None:
    """The plain CPU attention path must equal PyTorch's fused kernel, with and without a key mask."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, n, 16, generator=g) for n in (10, 7, 7))
    mask = torch.rand(3, 1, 1, 7, generator=g) < 0.6
    mask[..., 0] = True  # every row keeps one key, as the text encoder's [CLS] does
    torch.testing.assert_close(attend(q, k, v), torch.nn.functional.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(attend(q, k, v, mask), torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_default_config_matches_builtin_model() -> None:
    cfg = DiTConfig()
    assert (cfg.hidden, cfg.depth, cfg.heads, cfg.mlp_ratio, cfg.text_dim, cfg.latent_channels, cfg.patch) == (256, 8, 4, 4.0, 384, 16, (1, 2, 2))
    assert cfg.cond_channels == 17 and cfg.camera_dim == 0


@pytest.mark.parametrize("t,h,w", [(1, 8, 8), (5, 8, 8), (5, 8, 14), (3, 14, 8), (2, 2, 4)])
def test_shapes_any_size(t: int, h: int, w: int) -> None:
    torch.manual_seed(0)
    m = _pretend_trained(DiT(DiTConfig(**SMALL)))
    x, tt, text, mask = _inputs(2, t, h, w, 5, 32)
    with torch.no_grad():
        v = m(x, tt, text, mask)
    assert v.shape == x.shape and torch.isfinite(v).all()


def test_patchify_roundtrip_and_temporal_patch() -> None:
    m = DiT(DiTConfig(**SMALL, patch=(2, 2, 2)))
    x = torch.randn(1, 16, 4, 6, 8)
    grid = m.grid(4, 6, 8)
    assert m.patchify(x).shape == (1, 2 * 3 * 4, 16 * 8)
    torch.testing.assert_close(m.unpatchify(m.patchify(x), grid), x, atol=0, rtol=0)
    with pytest.raises(KinemaInputError):
        m(torch.randn(1, 16, 3, 6, 8), torch.rand(1), torch.randn(1, 2, 32), torch.ones(1, 2, dtype=torch.bool))


def test_output_is_zero_at_init() -> None:
    m = DiT(DiTConfig(**SMALL)).eval()
    x, tt, text, mask = _inputs(2, 2, 4, 4, 3, 32)
    with torch.no_grad():
        assert m(x, tt, text, mask).abs().max().item() == 0.0


def test_zero_init_cond_is_a_no_op_until_trained() -> None:
    torch.manual_seed(0)
    m = _pretend_trained(DiT(DiTConfig(**SMALL)))
    x, tt, text, mask = _inputs(2, 3, 4, 6, 4, 32)
    cond = torch.randn(2, 17, 3, 4, 6)
    with torch.no_grad():
        plain = m(x, tt, text, mask)
        with_cond = m(x, tt, text, mask, cond=cond)
        torch.testing.assert_close(with_cond, plain, atol=0, rtol=0)
        m.cond_embed.weight.normal_(std=0.1)  # as if frame conditioning had been trained
        assert not torch.allclose(m(x, tt, text, mask, cond=cond), plain, atol=1e-4)
    with pytest.raises(KinemaInputError):
        m(x, tt, text, mask, cond=torch.randn(2, 16, 3, 4, 6))


def test_self_conditioning_starts_as_a_no_op_and_reads_the_estimate_once_trained() -> None:
    torch.manual_seed(0)
    m = _pretend_trained(DiT(DiTConfig(**SMALL, self_condition=True)), skip=("cond_embed", "camera_embed.2", "self_cond_embed"))
    x, tt, text, mask = _inputs(2, 3, 4, 6, 4, 32)
    estimate = torch.randn_like(x)
    with torch.no_grad():
        plain = m(x, tt, text, mask)
        torch.testing.assert_close(m(x, tt, text, mask, x0_estimate=estimate), plain, atol=0, rtol=0)
        m.self_cond_embed.weight.normal_(std=0.1)  # as if trained
        m.self_cond_embed.bias.normal_(std=0.1)
        torch.testing.assert_close(m(x, tt, text, mask, x0_estimate=torch.zeros_like(x)), m(x, tt, text, mask), atol=0, rtol=0)  # None = zeros
        assert not torch.allclose(m(x, tt, text, mask, x0_estimate=estimate), m(x, tt, text, mask), atol=1e-4)
    with pytest.raises(KinemaInputError, match="x0_estimate"):
        m(x, tt, text, mask, x0_estimate=estimate[:, :, :2])
    assert DiT(DiTConfig(**SMALL)).self_cond_embed is None


def test_zero_init_camera_is_a_no_op_until_trained() -> None:
    torch.manual_seed(0)
    m = _pretend_trained(DiT(DiTConfig(**SMALL, camera_dim=6)))
    x, tt, text, mask = _inputs(2, 2, 4, 4, 4, 32)
    camera = torch.randn(2, 6)
    with torch.no_grad():
        plain = m(x, tt, text, mask)
        torch.testing.assert_close(m(x, tt, text, mask, camera=camera), plain, atol=0, rtol=0)
        m.camera_embed[2].weight.normal_(std=0.1)
        assert not torch.allclose(m(x, tt, text, mask, camera=camera), plain, atol=1e-4)


def test_nearest_given_reference_copies_the_nearest_given_frame_to_every_frame() -> None:
    c, tl = 3, 6
    cond = torch.zeros(3, c + 1, tl, 2, 2)
    cond[0, :c, 0], cond[0, c, 0] = 1.0, 1.0  # image-to-video: frame 0 only
    cond[1, :c, 0], cond[1, c, 0] = 1.0, 1.0  # first + last frame
    cond[1, :c, 5], cond[1, c, 5] = 2.0, 1.0
    # sample 2: nothing given (text-to-video)
    ref = nearest_given_reference(cond, c)
    assert ref.shape == (3, c + 2, tl, 2, 2)
    assert ref[0, :c].eq(1.0).all() and ref[0, c].eq(1.0).all()
    torch.testing.assert_close(ref[0, c + 1, :, 0, 0], torch.arange(tl) / (tl - 1.0))
    # first + last: frames 0-2 read frame 0 (frame 2.5 would tie; 2 is nearer 0), 3-5 read frame 5
    assert ref[1, 0, :, 0, 0].tolist() == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    torch.testing.assert_close(ref[1, c + 1, :, 0, 0], torch.tensor([0, 1, 2, -2, -1, 0]) / (tl - 1.0))
    assert ref[2].abs().max().item() == 0.0
    tie = torch.zeros(1, c + 1, 5, 1, 1)
    tie[0, :c, 0], tie[0, c, 0], tie[0, :c, 4], tie[0, c, 4] = 1.0, 1.0, 2.0, 1.0
    assert nearest_given_reference(tie, c)[0, 0, 2, 0, 0].item() == 1.0  # a tie goes to the earlier frame


def test_nearest_given_input_starts_as_a_no_op_and_then_copies_the_given_frame_forward() -> None:
    torch.manual_seed(0)
    plain = _pretend_trained(DiT(DiTConfig(**SMALL)))
    torch.manual_seed(0)
    m = DiT(DiTConfig(**SMALL, nearest_given=True))
    m.load_state_dict(plain.state_dict(), strict=False)  # what a run with dit.init_from does
    m.eval()
    x, tt, text, mask = _inputs(2, 3, 4, 6, 4, 32)
    cond = torch.zeros(2, 17, 3, 4, 6)
    cond[:, :16, 0], cond[:, 16, 0] = torch.randn(2, 16, 4, 6), 1.0
    with torch.no_grad():
        torch.testing.assert_close(m(x, tt, text, mask, cond=cond), plain(x, tt, text, mask, cond=cond), atol=0, rtol=0)
        m.nearest_embed.weight.normal_(std=0.1)  # as if trained
        changed = m(x, tt, text, mask, cond=cond) - plain(x, tt, text, mask, cond=cond)
        assert changed[:, :, 1:].abs().max().item() > 1e-3  # the later latent frames now read the given one
        other = cond.clone()
        other[:, :16, 0] = torch.randn(2, 16, 4, 6)
        assert not torch.allclose(m(x, tt, text, mask, cond=other)[:, :, 2], m(x, tt, text, mask, cond=cond)[:, :, 2], atol=1e-4)
    assert DiT(DiTConfig(**SMALL)).nearest_embed is None
    with pytest.raises(ValueError, match="temporal_basis"):
        DiTConfig(**SMALL, nearest_given=True, temporal_basis="dct")


@pytest.mark.parametrize("text_layers", [0, 2])
def test_text_padding_is_ignored_but_text_matters(text_layers: int) -> None:
    torch.manual_seed(0)
    m = _pretend_trained(DiT(DiTConfig(**SMALL, text_layers=text_layers)))
    x, tt, text, mask = _inputs(2, 2, 4, 4, 5, 32)
    padded = torch.cat([text, 50 * torch.randn(2, 4, 32)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, 4, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        short = m(x, tt, text, mask)
        torch.testing.assert_close(m(x, tt, padded, padded_mask), short, atol=1e-5, rtol=1e-5)
        other = m(x, tt, torch.randn_like(text), mask)
        assert not torch.allclose(other, short, atol=1e-3)
        # an all-padding prompt (every key masked) stays finite thanks to the null token
        assert torch.isfinite(m(x, tt, text, torch.zeros_like(mask))).all()


def test_rope_depends_only_on_relative_position() -> None:
    head_dim = 32
    grid = (7, 11, 13)  # larger than anything the model is built for
    cos, sin = rope_3d(grid, head_dim, theta=100.0)
    assert cos.shape == sin.shape == (7 * 11 * 13, head_dim // 2)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(head_dim, generator=g)
    k = torch.randn(head_dim, generator=g)

    def idx(t: int, h: int, w: int) -> int:
        return (t * 11 + h) * 13 + w

    def score(pq: tuple[int, int, int], pk: tuple[int, int, int]) -> float:
        a, b = idx(*pq), idx(*pk)
        rq = apply_rope(q.view(1, 1, 1, -1), cos[a], sin[a]).flatten()
        rk = apply_rope(k.view(1, 1, 1, -1), cos[b], sin[b]).flatten()
        return float(rq @ rk)

    assert score((0, 0, 0), (1, 2, 3)) == pytest.approx(score((5, 7, 9), (6, 9, 12)), abs=1e-4)
    assert score((0, 0, 0), (1, 2, 3)) != pytest.approx(score((0, 0, 0), (1, 3, 2)), abs=1e-3)
    # each axis moves the score on its own
    base = score((2, 2, 2), (2, 2, 2))
    for moved in [(3, 2, 2), (2, 3, 2), (2, 2, 3)]:
        assert score((2, 2, 2), moved) != pytest.approx(base, abs=1e-4)


@pytest.mark.parametrize("text_layers, nearest_given", [(0, False), (1, False), (0, True)])
def test_flops_match_a_counter(text_layers: int, nearest_given: bool) -> None:
    m = DiT(DiTConfig(**SMALL, camera_dim=4, text_layers=text_layers, nearest_given=nearest_given))
    b, t, h, w, text_len = 2, 3, 6, 10, 7
    x, tt, text, mask = _inputs(b, t, h, w, text_len, 32)
    cond = torch.randn(b, 17, t, h, w)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        m(x, tt, text, mask, cond=cond, camera=torch.randn(b, 4))
    # On the CPU attention is plain matmuls (models.dit.attend), so the counter sees all of it.
    assert m.flops_per_sample(t, h, w, text_len, with_cond=True) == pytest.approx(counter.get_total_flops() / b, rel=1e-9)


def test_param_count() -> None:
    m = DiT()
    assert m.num_params() == sum(p.numel() for p in m.parameters())
    assert 5_000_000 < m.num_params() < 30_000_000


def test_save_fp16_load_roundtrip(tmp_path) -> None:
    torch.manual_seed(0)
    m = _pretend_trained(DiT(DiTConfig(**SMALL, patch=(1, 2, 2), camera_dim=3, text_layers=1)))
    save_pretrained(m, tmp_path / "dit", dtype=torch.float16)
    loaded = load_pretrained(tmp_path / "dit")
    assert isinstance(loaded, DiT)
    assert loaded.config == m.config and loaded.config.patch == (1, 2, 2) and loaded.text_refiner is not None
    for (k, a), (k2, b) in zip(m.state_dict().items(), loaded.state_dict().items()):
        assert k == k2
        torch.testing.assert_close(b, a.half().float(), atol=0, rtol=0)
    x, tt, text, mask = _inputs(1, 2, 4, 4, 3, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, tt, text, mask), m(x, tt, text, mask), atol=5e-2, rtol=5e-2)


def test_text_refiner_is_optional_and_refused_below_zero() -> None:
    assert DiT(DiTConfig(**SMALL)).text_refiner is None
    with pytest.raises(ValueError, match="text_layers must be >= 0"):
        DiTConfig(**SMALL, text_layers=-1)


def test_conv_head_output_starts_at_zero_and_mixes_neighbouring_tokens() -> None:
    x, tt, text, mask = _inputs(1, 2, 8, 8, 3, 32)
    moved = x.clone()
    moved[:, :, :, :2, :2] += 1.0  # the top-left token's input

    def change(head_channels: int) -> torch.Tensor:
        torch.manual_seed(0)
        m = _pretend_trained(DiT(DiTConfig(**SMALL, patch=(1, 2, 2), head_channels=head_channels)))
        # Zero every block's residual so that tokens do not mix in attention: only the head can mix them.
        for b in m.blocks:
            torch.nn.init.zeros_(b.ada[-1].weight)
            torch.nn.init.zeros_(b.ada[-1].bias)
        with torch.no_grad():
            return (m(moved, tt, text, mask) - m(x, tt, text, mask)).abs()

    # The linear head writes each token's 2x2 cells from that token alone; two 3x3x3 convolutions reach
    # two cells further, into the neighbouring tokens, and no further.
    assert change(0)[..., 2, 2].max().item() == 0
    with_head = change(4)
    assert with_head[..., 2, 2].max().item() > 0 and with_head[..., 3, 3].max().item() > 0
    assert with_head[..., 4, 4].max().item() == 0
    with torch.no_grad():
        assert DiT(DiTConfig(**SMALL, head_channels=4)).eval()(x, tt, text, mask).abs().max().item() == 0.0
    assert DiT(DiTConfig(**SMALL)).head is None
    with pytest.raises(ValueError, match="head_channels must be >= 0"):
        DiTConfig(**SMALL, head_channels=-1)


@pytest.mark.parametrize("option", [{"head_channels": 6}, {"absolute_positions": True}, {"self_condition": True}])
def test_optional_parts_flops_match_a_counter(option: dict) -> None:
    m = DiT(DiTConfig(**SMALL, **option))
    b, t, h, w, text_len = 1, 3, 6, 10, 5
    x, tt, text, mask = _inputs(b, t, h, w, text_len, 32)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        m(x, tt, text, mask)
    assert m.flops_per_sample(t, h, w, text_len) == pytest.approx(counter.get_total_flops() / b, rel=1e-9)


def test_absolute_positions_let_tokens_of_a_uniform_input_differ() -> None:
    # With rotary positions only, a uniform input gives every token the same value vector, so attention
    # (whatever its weights) returns the same output everywhere: no token can tell where it is.
    x = torch.ones(1, 16, 3, 6, 10)
    _, tt, text, mask = _inputs(1, 3, 6, 10, 4, 32)

    def spread(absolute: bool) -> float:
        torch.manual_seed(0)
        m = _pretend_trained(DiT(DiTConfig(**SMALL, absolute_positions=absolute)))
        with torch.no_grad():
            v = m(x, tt, text, mask)
        return (v - v[:, :, :1, :2, :2].repeat(1, 1, 3, 3, 5)).abs().max().item()

    assert spread(False) < 1e-5
    assert spread(True) > 1e-2
    assert DiT(DiTConfig(**SMALL)).pos_embed is None


def test_absolute_position_features_mark_edges_by_fraction_and_the_first_frame() -> None:
    feats = absolute_position_features((2, 2, 4)).view(2, 2, 4, 25)  # time 0:8, first-frame flag 8, height 9:17, width 17:25
    assert feats[0, ..., 8].eq(1).all() and feats[1, ..., 8].eq(0).all()
    # A column's features are those of its centre's fraction of the width, whatever the grid:
    # column 0 of 2 and column 1 of 6 both sit at 1/4.
    two, six = absolute_position_features((1, 1, 2)), absolute_position_features((1, 1, 6))
    torch.testing.assert_close(two[0, 17:], six[1, 17:])
    assert not torch.allclose(six[0, 17:], six[1, 17:])
    # left and right edges differ, and rows differ from each other, which rotary positions alone cannot tell
    assert not torch.allclose(feats[0, 0, 0, 17:], feats[0, 0, -1, 17:])
    assert not torch.allclose(feats[0, 0, 0, 9:17], feats[0, 1, 0, 9:17])


def test_relative_offsets_index_per_axis_and_clamp() -> None:
    offsets = relative_offsets((3, 1, 2), max_offset=1)  # tokens in t, h, w order: (0,0,0) (0,0,1) (1,0,0) ...
    assert offsets.shape == (3, 6, 6)
    assert offsets[0, 0, 4].item() == 0 and offsets[0, 4, 0].item() == 2  # t: 0 - 2 and 2 - 0, clamped to -1 / +1
    assert offsets[1].eq(1).all()  # one row: every height offset is 0
    assert offsets[2, 1, 0].item() == 2 and offsets[2, 0, 1].item() == 0 and offsets[2, 0, 2].item() == 1


def test_attention_bias_starts_as_a_no_op_and_then_steers_attention() -> None:
    x, tt, text, mask = _inputs(1, 3, 4, 6, 4, 32)
    torch.manual_seed(0)
    plain = _pretend_trained(DiT(DiTConfig(**SMALL)))
    torch.manual_seed(0)
    biased = DiT(DiTConfig(**SMALL, attention_bias_range=4))
    biased.load_state_dict(plain.state_dict(), strict=False)  # the same weights; the bias tables stay at zero
    biased.eval()
    with torch.no_grad():
        torch.testing.assert_close(biased(x, tt, text, mask), plain(x, tt, text, mask))
        # a bias that favours "same place, any frame" changes the output, and the offsets it needs are checked
        biased.blocks[0].attn.position_bias[1:, :, 4] = 5.0
        assert (biased(x, tt, text, mask) - plain(x, tt, text, mask)).abs().max().item() > 1e-3
        with pytest.raises(ValueError, match="pass the token offsets"):
            biased.blocks[0].attn(torch.randn(1, 72, 64), rope_3d((3, 4, 6), 32, 100.0))
    with pytest.raises(ValueError, match="attention_bias_range must be >= 0"):
        DiTConfig(**SMALL, attention_bias_range=-1)


def test_attention_bias_gets_gradients_and_saves(tmp_path) -> None:
    m = DiT(DiTConfig(**SMALL, attention_bias_range=3))
    x, tt, text, mask = _inputs(2, 3, 4, 4, 3, 32)
    _pretend_trained(m, skip=("cond_embed", "camera_embed.2", "blocks.0.attn.position_bias")).train()
    m(x, tt, text, mask).square().mean().backward()
    assert m.blocks[0].attn.position_bias.grad.abs().sum().item() > 0
    save_pretrained(m, tmp_path / "dit")
    assert load_pretrained(tmp_path / "dit").config.attention_bias_range == 3


@pytest.mark.parametrize("frames", [1, 3, 5, 9])
def test_temporal_dct_is_orthonormal_and_its_first_row_is_the_scaled_mean(frames: int) -> None:
    basis = temporal_dct_matrix(frames, dtype=torch.float64)
    torch.testing.assert_close(basis @ basis.T, torch.eye(frames, dtype=torch.float64))
    torch.testing.assert_close(basis[0], torch.full((frames,), frames**-0.5, dtype=torch.float64))
    still = torch.randn(2, 3, 1, 4, 4, dtype=torch.float64).expand(2, 3, frames, 4, 4)
    coefficients = along_time(still, basis)
    assert coefficients[:, :, 1:].abs().sum().item() < 1e-10  # a video that stays put is one DC token per cell


def test_dct_basis_is_the_frames_dit_between_a_transform_and_its_inverse() -> None:
    """A "dct" DiT is exactly the "frames" DiT with the same weights, fed DCT coefficients and inverted after."""
    torch.manual_seed(0)
    dct = _pretend_trained(DiT(DiTConfig(**SMALL, temporal_basis="dct", camera_dim=3)), skip=())
    frames = DiT(DiTConfig(**SMALL, camera_dim=3)).eval()
    frames.load_state_dict(dct.state_dict())
    x, tt, text, mask = _inputs(2, 5, 4, 6, 4, 32)
    cond = torch.randn(2, 17, 5, 4, 6)
    camera = torch.randn(2, 3)
    basis = temporal_dct_matrix(5)
    with torch.no_grad():
        expected = along_time(frames(along_time(x, basis), tt, text, mask, along_time(cond, basis), camera), basis.T)
        got = dct(x, tt, text, mask, cond, camera)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert (got - frames(x, tt, text, mask, cond, camera).detach()).abs().max().item() > 1e-3  # the basis matters
    with pytest.raises(ValueError, match="temporal_basis must be one of"):
        DiTConfig(**SMALL, temporal_basis="wavelet")
    with pytest.raises(ValueError, match="scene head"):
        DiTConfig(**SMALL, temporal_basis="dct", scene_classes=4)


def test_keep_indices_are_a_sorted_random_subset_per_sample() -> None:
    keep = keep_indices(4, 20, 0.4, torch.Generator().manual_seed(0))
    assert keep.shape == (4, 12)
    for row in keep:
        assert torch.equal(row, row.sort().values) and len(set(row.tolist())) == 12 and int(row.max()) < 20
    assert not all(torch.equal(keep[0], r) for r in keep[1:])  # each sample its own subset
    assert keep_indices(2, 5, 0.99).shape == (2, 1)  # never empty
    with pytest.raises(ValueError, match="mask_ratio must be in"):
        keep_indices(2, 5, 1.0)


def test_masked_forward_drops_tokens_for_the_early_blocks_only() -> None:
    """Keeping every token is the ordinary forward; dropping some changes every position's output (the last
    blocks mix the mask token in), and the mask token gets a gradient."""
    torch.manual_seed(0)
    model = _pretend_trained(DiT(DiTConfig(**SMALL, mask_blocks=1)), skip=())
    x, tt, text, mask = _inputs(2, 3, 4, 4, 4, 32)
    n = 3 * 2 * 2
    with torch.no_grad():
        full = model(x, tt, text, mask)
        torch.testing.assert_close(model(x, tt, text, mask, keep=torch.arange(n).expand(2, n)), full)
    keep = keep_indices(2, n, 0.5, torch.Generator().manual_seed(1))
    masked = model(x, tt, text, mask, keep=keep)
    assert masked.shape == full.shape and (masked - full).abs().max().item() > 1e-3
    masked.square().mean().backward()
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0


def test_masked_training_needs_mask_blocks_and_refuses_what_it_cannot_combine_with() -> None:
    x, tt, text, mask = _inputs(1, 3, 4, 4, 4, 32)
    keep = torch.arange(6)[None]
    with pytest.raises(ValueError, match="mask_blocks = 0"):
        DiT(DiTConfig(**SMALL))(x, tt, text, mask, keep=keep)
    with pytest.raises(ValueError, match="attention biases"):
        DiT(DiTConfig(**SMALL, mask_blocks=1, attention_bias_range=2))(x, tt, text, mask, keep=keep)
    with pytest.raises(ValueError, match="mask_blocks must be between 0 and depth - 1"):
        DiTConfig(**SMALL, mask_blocks=2)
    assert "mask_token" not in dict(DiT(DiTConfig(**SMALL)).named_parameters())  # old models load unchanged


# --- camera-aligned positions ---------------------------------------------------------------------------------------

_NAMED_SIGNALS = {"static": (0, 0, 0), "pan left": (-1, 0, 0), "pan right": (1, 0, 0), "tilt up": (0, 1, 0), "tilt down": (0, -1, 0), "zoom in": (0, 0, 1), "zoom out": (0, 0, -1)}


@pytest.mark.parametrize("move", list(_NAMED_SIGNALS))
@pytest.mark.parametrize("size", [(64, 64), (64, 112)])
def test_camera_positions_invert_the_renderers_camera(move: str, size: tuple[int, int]) -> None:
    """Each token's world position is where the renderer's camera puts its centre, averaged over its latent frame."""
    height, width = size
    clip = ClipSpec(height, width, 17, 8.0)
    track = camera_track(move, clip)
    cx, cy = width / 2, height / 2
    token = 16  # 8x VAE cells, 2x2 patch
    grid = (5, height // token, width // token)
    camera = torch.tensor([[*_NAMED_SIGNALS[move], 1.0]])
    got = camera_token_positions(camera, grid, 1, 4, CAMERA_SPEED / clip.fps, ZOOM_FACTOR).view(*grid, 3)
    groups = [[0]] + [list(range(1 + 4 * k, 5 + 4 * k)) for k in range(4)]
    for k, frames in enumerate(groups):
        sy = (torch.arange(grid[1]) + 0.5) * token
        sx = (torch.arange(grid[2]) + 0.5) * token
        wy = torch.stack([cy + track.oy[f] + (sy - cy) / track.zoom[f] for f in frames]).mean(0) / token - 0.5
        wx = torch.stack([cx + track.ox[f] + (sx - cx) / track.zoom[f] for f in frames]).mean(0) / token - 0.5
        assert torch.all(got[k, :, :, 0] == k)
        tolerance = 0.02 if "zoom" in move else 1e-4  # 1/zoom is averaged over the group's frames, not taken at its mean time
        torch.testing.assert_close(got[k, :, 0, 1], wy.float(), atol=tolerance, rtol=0)
        torch.testing.assert_close(got[k, 0, :, 2], wx.float(), atol=tolerance, rtol=0)


def test_camera_positions_are_the_plain_grid_for_a_still_or_absent_camera() -> None:
    grid = (3, 4, 7)
    still = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    positions = camera_token_positions(still, grid, 1, 4, 0.0275, 1.5)
    plain = rope_3d(grid, 32, 100.0)
    for table, expected in zip(rope_from_positions(positions, 32, 100.0), plain):
        torch.testing.assert_close(table, expected.expand(2, -1, -1), atol=0, rtol=0)


def test_camera_positions_move_the_attention_with_the_camera() -> None:
    """Positions move only under a moving camera: a still or absent camera gives the screen-position model's output
    exactly, a pan changes it, and a pan's world columns run ahead by the camera's offset at each latent frame."""
    cfg = dict(**SMALL, camera_dim=4)
    still, panned = DiT(DiTConfig(**cfg)), DiT(DiTConfig(**cfg, camera_positions=True, camera_pan_speed=0.25))
    panned.load_state_dict(still.state_dict())
    _pretend_trained(still), _pretend_trained(panned)
    x, tt, text, mask = _inputs(1, 3, 8, 8, 5, 32)
    with torch.no_grad():
        for camera in (None, torch.zeros(1, 4), torch.tensor([[0.0, 0.0, 0.0, 1.0]])):
            torch.testing.assert_close(panned(x, tt, text, mask, camera=camera), still(x, tt, text, mask, camera=camera), atol=0, rtol=0)
        pan = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
        assert not torch.allclose(panned(x, tt, text, mask, camera=pan), still(x, tt, text, mask, camera=pan), atol=1e-4)
    # A pan of 0.25 frame widths per video frame over a 4-token-wide grid is one token per video frame: latent
    # frame 1 (video frames 1-4, mean 2.5) has moved 2.5 tokens, so its screen column 0 is world column 2.5.
    positions = camera_token_positions(pan, (3, 4, 4), 1, 4, 0.25, 1.5).view(3, 4, 4, 3)
    torch.testing.assert_close(positions[1, 0, :, 2], torch.arange(4.0) + 2.5)
    torch.testing.assert_close(positions[2, 0, :, 2], torch.arange(4.0) + 6.5)


def test_camera_positions_work_with_masked_training() -> None:
    m = _pretend_trained(DiT(DiTConfig(**SMALL, camera_dim=4, camera_positions=True, mask_blocks=1)))
    x, tt, text, mask = _inputs(2, 2, 4, 4, 5, 32)
    keep = keep_indices(2, 2 * 2 * 2, 0.5, torch.Generator().manual_seed(0))
    out = m(x, tt, text, mask, camera=torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]]), keep=keep)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_camera_positions_need_a_camera_input() -> None:
    with pytest.raises(ValueError, match="camera_positions needs a camera input"):
        DiTConfig(**SMALL, camera_positions=True)
