"""The training loop: mini-batch / full-batch / stochastic gradient descent on in-memory tensors.

`Trainer.fit` runs the epochs and tells its callbacks (mlpkit.callbacks) what happened; each concern
(checkpoints and resume, early stopping, divergence, signals, TensorBoard, diagnostics, progress,
the LR schedule, pruning) is one callback. Per step the loop does only tensor work on the device
(no `.item()`); losses and accuracies accumulate there and are read once per epoch, or every
`log_every_n_steps` for the per-step curve.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from mlpkit.callbacks import (BestEpoch, Callback, DivergenceGuard, EarlyStopping, EpochTime, LRScheduler, Progress,
                              Pruning, SignalHandler)
from mlpkit.checkpoint import ModelCheckpoint, save_checkpoint
from mlpkit.data import Dataset
from mlpkit.errors import ConfigError
from mlpkit.optim import make_optimizer, make_scheduler
from mlpkit.registry import not_known
from mlpkit.state import FitResult, TrainState
from mlpkit.tasks import get_task

__all__ = ["Trainer", "EarlyStopping", "FitResult", "TrainState", "Callback", "resolve_device"]

log_fn = Callable[[str], None]

# once a callback aborts the run in these, the later callbacks skip that epoch (per-step hooks: see train_epoch)
_EPOCH_HOOKS = ("on_train_epoch_end", "on_epoch_end")


def resolve_device(name: str = "auto") -> torch.device:
    """auto -> cuda when present, else cpu; cuda without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.device={name} but no CUDA device is available; "
                              "use trainer.device=cpu or trainer.device=auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"trainer.device={name} but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif name != "cpu":
        raise ConfigError(not_known("trainer.device", name, ["auto", "cpu", "cuda", "cuda:N"]))
    return torch.device(name)


def _save(path: Path, state: Dict[str, Any]) -> None:
    save_checkpoint(path, state)  # looked up when called: tests replace mlpkit.trainer.save_checkpoint


