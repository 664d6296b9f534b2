"""The three tasks a data set can pose, each the one home of its rules.

    task = TASKS["binary"]
    task.loss()            # one logit, sigmoid + binary cross-entropy
    task.output_grad(z, y) # (loss, dL/dz) for the chain-rule backward
    task.probabilities(z)  # (N, 2) class probabilities
    task.metrics(y, z)     # the test metrics

binary: one logit, sigmoid + binary cross-entropy, targets (N, 1) float 0/1.
multiclass: one logit per class, softmax + cross-entropy, targets (N,) long class indices.
regression: a linear output, mean squared error, targets (N, 1) float, standardised with the train
split's mean and std (metrics undo it: RMSE, MAE, R^2 in the target's units).

Tensor rules import torch when called, so that naming a task (configs, predict.py's arguments)
costs no torch import.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from mlpkit.registry import Registry


class Task(str):
    """What differs between binary, multiclass and regression: loss, gradient, decoding, metrics.

    A Task is also its name (a str), so it compares, prints and is saved to JSON as "binary" etc."""

    classification = True
    classes_wanted = ""  # how many class labels a run of this task has, in words
    outputs_text = ""  # what the network's outputs are, for an exported model's description

    @property
    def name(self) -> str:
        return str(self)

    def fits_classes(self, n: int) -> bool:
        """Whether a run of this task can have `n` class labels."""
        return n == 0 if not self.classification else classification_task(n) == self if n >= 2 else False

    # -- shapes and targets -------------------------------------------------------

    def out_dim(self, n_classes: int) -> int:
        """The network's output width."""
        return 1

    def target_tensor(self, y: np.ndarray) -> Any:
        """Targets as the loss takes them: (N, 1) float32 (binary, regression) or (N,) long."""
        import torch

        return torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1)

    def stratify(self, y: np.ndarray) -> Optional[np.ndarray]:
        """The labels to stratify the splits by (None: rows drawn without regard to y)."""
        return y

    def standardizes_target(self) -> bool:
        return False

    # -- the loss and its gradient ---------------------------------------------------

    def loss(self, weight: Any = None, label_smoothing: float = 0.0) -> Callable[[Any, Any], Any]:
        """The batch loss (a mean; with class weights w, sum w_i l_i / sum w_i); `label_smoothing` e
        (classification) trains on targets (1 - e) one-hot + e / classes instead of the labels."""
        raise NotImplementedError

    def output_grad(self, out: Any, y: Any, weight: Any = None) -> Tuple[Any, Any]:
        """(the batch's loss, dL/d out) without autograd; `out` may be overwritten."""
        raise NotImplementedError

    def batch_weight(self, y: Any, weight: Any = None) -> Any:
        """What a batch's mean loss weighs when batches are pooled: its rows, or their class weights."""
        if weight is None or not self.classification:
            return len(y)
        return weight[y.long()].sum()

    def balanced_weights(self, y: Any) -> Any:
        """n / (k * n_c) per class c of the labels y (scikit-learn's 'balanced')."""
        import torch

        labels = y.reshape(-1).long()
        k = self.n_classes_of(labels)
        counts = torch.bincount(labels, minlength=k).to(torch.float32)
        return (len(labels) / (k * counts.clamp(min=1))).to(y.device)

    def n_classes_of(self, labels: Any) -> int:
        return int(labels.max()) + 1

    def mean_of_members(self, out: Any) -> Any:
        """(N, k, out) outputs of k ensemble members -> (N, out) outputs of their average prediction:
        classification, the logits of the members' mean probability; regression, the mean value."""
        return out.mean(1)

    # -- accuracy during training --------------------------------------------------------

    def prediction_buffer(self, n: int, device: Any) -> Any:
        """A buffer for an epoch's predictions (compared with the labels once per epoch), or None."""
        return None

    def keep(self, buffer: Any, out: Any) -> None:
        """Copy a batch's predictions into its slice of the buffer."""

    def correct(self, pred: Any, y: Any) -> Any:
        """The number of right predictions (a device tensor) from outputs or kept predictions."""
        raise NotImplementedError

    # -- outputs as answers -----------------------------------------------------------

    def probabilities(self, out: np.ndarray) -> np.ndarray:
        """(N, C) class probabilities from the network's outputs (classification)."""
        raise TypeError(f"a {self.name} task has no class probabilities")

    def decode(self, out: np.ndarray, y_mean: float = 0.0, y_std: float = 1.0) -> np.ndarray:
        """Class index per row, or the value in the target's units."""
        raise NotImplementedError

    def target_units(self, y: np.ndarray, y_mean: float = 0.0, y_std: float = 1.0) -> np.ndarray:
        """Targets as the data hold them -> as the user wrote them (class indices stay as they are)."""
        return y

    def metrics(self, y_true: np.ndarray, out: np.ndarray, y_mean: float = 0.0, y_std: float = 1.0
                ) -> Dict[str, Any]:
        """The test metrics of outputs `out` against targets (class indices, or values in target units)."""
        from mlpkit import metrics

        return metrics.classification_metrics(y_true, self.probabilities(out))


