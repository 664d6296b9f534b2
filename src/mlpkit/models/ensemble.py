"""A seed ensemble: k trained networks of one architecture whose predictions are averaged, the task's way
(classification: the logits of the members' mean probability; regression: the mean value), as TabM averages
its members at prediction. What `trainer.refit_models=k` keeps (checkpoints/refit.pt holds its weights,
`nets.<i>.<name>`, and `members: k`); predict.py, load_run and the ONNX export use it as any model.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mlpkit.tasks import get_task


class SeedEnsemble(nn.Module):
    """Example: SeedEnsemble([net_a, net_b], "binary")(x) is the logit of (sigmoid(a(x)) + sigmoid(b(x))) / 2."""

    def __init__(self, members: Sequence[nn.Module], task: str):
        super().__init__()
        if not members:
            raise ValueError("a seed ensemble needs at least one member")
        self.nets = nn.ModuleList(members)
        self.task = get_task(task)

    def members(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) -> (N, k, out_dim): every member's output (as TabM.members)."""
        return torch.stack([net(x) for net in self.nets], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.task.mean_of_members(self.members(x))


def member_weights(weights: dict, i: int) -> dict:
    """Member i's own state dict from a SeedEnsemble's."""
    prefix = f"nets.{i}."
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
