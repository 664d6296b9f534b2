"""What makes the textbook visible: per-layer gradient norms, dead and saturated units, and the
decision boundary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional

import torch
from torch import nn

from mlpkit.activations import ACTIVATIONS
from mlpkit.callbacks import Callback
from mlpkit.state import TrainState
from mlpkit.tasks import BINARY, get_task

if TYPE_CHECKING:
    from mlpkit.trainer import Trainer

# "saturated": within 1% of the output range from an asymptote.
# tanh (range 2): |out| > 0.98; sigmoid and step (range 1): out < 0.01 or out > 0.99.
SATURATION = 0.98


class ActivationProbe:
    """Forward hooks on the hidden activations that, while `active`, measure per layer:

    - dead_fraction (rectifier family): units whose input is <= 0 for every sample of the batch,
      i.e. units that output their flat part for the whole val set;
    - saturated_fraction (sigmoid, tanh, step): share of outputs within 1% of an asymptote.
    """

    def __init__(self, model: nn.Module, activation: str):
        self.family = ACTIVATIONS[activation].family
        self.activation = activation
        self.threshold = SATURATION  # on |out| for tanh, on 2|out - 0.5| for sigmoid and step
        self.active = False
        self.values: Dict[str, torch.Tensor] = {}
        self.handles = []
        modules: List[nn.Module] = getattr(model, "activations", [])
        if self.family is not None:
            for i, module in enumerate(modules):
                self.handles.append(module.register_forward_hook(self._hook(i)))

    def _hook(self, i: int):
        def hook(module, inputs, output):
            if not self.active:
                return
            if self.family == "rectifier":
                dead = (inputs[0] <= 0).all(dim=0).float().mean()
                self.values[f"activations/dead_fraction/layer_{i}"] = dead
            else:  # within 1% of an asymptote: tanh in (-1, 1); sigmoid and step in [0, 1]
                dist = output.abs() if self.activation == "tanh" else 2 * (output - 0.5).abs()
                self.values[f"activations/saturated_fraction/layer_{i}"] = (dist > self.threshold).float().mean()
        return hook

    def read(self) -> Dict[str, float]:
        """The values of the last active pass, as floats (one host sync for all)."""
        if not self.values:
            return {}
        keys = list(self.values)
        floats = torch.stack([self.values[k] for k in keys]).tolist()
        self.values = {}
        return dict(zip(keys, floats))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


class Diagnostics(Callback):
    """Per epoch: `grads/layer_<i>`, the mean L2 norm of each linear layer's weight gradient (before
    clipping) over the steps sampled (each epoch's first, then every log_every_n_steps), also kept as
    history["grad_norm"]; and the ActivationProbe's fractions over the val pass."""

    name = "diagnostics"

    def __init__(self) -> None:
        self.probe: Optional[ActivationProbe] = None

    def on_fit_start(self, trainer: "Trainer", state: TrainState) -> None:
        self.weights = [m.weight for m in trainer.model.modules() if isinstance(m, nn.Linear)]
        self.grad_sum = torch.zeros(len(self.weights), device=trainer.device)  # on the device: no sync per step
        self.samples = 0
        activation = getattr(trainer.model, "activation", None)
        self.probe = ActivationProbe(trainer.model, activation) if activation else None

    def on_after_backward(self, trainer: "Trainer", state: TrainState) -> None:
        if state.batch == 0 or state.step % trainer.log_every == 0:
            grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in self.weights]
            self.grad_sum += torch.stack(torch._foreach_norm(grads))
            self.samples += 1

    def on_train_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        if self.probe is not None:
            self.probe.active = True  # measure the val pass that follows

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        if self.samples:
            norms = (self.grad_sum / self.samples).tolist()
            state.scalars.update({f"grads/layer_{i}": v for i, v in enumerate(norms)})
            state.history.setdefault("grad_norm", []).append(norms)
            self.grad_sum.zero_()
            self.samples = 0
        if self.probe is not None:
            self.probe.active = False
            state.scalars.update(self.probe.read())

    def teardown(self, trainer: "Trainer", state: TrainState) -> None:
        if self.probe is not None:
            self.probe.remove()
            self.probe = None


@torch.no_grad()
def decision_boundary_figure(model: nn.Module, X: torch.Tensor, y: torch.Tensor, task: str, title: str = ""):
    """A matplotlib figure: the model's predicted class over a grid of the 2-D input plane,
    with the training points on top (the picture of the browser playground)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    was_training = model.training
    model.eval()
    pts = X.detach().float().cpu()
    lo, hi = pts.min(0).values - 0.5, pts.max(0).values + 0.5
    n = 150
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], n), torch.linspace(lo[1], hi[1], n), indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    device = next(model.parameters()).device
    out = model(grid.to(device)).float().cpu()
    model.train(was_training)

    fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=100)
    labels = y.detach().cpu().reshape(-1)
    extent = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))
    task = get_task(task)
    if task == BINARY:  # one logit: the probability of class 1
        prob = torch.sigmoid(out[:, 0]).reshape(n, n)
        ax.imshow(prob, extent=extent, origin="lower", cmap="RdBu_r", vmin=0, vmax=1, alpha=0.7, aspect="auto")
        ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=1)
        cmap, vmax = "RdBu_r", 1
    elif task.classification:
        cls = out.argmax(1).reshape(n, n)
        ax.imshow(cls, extent=extent, origin="lower", cmap="tab10", vmin=0, vmax=9, alpha=0.45, aspect="auto",
                  interpolation="nearest")
        cmap, vmax = "tab10", 9
    else:
        ax.imshow(out[:, 0].reshape(n, n), extent=extent, origin="lower", cmap="viridis", alpha=0.8, aspect="auto")
        cmap, vmax = "viridis", None
    ax.scatter(pts[:, 0], pts[:, 1], c=labels, cmap=cmap, s=10, edgecolors="k", linewidths=0.3, vmin=0, vmax=vmax)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig


def confusion_matrix_figure(matrix, classes, title: str = ""):
    """A matplotlib figure of a confusion matrix: rows the true class, columns the predicted one,
    each cell its count, shaded by the share of its row (so rare classes read as well as common ones)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.asarray(matrix, dtype=np.int64)
    k = len(cm)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = min(12.0, 2.5 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(size, size * 0.9), dpi=100)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    names = [str(c)[:14] for c in classes] if len(classes) == k else [str(i) for i in range(k)]
    ax.set_xticks(range(k), names, rotation=90 if k > 4 else 0, fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
