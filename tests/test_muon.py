"""Muon + AdamW: which parameters each takes, one schedule for both, checkpoints, and that it trains."""

from __future__ import annotations

import pytest
import torch

from kinema.train.dit_trainer import build_dit
from kinema.train.muon import MuonWithAdamW, dit_hidden_matrix


def _dit():
    torch.manual_seed(0)
    return build_dit({"hidden": 32, "depth": 2, "heads": 2}, 4, 16)


def test_block_matrices_go_to_muon_and_the_rest_to_adamw():
    model = _dit()
    opt = MuonWithAdamW(model, 1e-3, 0.01, dit_hidden_matrix)
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for g in opt.muon.param_groups for p in g["params"]}
    adamw = {names[id(p)] for g in opt.adamw.param_groups for p in g["params"]}
    assert muon and not muon & adamw and muon | adamw == set(names.values())
    assert "blocks.0.attn.qkv.weight" in muon and "blocks.1.mlp.fc2.weight" in muon
    for kept_on_adamw in ("x_embed.weight", "final.linear.weight", "blocks.0.ada.1.weight", "blocks.0.attn.qkv.bias", "null_token"):
        assert kept_on_adamw in adamw
    with pytest.raises(ValueError, match="no parameter was chosen"):
        MuonWithAdamW(model, 1e-3, 0.01, lambda name, p: False)


def test_one_learning_rate_reaches_every_group_and_the_state_round_trips():
    model = _dit()
    opt = MuonWithAdamW(model, 1e-3, 0.01, dit_hidden_matrix)
    for group in opt.param_groups:
        group["lr"] = 3e-4
    assert {g["lr"] for g in opt.muon.param_groups} == {g["lr"] for g in opt.adamw.param_groups} == {3e-4}
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    again = MuonWithAdamW(_dit(), 1e-3, 0.01, dit_hidden_matrix)
    again.load_state_dict(opt.state_dict())
    assert again.state_dict()["muon"]["state"].keys() == opt.state_dict()["muon"]["state"].keys()
    with pytest.raises(ValueError, match="not Muon \\+ AdamW"):
        again.load_state_dict(torch.optim.AdamW(model.parameters()).state_dict())


def test_muon_fits_a_batch():
    """A few dozen steps on one fixed batch bring the velocity loss well down: the combined optimizer trains."""
    model = _dit().train()
    opt = MuonWithAdamW(model, 3e-3, 0.0, dit_hidden_matrix)
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(4, 4, 3, 4, 4, generator=g), torch.rand(4, generator=g)
    text, mask = torch.randn(4, 5, 16, generator=g), torch.ones(4, 5, dtype=torch.bool)
    target = torch.randn(4, 4, 3, 4, 4, generator=g)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = (model(x, t, text, mask) - target).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
