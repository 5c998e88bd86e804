"""Muon for a transformer's hidden matrices, AdamW for everything else, as one optimizer.

Why: Muon (Jordan et al. 2024; Liu et al. 2025, "Muon is Scalable for LLM
Training") orthogonalises each hidden weight matrix's momentum before the
step, so every direction of the matrix moves at the same rate instead of the
few the gradient favours; it reports reaching AdamW's loss in markedly fewer
steps, which is the currency of a CPU budget. Embeddings, the output layer,
gains and biases stay with AdamW, as Muon's authors advise.

The learning rate is AdamW's: Muon's update is scaled to AdamW's typical
update size (`adjust_lr_fn="match_rms_adamw"`, Liu et al.), so one schedule
drives both and the training loop sets every group's `lr` as before.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from kinema.train.loop import adamw

MuonSelector = Callable[[str, torch.nn.Parameter], bool]


class MuonWithAdamW:
    """The optimizer interface the training loop uses (param_groups, zero_grad, step, state dicts)."""

    def __init__(self, model: torch.nn.Module, lr: float, weight_decay: float, use_muon: MuonSelector, betas: tuple[float, float] = (0.9, 0.99)):
        muon, rest = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                (muon if p.ndim == 2 and use_muon(name, p) else rest).append(p)
        if not muon:
            raise ValueError("no parameter was chosen for Muon")
        self.muon = torch.optim.Muon(muon, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw")
        self.adamw = adamw(rest, lr, weight_decay, betas)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [*self.muon.param_groups, *self.adamw.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none=set_to_none)
        self.adamw.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.muon.step()
        self.adamw.step()

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"muon", "adamw"}:
            raise ValueError("this checkpoint's optimizer state is not Muon + AdamW: resume with the optimizer it was trained with")
        self.muon.load_state_dict(state["muon"])
        self.adamw.load_state_dict(state["adamw"])


def dit_hidden_matrix(name: str, p: torch.nn.Parameter) -> bool:
    """The DiT's matrices that Muon takes: attention and MLP inside its blocks.

    Not its embeddings or head (Muon's authors keep those on AdamW), nor the adaLN
    projections: they are a third of the orthogonalisation's cost per step (9 x hidden
    rows each) and map the conditioning vector, an input-like role.
    """
    return name.startswith("blocks.") and ".ada." not in name
