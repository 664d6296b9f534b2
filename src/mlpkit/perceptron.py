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
from typing import Any, Optional

import torch
from torch import nn

from mlpkit.checkpoint import save_checkpoint
from mlpkit.data import Dataset
from mlpkit.errors import ConfigError
from mlpkit.trainer import FitResult


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

    The logged loss is the 0-1 loss (share of misclassified rows): the perceptron has no other."""
    if data.task == "regression":
        raise ConfigError("model=perceptron classifies; for a regression target use model=mlp")
    start = time.perf_counter()
    X, labels = data.X_train, data.y_train.reshape(-1).long()
    w, b = model.linear.weight, model.linear.bias
    gen = torch.Generator().manual_seed(seed + 1)
    result = FitResult(history={"train_loss": [], "val_loss": [], "train_accuracy": [], "val_accuracy": [],
                                "updates": []})
    ckpt = Path(run_dir) / "checkpoints" if run_dir is not None else None

    def error_rate(Xs, ys):
        return float((model.predict(Xs) != ys.reshape(-1).long()).float().mean()) if len(Xs) else math.nan

    converged = interrupted = False
    best = None
    epoch = 0
    try:
        with torch.no_grad():
            for epoch in range(1, max_epochs + 1):
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
                train_err = error_rate(X, labels)
                val_err = error_rate(data.X_val, data.y_val)
                h = result.history
                h["train_loss"].append(train_err)
                h["val_loss"].append(val_err)
                h["train_accuracy"].append(1 - train_err)
                h["val_accuracy"].append(1 - val_err)
                h["updates"].append(updates)
                if logger is not None:
                    logger.scalars({"loss/train": train_err, "loss/val": val_err, "accuracy/train": 1 - train_err,
                                    "accuracy/val": 1 - val_err, "lr": lr, "perceptron/updates": updates}, epoch)
                if val_err < result.best_val_loss:
                    result.best_val_loss, result.best_epoch = val_err, epoch
                    result.best_val_accuracy = 1 - val_err
                    best = {"epoch": epoch, "model": {k: v.clone() for k, v in model.state_dict().items()}}
                if updates == 0:
                    converged = True
                    break
    except KeyboardInterrupt:
        interrupted = True
        epoch -= 1
    result.epochs_run = epoch
    if ckpt is not None:  # a perceptron epoch takes microseconds: write once, at the end
        save_checkpoint(ckpt / "last.pt", {"epoch": epoch, "model": model.state_dict(), "history": result.history})
        if best is not None:
            save_checkpoint(ckpt / "best.pt", best)
    result.status = "interrupted" if interrupted else "completed"
    result.extra["converged"] = converged
    if interrupted:
        result.message = f"interrupted in epoch {epoch + 1}; a perceptron run is short: run it again"
    elif converged:
        result.message = (f"converged: epoch {epoch} made no mistake on the training set "
                          f"({sum(result.history['updates'])} weight updates in all)")
    else:
        result.message = (f"did not converge: {result.history['updates'][-1] if epoch else 0} mistakes in the last "
                          f"of {epoch} epochs; the perceptron rule only converges on linearly separable data")
    from mlpkit.metrics import class_probabilities, classification_metrics

    test_err = error_rate(data.X_test, data.y_test)
    scores = model(data.X_test).detach().cpu().numpy()  # sigmoid/softmax of the scores: argmax = the rule's class
    result.test = {"loss": test_err, **classification_metrics(data.y_test.reshape(-1).cpu().numpy(),
                                                             class_probabilities(scores, data.task))}
    if logger is not None and data.in_dim == 2:  # the line it found (or could not find), over the points
        from mlpkit.diagnostics import decision_boundary_figure

        logger.figure("images/decision_boundary", decision_boundary_figure(
            model, data.X_train, data.y_train, data.task, title=f"{data.name}, perceptron, epoch {epoch}"), epoch)
    result.seconds = time.perf_counter() - start
    return result