class Binary(Task):
    classes_wanted = "2 classes"
    outputs_text = "one logit (sigmoid for the probability of the second class)"

    def n_classes_of(self, labels: Any) -> int:
        return 2

    def loss(self, weight: Any = None, label_smoothing: float = 0.0) -> Callable[[Any, Any], Any]:
        from torch import nn

        if weight is None and not label_smoothing:
            return nn.BCEWithLogitsLoss()
        e = float(label_smoothing)

        def bce(out: Any, y: Any) -> Any:
            target = y * (1 - e) + e / 2 if e else y  # two classes: the smoothed one-hot's second entry
            terms = nn.functional.binary_cross_entropy_with_logits(out, target, reduction="none")
            if weight is None:
                return terms.mean()
            wi = weight[y.long()]
            return (wi * terms).sum() / wi.sum()
        return bce

    def mean_of_members(self, out: Any) -> Any:
        import torch

        # logit(mean sigmoid(z)) = log mean sigmoid(z) - log mean sigmoid(-z), each a logsumexp (no overflow)
        sig = torch.nn.functional.logsigmoid
        return torch.logsumexp(sig(out), 1) - torch.logsumexp(sig(-out), 1)

    def output_grad(self, out: Any, y: Any, weight: Any = None) -> Tuple[Any, Any]:
        import torch

        # BCE with logits: softplus(z) - y z, stable; its derivative is sigmoid(z) - y
        terms = torch.nn.functional.softplus(out) - y * out
        g = torch.sigmoid(out) - y
        if weight is None:
            return terms.mean(), g.div_(len(out))
        w = weight[y.long()]  # (N, 1)
        total = w.sum()
        return (w * terms).sum() / total, g.mul_(w / total)

    def prediction_buffer(self, n: int, device: Any) -> Any:
        import torch

        return torch.empty((n, 1), device=device)  # the logits

    def keep(self, buffer: Any, out: Any) -> None:
        buffer.copy_(out.detach())

    def correct(self, pred: Any, y: Any) -> Any:
        return ((pred > 0).to(y.dtype) == y).sum()

    def probabilities(self, out: np.ndarray) -> np.ndarray:
        z = np.asarray(out, dtype=np.float64).reshape(-1)
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # the sigmoid, without overflow for large |z|
        return np.stack([1.0 - p, p], axis=1)

    def decode(self, out: np.ndarray, y_mean: float = 0.0, y_std: float = 1.0) -> np.ndarray:
        return (np.asarray(out)[:, 0] > 0).astype(np.int64)


