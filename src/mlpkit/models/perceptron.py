"""Rosenblatt's perceptron: one layer of step units, trained by the perceptron learning rule.

No backpropagation and no loss to differentiate: for each training row in turn,
if the prediction is wrong, move the weights toward the row (w += lr * (y - y_hat) * x).
It converges in finitely many updates when the classes are linearly separable
(and, or, nand) and never when they are not (xor).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from mlpkit.training.callbacks import Callback
from mlpkit.checks import check_needs_classes
from mlpkit.models.families import FAMILIES, Family
from mlpkit.schema import option_default
from mlpkit.training.state import TrainState
from mlpkit.status import RunStatus
from mlpkit.tasks import Task
from mlpkit.training.trainer import StepRule, Trainer, model_outputs, split_batches


class Perceptron(nn.Module):
    """in_dim -> n_out step units. Binary: one unit, output 1 when w.x + b > 0.
    Multiclass: one unit per class, the class with the largest w.x + b wins."""

    def __init__(self, in_dim: int, out_dim: int, seed: Optional[int] = None):
        super().__init__()  # `seed` is the MLP's argument: a perceptron's weights start at 0
        self.linear = nn.Linear(int(in_dim), int(out_dim))
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, in_dim) -> (N, out_dim) scores
        return self.linear(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class index per row: step(w.x + b) for one unit, argmax over units otherwise."""
        return self.classes(self.linear(x))

    @staticmethod
    def classes(scores: torch.Tensor) -> torch.Tensor:
        """Class index per row of a perceptron's scores (N, units): step for one unit, argmax otherwise."""
        return (scores[:, 0] > 0).long() if scores.shape[1] == 1 else scores.argmax(1)


class PerceptronRule(StepRule):
    """The perceptron learning rule as the Trainer's step: one row at a time, in the loop's shuffled
    order, on the CPU. The loss is the 0-1 loss (share of misclassified rows), of the weights after
    each epoch's pass: the perceptron has no other. Each epoch also logs `perceptron/updates` (the
    rows that moved the weights); Converged ends the run after an epoch without one.

        Trainer(step_rule=PerceptronRule(lr=1.0), max_epochs=100).fit(Perceptron(2, 1), load_dataset("and"))
    """

    device = "cpu"  # a row per step: the host's loop, not the device's arithmetic
    rows_per_step = 1
    running_loss = False

    def __init__(self, lr: Optional[float] = None):
        # weights that start at 0: the rule's result does not depend on lr
        self.lr = option_default("model", "perceptron", "lr") if lr is None else lr
        self.updates = 0  # in this epoch so far

    def setup(self, trainer: Trainer) -> None:
        super().setup(trainer)  # no optimizer, no scheduler
        check_needs_classes(trainer.task, trainer.data.name, model="perceptron", families=FAMILIES)
        self.updates = 0

    @torch.no_grad()
    def step(self, trainer: Trainer, xb: torch.Tensor, yb: torch.Tensor) -> Tuple[None, None]:
        """If the row's prediction is wrong, move the weights toward it (w += lr * (y - y_hat) * x)."""
        model, x, target, lr = trainer.model, xb[0], int(yb.reshape(-1)[0]), self.lr
        w, b = model.linear.weight, model.linear.bias
        if model.out_dim == 1:
            guess = int(float(w[0] @ x + b[0]) > 0)
            if guess != target:  # y - y_hat is +1 or -1
                w[0] += lr * (target - guess) * x
                b[0] += lr * (target - guess)
                self.updates += 1
        else:
            guess = int((w @ x + b).argmax())
            if guess != target:  # pull the right class toward x, push the wrong one away
                w[target] += lr * x
                b[target] += lr
                w[guess] -= lr * x
                b[guess] -= lr
                self.updates += 1
        return None, None

    def evaluate(self, trainer: Trainer, model: nn.Module, X: torch.Tensor, y: torch.Tensor, task: Task,
                 chunk: int = 65536) -> Dict[str, float]:
        """The 0-1 loss (share of misclassified rows) and the accuracy, 1 minus it."""
        return _zero_one(model.predict(X), y)

    def evaluate_outputs(self, trainer: Trainer, model: nn.Module, X: torch.Tensor, y: torch.Tensor, task: Task,
                         chunk: int = 65536) -> Tuple[Dict[str, float], Any, Any]:
        """evaluate()'s numbers and the scores, from one pass: the class follows from the scores as
        Perceptron.predict takes it."""
        out, targets = model_outputs(model, split_batches(X, y, chunk))
        return _zero_one(Perceptron.classes(torch.from_numpy(out)), y.cpu()), out, targets

    def train_scalars(self, trainer: Trainer, running: Dict[str, float]) -> Dict[str, float]:
        train = self.evaluate(trainer, trainer.model, trainer.data.X_train, trainer.data.y_train, trainer.task)
        updates, self.updates = self.updates, 0
        return {"loss/train": train["loss"], "accuracy/train": train["accuracy"], "perceptron/updates": updates}

    def current_lr(self, trainer: Trainer) -> float:
        return self.lr

    def history_tags(self, task: Task) -> Dict[str, str]:
        return {"train_loss": "loss/train", "val_loss": "loss/val", "train_accuracy": "accuracy/train",
                "val_accuracy": "accuracy/val", "updates": "perceptron/updates"}

    def callbacks(self) -> List[Callback]:
        return [Converged()]


