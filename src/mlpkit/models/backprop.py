"""Backpropagation written out by the chain rule, for the plain MLP.

For small nets the cost of a training step is not arithmetic but the per-operation
overhead of autograd (recording the graph, then walking it). This module does what
the textbook derives instead: a forward pass that keeps each layer's output, then

    dL/dz_L = (softmax(z_L) - onehot(y)) / N      (CE; sigmoid(z_L) - y for BCE; 2(z_L - y)/(N k) for MSE)
    dL/dW_l = dL/dz_l^T  a_{l-1}        dL/db_l = sum_rows dL/dz_l
    dL/da_{l-1} = dL/dz_l  W_l          dL/dz_{l-1} = dL/da_{l-1} * f'(z_{l-1})

and writes the results into each parameter's `.grad`, so any torch optimiser,
gradient clipping and the gradient diagnostics work unchanged. It covers Linear
layers with the activations in DERIVATIVES and no normalisation or dropout;
`ManualBackprop.supports` says whether a model qualifies, and the trainer falls back
to autograd for everything else. tests/test_backprop.py checks it against autograd.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from mlpkit.tasks import get_task

# activation class -> (forward, derivative from (pre-activation z, output a)) for elementwise units
DERIVATIVES: Dict[type, Tuple[Callable, Callable]] = {
    nn.ReLU: (torch.relu, lambda z, a: z > 0),
    nn.Tanh: (torch.tanh, lambda z, a: 1 - a * a),
    nn.Sigmoid: (torch.sigmoid, lambda z, a: a * (1 - a)),
    nn.Identity: (lambda z: z, None),
}


class ManualBackprop:
    """Forward and backward of an MLP (Linear -> activation ... -> Linear) without autograd."""

    def __init__(self, model: nn.Module, task: str, flat: bool = True, weight: Optional[torch.Tensor] = None):
        seq = model.net
        self.linears: List[nn.Linear] = [m for m in seq if isinstance(m, nn.Linear)]
        acts = [m for m in seq if not isinstance(m, nn.Linear)]
        self.act = type(acts[0]) if acts else nn.Identity
        self.forward_fn, self.derivative = DERIVATIVES[self.act]
        self.task = get_task(task)
        self.weight = weight  # per-class loss weights (classification), or None
        # Weights and biases become views of one flat buffer, their gradients views of another
        # (written in place each step): the optimiser then updates a single tensor, and
        # torch.optim's Python overhead per tensor is most of a small model's step.
        # (flat=False: each parameter keeps its own storage, e.g. for an optimiser made beforehand.)
        params = [p for lin in self.linears for p in (lin.weight, lin.bias)]
        self.flat: Optional[nn.Parameter] = None
        if not flat:
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            return
        self.flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
        self.flat.grad = torch.zeros_like(self.flat)
        offset = 0
        for p in params:
            k = p.numel()
            p.data = self.flat.data[offset:offset + k].view_as(p)
            p.grad = self.flat.grad[offset:offset + k].view_as(p)
            offset += k

    @staticmethod
    def supports(model: nn.Module) -> bool:
        """True for an MLP made only of Linear layers and one covered activation kind (no input encoder)."""
        if getattr(model, "autograd_only", False):
            return False
        seq = getattr(model, "net", None)
        if not isinstance(seq, nn.Sequential) or not len(seq):
            return False
        kinds = {type(m) for m in seq if not isinstance(m, nn.Linear)}
        return (len(kinds) <= 1 and kinds <= set(DERIVATIVES)
                and all(isinstance(m, nn.Linear) and m.bias is not None or type(m) in DERIVATIVES for m in seq))

    @torch.no_grad()
    def step(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Forward, loss and backward for one batch; fills .grad. Returns (loss, output) as tensors."""
        zs: List[torch.Tensor] = []  # pre-activations of the hidden layers
        acts: List[torch.Tensor] = [x]  # inputs to each linear layer
        h = x
        last = len(self.linears) - 1
        for i, lin in enumerate(self.linears):
            z = torch.addmm(lin.bias, h, lin.weight.t())  # (N, out) = b + h W^T
            if i == last:
                h = z
                break
            zs.append(z)
            h = self.forward_fn(z)
            acts.append(h)
        out = h

        # dL/dz of the output layer and the batch's loss: the task's rule (mlpkit.tasks)
        loss, g = self.task.output_grad(out, y, self.weight)

        for i in range(last, -1, -1):
            lin = self.linears[i]
            torch.mm(g.t(), acts[i], out=lin.weight.grad)  # (out, in)
            torch.sum(g, 0, out=lin.bias.grad)
            if i == 0:
                break
            g = g.mm(lin.weight)  # dL/da of the layer below
            if self.derivative is not None:
                if self.act is nn.ReLU:
                    g = torch.ops.aten.threshold_backward(g, zs[i - 1], 0.0)  # g where z > 0, else 0: one op
                else:
                    g.mul_(self.derivative(zs[i - 1], acts[i]))
        return loss, out


def maybe_manual(model: nn.Module, task: str, enabled: bool = True, flat: bool = True,
                 weight: Optional[torch.Tensor] = None) -> Optional[ManualBackprop]:
    """A ManualBackprop for `model` when enabled and supported, else None (use autograd)."""
    if enabled and ManualBackprop.supports(model):
        return ManualBackprop(model, task, flat, weight)
    return None