class Multiclass(Task):
    classes_wanted = "3 or more classes"
    outputs_text = "logits (softmax for probabilities)"

    def out_dim(self, n_classes: int) -> int:
        return n_classes

    def target_tensor(self, y: np.ndarray) -> Any:
        import torch

        return torch.as_tensor(y, dtype=torch.long)

    def loss(self, weight: Any = None, label_smoothing: float = 0.0) -> Callable[[Any, Any], Any]:
        from torch import nn

        return nn.CrossEntropyLoss(weight=weight, label_smoothing=float(label_smoothing))

    def mean_of_members(self, out: Any) -> Any:
        import math

        import torch

        # log of the mean softmax: softmax of it gives the mean probability back
        return torch.logsumexp(torch.log_softmax(out, -1), 1) - math.log(out.shape[1])

    def output_grad(self, out: Any, y: Any, weight: Any = None) -> Tuple[Any, Any]:
        import torch

        n = len(out)
        logp = torch.log_softmax(out, dim=1)
        picked = logp.gather(1, y.unsqueeze(1))
        g = logp.exp_()  # softmax(z) - onehot(y)
        g[torch.arange(n, device=out.device), y] -= 1.0
        if weight is None:
            return -picked.mean(), g.div_(n)
        w = weight[y].unsqueeze(1)  # (N, 1)
        total = w.sum()
        return -(w * picked).sum() / total, g.mul_(w / total)

    def prediction_buffer(self, n: int, device: Any) -> Any:
        import torch

        return torch.empty(n, device=device, dtype=torch.long)  # the predicted class

    def keep(self, buffer: Any, out: Any) -> None:
        import torch

        torch.argmax(out.detach(), 1, out=buffer)

    def correct(self, pred: Any, y: Any) -> Any:
        if pred.dim() == 2:  # outputs, not kept classes
            pred = pred.argmax(1)
        return (pred == y).sum()

    def probabilities(self, out: np.ndarray) -> np.ndarray:
        z = np.asarray(out, dtype=np.float64)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def decode(self, out: np.ndarray, y_mean: float = 0.0, y_std: float = 1.0) -> np.ndarray:
        return np.asarray(out).argmax(1)


class Regression(Task):
    classification = False
    classes_wanted = "no classes"
    outputs_text = "standardised value: value * y_std + y_mean"

    def stratify(self, y: np.ndarray) -> Optional[np.ndarray]:
        return None

    def standardizes_target(self) -> bool:
        return True

    def loss(self, weight: Any = None, label_smoothing: float = 0.0) -> Callable[[Any, Any], Any]:
        from torch import nn

        if label_smoothing:
            raise ValueError("label smoothing needs classes; a regression target has none")
        return nn.MSELoss()

    def output_grad(self, out: Any, y: Any, weight: Any = None) -> Tuple[Any, Any]:
        diff = out - y
        return diff.pow(2).mean(), diff.mul_(2.0 / diff.numel())

    def balanced_weights(self, y: Any) -> Any:
        raise TypeError("class weights need classes; a regression target has none")

    def correct(self, pred: Any, y: Any) -> Any:
        raise TypeError("a regression task has no accuracy")

    def decode(self, out: np.ndarray, y_mean: float = 0.0, y_std: float = 1.0) -> np.ndarray:
        return np.asarray(out)[:, 0].astype(np.float64) * y_std + y_mean

    def target_units(self, y: np.ndarray, y_mean: float = 0.0, y_std: float = 1.0) -> np.ndarray:
        return y * y_std + y_mean

    def metrics(self, y_true: np.ndarray, out: np.ndarray, y_mean: float = 0.0, y_std: float = 1.0
                ) -> Dict[str, Any]:
        from mlpkit import metrics

        return metrics.regression_metrics(y_true, np.asarray(out) * y_std + y_mean)


TASKS: Registry[Task] = Registry("data.task", {t: t for t in (Binary("binary"), Multiclass("multiclass"),
                                                             Regression("regression"))})


def get_task(task: str) -> Task:
    """The Task of a name (a Task is returned as it is); ConfigError naming the choices otherwise."""
    return task if isinstance(task, Task) else TASKS[task]


def classification_task(n_classes: int) -> Task:
    """binary for two classes, multiclass for more."""
    return TASKS["binary" if n_classes == 2 else "multiclass"]


BINARY, MULTICLASS, REGRESSION = TASKS["binary"], TASKS["multiclass"], TASKS["regression"]