class Converged(Callback):
    """An epoch without a weight update ends the run (`converged` in metrics.json); the run's last
    message says whether the rule converged."""

    name = "converged"

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        state.extra["converged"] = False

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        updates = state.history["updates"]
        if updates[-1] == 0:
            state.extra["converged"] = True
            state.stop(RunStatus.COMPLETED, f"converged: epoch {state.epoch} made no mistake on the training set "
                                    f"({sum(updates)} weight updates in all)")

    def on_train_end(self, trainer: Trainer, state: TrainState) -> None:
        epoch, updates = state.epoch, state.history["updates"]
        if state.status == RunStatus.COMPLETED and not state.extra["converged"]:
            state.message = (f"did not converge: {updates[-1] if epoch else 0} mistakes in the last of {epoch} "
                             "epochs; the perceptron rule only converges on linearly separable data")
        elif state.status == RunStatus.INTERRUPTED:
            state.message = f"interrupted in epoch {epoch + 1}; a perceptron run is short: run it again"


def _model_kwargs(cfg: Any, data: Any) -> Dict[str, Any]:
    return {"in_dim": data.in_dim, "out_dim": data.task.out_dim(len(data.classes))}


FAMILY = Family(
    name="perceptron",
    make=Perceptron,
    model_kwargs=_model_kwargs,
    head=lambda cfg, device: "perceptron (step units, perceptron learning rule, no backpropagation)",
    what="a single layer of step units",
    settings=("lr",),
    ranges={"lr": dict(low=0, low_open=True)},
    hidden_layers=False,
    unused_groups=("optimizer", "scheduler", "activation", "init", "norm", "regularization", "embedding"),
    step_rule=lambda cfg: PerceptronRule(cfg.model.lr),
    # an epoch takes microseconds: no progress lines, checkpoints once at the end, the decision boundary
    # only at the end; never pruned (it ends when it converges)
    callbacks={"tensorboard": {"histogram_every": 0, "boundary_every": 0, "title": "perceptron"},
               "checkpoint": {"every_s": math.inf}, "progress": None, "pruning": None},
    stops_early=False,  # early_stopping's monitor picks its best epoch; the rule decides when it stops
    resumes=False,  # its runs are short: start again
    classifies_only=True,
)


def _zero_one(guess: torch.Tensor, y: torch.Tensor) -> Dict[str, float]:
    """The 0-1 loss (share of rows whose guessed class is not `y`'s) and the accuracy, 1 minus it."""
    error = float((guess != y.reshape(-1).long()).float().mean()) if len(y) else math.nan
    return {"loss": error, "accuracy": 1 - error}
