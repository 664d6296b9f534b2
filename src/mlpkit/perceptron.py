"""Rosenblatt's perceptron: one layer of step units, trained by the perceptron learning rule.

No backpropagation and no loss to differentiate: for each training row in turn,
if the prediction is wrong, move the weights toward the row (w += lr * (y - y_hat) * x).
It converges in finitely many updates when the classes are linearly separable
(and, or, nand) and never when they are not (xor).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, List, Optional

import torch
from torch import nn

from mlpkit.callbacks import BestEpoch, Callback
from mlpkit.checkpoint import ModelCheckpoint
from mlpkit.data import Dataset
from mlpkit.errors import ConfigError
from mlpkit.state import FitResult, TrainState
from mlpkit.tasks import get_task
from mlpkit.tblog import TensorBoard


class Perceptron(nn.Module):
    """in_dim -> n_out step units. Binary: one unit, output 1 when w.x + b > 0.
    Multiclass: one unit per class, the class with the largest w.x + b wins."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, in_dim) -> (N, out_dim) scores
        return self.linear(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class index per row: step(w.x + b) for one unit, argmax over units otherwise."""
        scores = self.linear(x)
        return (scores[:, 0] > 0).long() if self.out_dim == 1 else scores.argmax(1)


def fit_perceptron(model: Perceptron, data: Dataset, *, max_epochs: int = 100, lr: float = 1.0, seed: int = 0,
                   logger: Any = None, run_dir: Optional[str | Path] = None) -> FitResult:
    """Train with the perceptron rule until an epoch makes no mistake (converged) or max_epochs.

    The logged loss is the 0-1 loss (share of misclassified rows): the perceptron has no other.
    The run's bookkeeping is the Trainer's: a TrainState, and the callbacks that track the best
    epoch, write checkpoints (once, at the end: an epoch takes microseconds) and log to TensorBoard."""
    if not get_task(data.task).classification:
        raise ConfigError("model=perceptron classifies; for a regression target use model=mlp")
    start = time.perf_counter()
    X, labels = data.X_train, data.y_train.reshape(-1).long()
    gen = torch.Generator().manual_seed(seed + 1)
    callbacks: List[Callback] = [TensorBoard(logger, title="perceptron")] if logger is not None else []
    callbacks += [BestEpoch(), ModelCheckpoint(Path(run_dir) / "checkpoints" if run_dir is not None else None,
                                               every_s=math.inf)]
    # what the callbacks read from the loop that calls them (a Trainer's attributes)
    loop = SimpleNamespace(model=model, data=data, optimizer=None, shuffle=gen, device=X.device, extra_state={},
                           callbacks=callbacks, logger=logger, log=lambda msg: None)
    state = TrainState(max_epochs=max_epochs, history={"train_loss": [], "val_loss": [], "train_accuracy": [],
                                                       "val_accuracy": [], "updates": []})

    def notify(hook: str) -> None:
        for cb in callbacks:
            getattr(cb, hook)(loop, state)

    def error_rate(Xs, ys):
        return float((model.predict(Xs) != ys.reshape(-1).long()).float().mean()) if len(Xs) else math.nan

    converged = False
    notify("on_fit_start")
    try:
        while state.epoch < max_epochs and not converged:
            updates = _rule_epoch(model, X, labels, lr, gen)
            train_err, val_err = error_rate(X, labels), error_rate(data.X_val, data.y_val)
            state.epoch += 1
            state.scalars = {"loss/train": train_err, "loss/val": val_err, "accuracy/train": 1 - train_err,
                             "accuracy/val": 1 - val_err, "lr": lr, "perceptron/updates": updates}
            for key, value in zip(state.history, (train_err, val_err, 1 - train_err, 1 - val_err, updates)):
                state.history[key].append(value)
            notify("on_epoch_end")
            converged = updates == 0
        state.status = "completed"
    except KeyboardInterrupt:
        state.stop("interrupted", f"interrupted in epoch {state.epoch + 1}; a perceptron run is short: run it again")
    notify("on_train_end")
    epoch, h = state.epoch, state.history
    if converged:
        state.message = (f"converged: epoch {epoch} made no mistake on the training set "
                         f"({sum(h['updates'])} weight updates in all)")
    elif state.status == "completed":
        state.message = (f"did not converge: {h['updates'][-1] if epoch else 0} mistakes in the last "
                         f"of {epoch} epochs; the perceptron rule only converges on linearly separable data")
    from mlpkit.metrics import classification_metrics

    test_err = error_rate(data.X_test, data.y_test)
    scores = model(data.X_test).detach().cpu().numpy()  # sigmoid/softmax of the scores: argmax = the rule's class
    test = {"loss": test_err, **classification_metrics(data.y_test.reshape(-1).cpu().numpy(),
                                                       get_task(data.task).probabilities(scores))}
    notify("on_fit_end")  # the line it found (or could not find), over the points
    return FitResult.from_state(state, test=test, extra={"converged": converged},
                                seconds=time.perf_counter() - start)


@torch.no_grad()
def _rule_epoch(model: Perceptron, X: torch.Tensor, labels: torch.Tensor, lr: float, gen: torch.Generator) -> int:
    """One pass of the perceptron rule over the rows in a random order; the number of weight updates."""
    w, b = model.linear.weight, model.linear.bias
    updates = 0
    for i in torch.randperm(len(X), generator=gen).tolist():
        x, target = X[i], int(labels[i])
        if model.out_dim == 1:
            guess = int(float(w[0] @ x + b[0]) > 0)
            if guess != target:  # y - y_hat is +1 or -1
                w[0] += lr * (target - guess) * x
                b[0] += lr * (target - guess)
                updates += 1
        else:
            guess = int((w @ x + b).argmax())
            if guess != target:  # pull the right class toward x, push the wrong one away
                w[target] += lr * x
                b[target] += lr
                w[guess] -= lr * x
                b[guess] -= lr
                updates += 1
    return updates
