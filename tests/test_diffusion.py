"""Samplers against an analytic flow, and classifier-free guidance."""

from __future__ import annotations

import pytest
import torch

from kinema.diffusion import flow
from kinema.diffusion.guidance import cfg_velocity
from kinema.diffusion.samplers import SAMPLERS, dpmpp_2m, euler, heun, model_calls

# Data x0 ~ N(MU, S^2) per element. Then x_t = (1-t) x0 + t eps is Gaussian with mean
# (1-t) MU and variance (1-t)^2 S^2 + t^2, and the exact velocity E[eps - x0 | x_t] is
# linear in x_t. The probability-flow ODE maps noise z to MU + S z exactly.
MU, S = 1.5, 1.0


def exact_velocity(x: torch.Tensor, t: torch.Tensor, S: float = S) -> torch.Tensor:
    t = t.double()
    var = (1 - t) ** 2 * S**2 + t**2
    centred = x - (1 - t) * MU
    e_x0 = MU + (1 - t) * S**2 / var * centred
    e_eps = t / var * centred
    return e_eps - e_x0


def solve(name: str, steps: int, shift: float = 1.0) -> float:
    z = torch.randn(4096, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ts = flow.sampling_timesteps(steps, shift).double()
    x = SAMPLERS[name](exact_velocity, z.clone(), ts)
    return float((x - (MU + S * z)).abs().max())


@pytest.mark.parametrize("name", ["euler", "heun", "dpmpp-2m"])
def test_samplers_converge_to_exact_solution(name: str) -> None:
    coarse, fine = solve(name, 4), solve(name, 64)
    assert fine < coarse / 8
    assert fine < 0.1


@pytest.mark.parametrize("name", ["heun", "dpmpp-2m"])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_second_order_beats_euler_at_same_steps(name: str, shift: float) -> None:
    for steps in (8, 16):
        assert solve(name, steps, shift) < 0.5 * solve("euler", steps, shift)


def test_error_order() -> None:
    # Halving the step size halves Euler's error and quarters Heun's.
    assert 1.6 < solve("euler", 16) / solve("euler", 32) < 2.6
    assert 3.2 < solve("heun", 16) / solve("heun", 32) < 5.0


def test_dpmpp_2m_exact_when_the_data_prediction_is_constant() -> None:
    # A point mass (S -> 0): x0 = x - t v is the same at every t, so a data-prediction
    # exponential integrator must be exact at any step count and any shift; wrong
    # sigma/alpha coefficients in the update would show up here at once.
    z = torch.randn(256, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    v = lambda x, t: exact_velocity(x, t, S=0.0)  # noqa: E731
    ts = flow.sampling_timesteps(3, 2.0).double()
    torch.testing.assert_close(dpmpp_2m(v, z.clone(), ts), torch.full_like(z, MU))


def test_progress_and_call_counts() -> None:
    calls: list[float] = []
    seen: list[tuple[int, int]] = []

    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert t.ndim == 0
        calls.append(float(t))
        return exact_velocity(x, t)

    ts = flow.sampling_timesteps(5, 1.0).double()
    for fn, name in ((euler, "euler"), (heun, "heun"), (dpmpp_2m, "dpmpp-2m")):
        calls.clear()
        seen.clear()
        fn(v, torch.zeros(3, dtype=torch.float64), ts, progress=lambda s, n: seen.append((s, n)))
        assert seen == [(i, 5) for i in range(1, 6)]
        assert len(calls) == model_calls(name, 5)
        assert 0.0 not in calls  # no sampler evaluates the model at t = 0


def test_samplers_reject_bad_schedule() -> None:
    with pytest.raises(ValueError):
        euler(exact_velocity, torch.zeros(2), torch.tensor([1.0]))


class TextModel(torch.nn.Module):
    """A toy velocity model that depends on the masked mean of the text, like the DiT's pooling."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(dim, 1)
        self.calls: list[int] = []

    def forward(self, x, t, text, text_mask, cond=None, camera=None):  # noqa: ANN001, ANN201
        self.calls.append(x.shape[0])
        w = text_mask.to(x.dtype).unsqueeze(-1)
        pooled = (text * w).sum(1) / w.sum(1).clamp(min=1)
        out = x * t.view(-1, 1, 1) + self.proj(pooled).view(-1, 1, 1)
        if cond is not None:
            out = out + cond
        return out


def test_cfg_scale_one_is_cond_only_single_pass() -> None:
    torch.manual_seed(0)
    model = TextModel()
    x = torch.randn(2, 3, 4)
    t = torch.tensor(0.7)
    cond, cmask = torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
    uncond, umask = torch.randn(2, 2, 8), torch.ones(2, 2, dtype=torch.bool)
    out = cfg_velocity(model, x, t, cond, cmask, uncond, umask, 1.0)
    assert model.calls == [2]
    assert torch.equal(out, model(x, t.expand(2), cond, cmask))


def test_cfg_combines_branches_in_one_batched_pass() -> None:
    torch.manual_seed(0)
    model = TextModel()
    x, t = torch.randn(2, 3, 4), torch.tensor([0.3, 0.9])
    cond, cmask = torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
    uncond, umask = torch.randn(2, 2, 8), torch.ones(2, 2, dtype=torch.bool)  # shorter: gets padded
    extra = torch.randn(2, 3, 4)
    out = cfg_velocity(model, x, t, cond, cmask, uncond, umask, 5.0, cond=extra)
    assert model.calls == [4]
    v_c = model(x, t, cond, cmask, cond=extra)
    v_u = model(x, t, uncond, umask, cond=extra)
    torch.testing.assert_close(out, v_u + 5.0 * (v_c - v_u))
    # The negative prompt matters: a different uncond text changes the guided result.
    other = cfg_velocity(model, x, t, cond, cmask, torch.randn(2, 2, 8), umask, 5.0, cond=extra)
    assert not torch.allclose(out, other)


def test_training_t_without_a_uniform_share_is_the_logit_normal() -> None:
    plain = flow.sample_logit_normal(512, torch.Generator().manual_seed(3))
    mixed = flow.sample_training_t(512, torch.Generator().manual_seed(3), uniform_fraction=0.0)
    assert torch.equal(plain, mixed)


def test_a_uniform_share_trains_the_noisy_end() -> None:
    n = 200_000
    logit_normal = flow.sample_training_t(n, torch.Generator().manual_seed(0))
    mixed = flow.sample_training_t(n, torch.Generator().manual_seed(0), uniform_fraction=0.25)
    uniform = flow.sample_training_t(n, torch.Generator().manual_seed(0), uniform_fraction=1.0)
    share_above = lambda t: float((t > 0.9).float().mean())  # noqa: E731
    assert share_above(logit_normal) == pytest.approx(0.014, abs=0.002)  # P(N(0,1) > logit 0.9 = 2.197)
    assert share_above(uniform) == pytest.approx(0.1, abs=0.003)
    assert share_above(mixed) == pytest.approx(0.75 * 0.014 + 0.25 * 0.1, abs=0.003)
    assert float(mixed.min()) > 0.0 and float(mixed.max()) < 1.0


def test_temporal_difference_loss_ignores_errors_that_stay_the_same() -> None:
    target = torch.randn(2, 3, 4, 2, 2)
    steady = target + torch.randn(2, 3, 1, 2, 2)  # one error shared by every frame
    assert float(flow.temporal_difference_loss(steady, target)) < 1e-10
    assert float(flow.flow_loss(steady, target)) > 0.1
    moving = target.clone()
    moving[:, :, 2:] += 1.0  # the error changes once, between frames 1 and 2: 1 of 3 differences is 1
    assert float(flow.temporal_difference_loss(moving, target)) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="T >= 2"):
        flow.temporal_difference_loss(target[:, :, :1], target[:, :, :1])


def test_frame_correlated_noise_shares_a_part_across_frames_and_zero_is_plain_randn() -> None:
    shape = (4, 3, 5, 8, 8)
    plain = flow.frame_correlated_noise(shape, torch.Generator().manual_seed(1), 0.0)
    torch.testing.assert_close(plain, torch.randn(shape, generator=torch.Generator().manual_seed(1)), atol=0, rtol=0)
    noise = flow.frame_correlated_noise((64, 8, 5, 16, 16), torch.Generator().manual_seed(2), 0.5)
    assert float(noise.std()) == pytest.approx(1.0, abs=0.02)
    a, b = noise[:, :, 0].flatten(), noise[:, :, 3].flatten()
    assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        flow.frame_correlated_noise(shape, None, 1.0)
    with pytest.raises(ValueError, match="B, C, T, H, W"):
        flow.frame_correlated_noise((2, 3), None, 0.5)


def test_noise_estimate_recovers_the_noise_given_the_true_velocity() -> None:
    g = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(3, 4, 2, 5, 5, generator=g), torch.randn(3, 4, 2, 5, 5, generator=g)
    t = torch.rand(3, generator=g)
    v = flow.velocity_target(x0, noise)
    torch.testing.assert_close(flow.noise_estimate(flow.add_noise(x0, noise, t), v, t), noise)
    torch.testing.assert_close(flow.noise_estimate(flow.add_noise(x0, noise, t[:1].expand(3)), v, float(t[0])), noise)


def test_rectified_noise_moves_towards_the_estimate_by_strength_times_t() -> None:
    g = torch.Generator().manual_seed(4)
    noise, estimate = torch.randn(2, 3, 2, 4, 4, generator=g), torch.randn(2, 3, 2, 4, 4, generator=g)
    t = torch.tensor([0.25, 1.0])
    torch.testing.assert_close(flow.rectified_noise(noise, noise, t, 1.0), noise)  # a perfect estimate changes nothing
    torch.testing.assert_close(flow.rectified_noise(noise, estimate, t, 0.0), noise)
    moved = flow.rectified_noise(noise, estimate, t, 0.5)
    torch.testing.assert_close(moved[0], noise[0] + 0.125 * (estimate[0] - noise[0]))
    torch.testing.assert_close(moved[1], noise[1] + 0.5 * (estimate[1] - noise[1]))


def test_clean_estimate_inverts_add_noise_given_the_true_velocity() -> None:
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 4, 2, 5, 5, generator=g), torch.randn(3, 4, 2, 5, 5, generator=g)
    t = torch.rand(3, generator=g)
    xt, v = flow.add_noise(x0, noise, t), flow.velocity_target(x0, noise)
    torch.testing.assert_close(flow.clean_estimate(xt, v, t), x0)  # one t per sample
    torch.testing.assert_close(flow.clean_estimate(flow.add_noise(x0, noise, t[:1].expand(3)), v, t[0]), x0)  # one t for all