class Trainer:
    """Fits an nn.Module on a `Dataset`. Usable without Hydra:

        data = load_dataset("moons", noise=0.3)
        model = MLP(data.in_dim, [32, 32], data.out_dim, activation="relu")
        result = Trainer(optimizer="adam", lr=1e-2, max_epochs=50).fit(model, data)

    Args:
        optimizer: a name from mlpkit.optim.OPTIMIZERS, or a ready torch optimizer.
        optimizer_params: that optimizer's own settings (momentum, betas, ...).
        batch_size: rows per step; 0 = the whole train split (batch GD), 1 = stochastic GD.
        l1, l2: coefficients of sum|w| and sum w^2 over the linear weights, added to the loss.
        input_noise: std of Gaussian noise added to each training batch's inputs.
        early_stopping: an EarlyStopping, or None to run all `max_epochs`.
        pruner: an object whose `should_prune(epoch, history)` is asked after each epoch's val pass
            (e.g. mlpkit.pruning.MedianPruner); True stops the run with status "pruned".
        run_dir: where checkpoints go (checkpoints/last.pt, best.pt); None = no checkpoints.
        logger: a TensorBoardLogger, or None.
        callbacks: your own mlpkit.Callback objects (see mlpkit.callbacks). They hear each hook after the
            built-in callbacks that judge an epoch (divergence, best epoch, early stopping, LR schedule)
            and before the checkpoint, which saves their state_dict() with that epoch.
        class_weight: "balanced" weights each class's loss by n / (k * n_class) of the train split
            (a weighted mean over the batch, as torch's CrossEntropyLoss takes it); None: all alike.
    """

    def __init__(self, *, optimizer: str | torch.optim.Optimizer = "adam", lr: float = 1e-3,
                 optimizer_params: Optional[dict] = None, scheduler: str = "none",
                 scheduler_params: Optional[dict] = None, max_epochs: int = 20, batch_size: int = 64,
                 l1: float = 0.0, l2: float = 0.0, input_noise: float = 0.0,
                 clip_grad_norm: Optional[float] = None, clip_grad_value: Optional[float] = None,
                 early_stopping: Optional[EarlyStopping] = None, device: str = "auto", seed: int = 0,
                 log_every_n_steps: int = 50, histogram_every_n_epochs: Optional[int] = None,
                 boundary_every_n_epochs: Optional[int] = None, run_dir: Optional[str | Path] = None, logger: Any = None,
                 progress: bool = False, log: Optional[log_fn] = None, handle_signals: bool = True,
                 pruner: Any = None,
                 checkpoint_every_s: float = 2.0, manual_backprop: bool = True,
                 class_weight: Optional[str] = None, callbacks: Sequence[Callback] = ()):
        self.optimizer_spec, self.lr = optimizer, lr
        self.optimizer_params = dict(optimizer_params or {})
        self.scheduler_name, self.scheduler_params = scheduler, dict(scheduler_params or {})
        self.max_epochs, self.batch_size = max_epochs, batch_size
        self.l1, self.l2, self.input_noise = l1, l2, input_noise
        self.clip_grad_norm, self.clip_grad_value = clip_grad_norm, clip_grad_value
        self.early_stopping = early_stopping
        self.pruner = pruner
        self.device = resolve_device(device)
        self.seed = seed
        self.log_every = max(1, log_every_n_steps)
        # None: about ten times per run (images and histograms cost milliseconds each)
        every = max(1, max_epochs // 10)
        self.histogram_every = every if histogram_every_n_epochs is None else histogram_every_n_epochs
        self.boundary_every = every if boundary_every_n_epochs is None else boundary_every_n_epochs
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.logger = logger
        self.progress = progress
        self.log = log or (lambda msg: None)
        self.handle_signals = handle_signals
        self.checkpoint_every_s = checkpoint_every_s  # disk writes at most this often; always at the end
        self.manual_backprop = manual_backprop
        if class_weight not in (None, "none", "balanced"):
            raise ConfigError(not_known("trainer.class_weight", class_weight, ["none", "balanced"]))
        self.class_weight = None if class_weight == "none" else class_weight
        self.weight: Optional[torch.Tensor] = None  # per-class loss weights, set by fit()
        self.first_step_time: Optional[float] = None  # unix time of the first training step (start-up probe)
        self.stop_signal: Optional[int] = None
        self.extra_state: Dict[str, Any] = {}  # stored in every checkpoint (e.g. model arguments)
        self.user_callbacks: List[Callback] = list(callbacks)

    # -- helpers ---------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, model: nn.Module, X: torch.Tensor, y: torch.Tensor, task: str,
                 chunk: int = 65536) -> Dict[str, torch.Tensor]:
        """Mean loss (and correct count) over a split in eval mode, as device tensors."""
        task = get_task(task)
        was_training = model.training
        model.eval()
        loss_fn = task.loss(self.weight)
        loss = torch.zeros((), device=X.device)
        weight = torch.zeros((), device=X.device)
        correct = torch.zeros((), device=X.device, dtype=torch.long)
        for i in range(0, len(X), chunk):
            out = model(X[i:i + chunk])
            yb = y[i:i + chunk]
            wb = task.batch_weight(yb, self.weight)
            loss += loss_fn(out, yb) * wb
            weight += wb
            if task.classification:
                correct += task.correct(out, yb)
        model.train(was_training)
        n = max(1, len(X))
        return {"loss": loss / weight.clamp(min=1e-12), "accuracy": correct.float() / n}

    @torch.no_grad()
    def test_metrics(self, model: nn.Module, data: Dataset) -> Dict[str, Any]:
        """The test split's loss and mlpkit.metrics' scores (classification: accuracy, balanced
        accuracy, macro F1, ROC AUC, confusion matrix; regression: RMSE, MAE, R^2 in target units)."""
        task = get_task(data.task)
        m = self.evaluate(model, data.X_test, data.y_test, task)
        was_training = model.training
        model.eval()
        out = torch.cat([model(data.X_test[i:i + 65536]) for i in range(0, len(data.X_test), 65536)])
        model.train(was_training)
        out = out.float().cpu().numpy()
        y = task.target_units(data.y_test.cpu().numpy(), data.y_mean, data.y_std)
        return {"loss": float(m["loss"]), **task.metrics(y, out, data.y_mean, data.y_std)}

    # -- the loop --------------------------------------------------------------

    def fit(self, model: nn.Module, data: Dataset, resume_from: Optional[str | Path] = None) -> FitResult:
        """Train `model` on `data`; returns the FitResult (also after early stop, divergence, interrupt)."""
        start = time.perf_counter()
        self._setup(model, data)
        self.callbacks = self._make_callbacks()
        self._hooks = {name: [getattr(cb, name) for cb in self.callbacks
                              if getattr(type(cb), name) is not getattr(Callback, name)]
                       for name in vars(Callback) if name.startswith(("on_", "teardown"))}
        history = {"train_loss": [], "val_loss": [], "lr": []}
        if get_task(data.task).classification:
            history.update(train_accuracy=[], val_accuracy=[])
        state = self.state = TrainState(max_epochs=self.max_epochs, history=history)
        try:
            if resume_from is not None:  # first: every callback starts from the restored state
                self.checkpointer.resume(self, state, resume_from)
            self._notify("on_fit_start")
            while state.running and state.epoch < self.max_epochs:
                state.epoch_start = time.perf_counter()
                self.train_epoch(state)
                if not state.aborted:
                    self._notify("on_train_epoch_end")
                if state.aborted:
                    break
                state.epoch += 1
                self.validate(state)
                self._notify("on_epoch_end")
            if state.running:
                state.status = "completed"
            self._notify("on_train_end")
        finally:
            self._notify("teardown")
        test = {}
        if state.status != "interrupted" and (state.status != "diverged" or state.best_weights is not None):
            test = self.test_metrics(model, data)  # of the weights kept (the best epoch's, where restored)
        self._notify("on_fit_end")
        extra = {"steps_per_epoch": self.steps_per_epoch, "batch_size": self.bs,
                 "backprop": "manual" if self.manual is not None else "autograd"}
        return FitResult.from_state(state, test=test, extra=extra, seconds=time.perf_counter() - start)

    def _notify(self, hook: str, *args: Any) -> None:
        for fn in self._hooks[hook]:
            fn(self, self.state, *args)
            if self.state.aborted and hook in _EPOCH_HOOKS:
                return

    def train_epoch(self, state: TrainState) -> None:
        """One pass over the train split in a new order; leaves loss/train (and accuracy/train) in state.scalars."""
        self.model.train()
        X, y, n, bs, task = self.data.X_train, self.data.y_train, len(self.data.X_train), self.bs, self.task
        dev, weighted = self.device, self.weight is not None
        loss_sum = torch.zeros((), device=dev)
        weight_sum = torch.zeros((), device=dev)
        # each batch's predictions are copied into one buffer and compared with the labels once per
        # epoch: a copy per step instead of four small reductions, which on small batches cost as
        # much as the step's arithmetic (binary: the logits; multiclass: the predicted class)
        kept = task.prediction_buffer(self.n_seen, dev)
        # each batch gathers its rows (no shuffled copy of the data set)
        perm = torch.randperm(n, device=dev, generator=self.shuffle) if bs < n else None
        step_hooks = self._hooks["on_step_end"]
        for b in range(self.steps_per_epoch):
            if perm is None:
                xb, yb = X, y
            else:
                rows = perm[b * bs:(b + 1) * bs]
                xb, yb = X.index_select(0, rows), y.index_select(0, rows)
            if self.input_noise > 0:
                xb = xb + self.input_noise * torch.randn_like(xb)
            state.batch = b
            loss, out = self.train_step(xb, yb)
            if weighted:  # class weights: batches pooled by their weight, not their rows
                wb = task.batch_weight(yb, self.weight)
                loss_sum += loss.detach() * wb
                weight_sum += wb
            else:
                loss_sum.add_(loss.detach(), alpha=len(yb))
            if kept is not None:
                task.keep(kept[b * bs:b * bs + len(yb)], out)
            logged = state.step % self.log_every == 0 or state.step == 1
            state.step_loss = float(loss.detach()) if logged else None  # the only host sync of a step
            for hook in step_hooks:  # all of them: a signal's `interrupted` wins over `diverged`, as it did
                hook(self, state, loss)
            if state.aborted:
                return
        total = weight_sum.clamp(min=1e-12) if weighted else self.n_seen
        state.scalars = {"loss/train": float(loss_sum / total)}
        if kept is not None:
            seen = y[:self.n_seen] if perm is None else y.index_select(0, perm[:self.n_seen])
            correct = task.correct(kept, seen)
            state.scalars["accuracy/train"] = float(correct) / self.n_seen

    def train_step(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple:
        """Gradients (by hand or by autograd) with the L1/L2 penalties, clipping, the optimizer step.
        Returns (the batch's mean loss without penalties, the model's outputs), as device tensors."""
        weights = self.penalized
        if self.manual is not None:  # chain rule by hand: same gradients, no graph
            loss, out = self.manual.step(xb, yb)
            if self.l1 > 0:
                torch._foreach_add_([w.grad for w in weights], torch._foreach_sign(weights), alpha=self.l1)
            if self.l2 > 0:
                torch._foreach_add_([w.grad for w in weights], weights, alpha=2 * self.l2)
        else:
            out = self.model(xb)
            loss = self.loss_fn(out, yb)
            total = loss
            if self.l1 > 0:
                total = total + self.l1 * sum(w.abs().sum() for w in weights)
            if self.l2 > 0:
                total = total + self.l2 * sum(w.pow(2).sum() for w in weights)
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
        self.state.step += 1
        if self.first_step_time is None:
            self.first_step_time = time.time()
        for hook in self._hooks["on_after_backward"]:
            hook(self, self.state)
        if self.clip_grad_value is not None:
            nn.utils.clip_grad_value_(self.model.parameters(), self.clip_grad_value)
        if self.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm, foreach=True)
        self.optimizer.step()
        return loss, out

    def validate(self, state: TrainState) -> None:
        """The val pass: this epoch's entries in state.history and state.scalars."""
        val = self.evaluate(self.model, self.data.X_val, self.data.y_val, self.task)
        s = state.scalars
        s.update({"loss/val": float(val["loss"]), "lr": self.optimizer.param_groups[0]["lr"]})
        h = state.history
        h["train_loss"].append(s["loss/train"])
        h["val_loss"].append(s["loss/val"])
        h["lr"].append(s["lr"])
        if self.task.classification:
            s["accuracy/val"] = float(val["accuracy"])
            h["train_accuracy"].append(s["accuracy/train"])
            h["val_accuracy"].append(s["accuracy/val"])

    # -- set-up ----------------------------------------------------------------

    def _setup(self, model: nn.Module, data: Dataset) -> None:
        """Model and data on the device; loss, optimizer, scheduler, the shuffling RNG and the batch size."""
        from mlpkit.backprop import maybe_manual

        self.model, self.data, self.task = model.to(self.device), data, get_task(data.task)
        data.to(self.device)
        if self.class_weight == "balanced" and self.task.classification:
            self.weight = self.task.balanced_weights(data.y_train)
        self.loss_fn = self.task.loss(self.weight)
        if isinstance(self.optimizer_spec, torch.optim.Optimizer):
            self.optimizer = self.optimizer_spec  # it holds the model's parameters: keep them as they are
            self.manual = maybe_manual(model, self.task, self.manual_backprop, flat=False, weight=self.weight)
        else:
            self.manual = maybe_manual(model, self.task, self.manual_backprop, weight=self.weight)
            params = [self.manual.flat] if self.manual is not None else model.parameters()
            self.optimizer = make_optimizer(params, self.optimizer_spec, self.lr, **self.optimizer_params)
        self.scheduler = make_scheduler(self.optimizer, self.scheduler_name, max_epochs=self.max_epochs,
                                        **self.scheduler_params)
        self.penalized = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]  # L1/L2 act on these
        self.shuffle = torch.Generator(device=self.device).manual_seed(self.seed + 1)
        n = len(data.X_train)
        self.bs = n if self.batch_size in (0, None) or self.batch_size >= n else self.batch_size
        self.steps_per_epoch = math.ceil(n / self.bs)
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            # batch statistics need 2+ rows: refuse batches of 1, skip a last batch of 1 row
            if self.bs == 1:
                raise ConfigError("norm=batch needs at least 2 rows per batch (its statistics are over the batch); "
                                  "use trainer.batch_size >= 2, or norm=layer for stochastic gradient descent")
            if n % self.bs == 1:
                self.steps_per_epoch -= 1
                self.log("norm=batch: the last batch of each epoch would hold 1 row; that row is skipped "
                         "(a different one each epoch, as the rows are shuffled)")
        self.n_seen = min(n, self.steps_per_epoch * self.bs)  # rows per epoch that are trained on

    def _make_callbacks(self) -> List[Callback]:
        """The built-in callbacks and the user's, in the order they hear each hook."""
        from mlpkit.diagnostics import Diagnostics
        from mlpkit.tblog import TensorBoard

        ckpt_dir = self.run_dir / "checkpoints" if self.run_dir is not None else None
        # TensorBoard before the divergence guard: a diverged epoch's numbers are logged, then dropped
        callbacks: List[Callback] = [Diagnostics()]
        if self.logger is not None:
            callbacks.append(TensorBoard(self.logger, self.histogram_every, self.boundary_every))
        callbacks += [DivergenceGuard(), self.early_stopping or BestEpoch()]
        if self.scheduler is not None:
            callbacks.append(LRScheduler(self.scheduler))
        callbacks += self.user_callbacks  # before the checkpoint: their state_dict() is saved with the epoch
        self.checkpointer = ModelCheckpoint(ckpt_dir, self.checkpoint_every_s, save=_save)
        # EpochTime before the checkpoint: last.pt then holds this epoch's seconds with its other numbers
        callbacks += [EpochTime(), self.checkpointer, SignalHandler(), Progress(bar=self.progress)]
        if self.pruner is not None:
            callbacks.append(Pruning(self.pruner))
        return callbacks
