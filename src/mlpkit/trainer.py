"""The training loop: mini-batch / full-batch / stochastic gradient descent on in-memory tensors.

Per step it does only tensor work on the device (no `.item()`); losses, accuracies and
gradient norms accumulate there and are read once per epoch, or every
`log_every_n_steps` for the per-step curve. State is checkpointed at epoch
boundaries with every RNG, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

from mlpkit.checkpoint import load_checkpoint, save_checkpoint
from mlpkit.data import Dataset
from mlpkit.errors import ConfigError, RunError
from mlpkit.optim import make_optimizer, make_scheduler

log_fn = Callable[[str], None]


def _clone(obj: Any) -> Any:
    """A copy that shares nothing mutable with `obj`: tensors cloned, containers rebuilt."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return obj


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
        raise ConfigError(f"trainer.device={name!r} is not known; choose one of: auto, cpu, cuda, cuda:N")
    return torch.device(name)


class EarlyStopping:
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs."""

    def __init__(self, monitor: str = "val_loss", mode: str = "min", patience: int = 10,
                 min_delta: float = 0.0, restore_best: bool = True):
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.min_delta, self.restore_best = min_delta, restore_best
        self.wait = 0

    def update(self, improved: bool) -> bool:
        """Record one epoch; True when training should stop."""
        self.wait = 0 if improved else self.wait + 1
        return self.wait > self.patience

    def state_dict(self) -> Dict[str, Any]:
        return {"wait": self.wait}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.wait = int(state["wait"])


@dataclass
class FitResult:
    """What a run leaves in metrics.json."""

    status: str = "completed"  # completed | early_stopped | diverged | interrupted | pruned
    epochs_run: int = 0
    best_epoch: int = 0
    best_val_loss: float = math.inf
    best_val_accuracy: Optional[float] = None
    history: Dict[str, List[float]] = field(default_factory=dict)
    test: Dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    message: str = ""
    warnings: List[str] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)  # model-specific results (e.g. converged)

    def as_dict(self) -> Dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "extra"}
        out.update(self.extra)
        return out


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
                 class_weight: Optional[str] = None):
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
            raise ConfigError(f"trainer.class_weight={class_weight!r} is not known; choose one of: none, balanced")
        self.class_weight = None if class_weight == "none" else class_weight
        self.weight: Optional[torch.Tensor] = None  # per-class loss weights, set by fit()
        self.first_step_time: Optional[float] = None  # unix time of the first training step (start-up probe)
        self.stop_signal: Optional[int] = None
        self.extra_state: Dict[str, Any] = {}  # stored in every checkpoint (e.g. model arguments)

    # -- helpers ---------------------------------------------------------------

    def _loss_fn(self, task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        # binary: one logit + sigmoid + BCE; multiclass: softmax + CE; regression: linear + MSE.
        # With class weights, the mean over a batch is weighted: sum w_i l_i / sum w_i.
        w = self.weight
        if task == "multiclass":
            return nn.CrossEntropyLoss(weight=w)
        if task == "binary" and w is not None:
            def weighted_bce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                wi = w[y.long()]
                return (wi * nn.functional.binary_cross_entropy_with_logits(out, y, reduction="none")).sum() / wi.sum()
            return weighted_bce
        return {"binary": nn.BCEWithLogitsLoss(), "regression": nn.MSELoss()}[task]

    def _batch_weight(self, y: torch.Tensor, task: str) -> torch.Tensor | int:
        """The weight a batch's mean loss carries when batches are pooled: its rows, or their class weights."""
        if self.weight is None or task == "regression":
            return len(y)
        return self.weight[y.long()].sum()

    @staticmethod
    def balanced_weights(y: torch.Tensor, task: str) -> torch.Tensor:
        """n / (k * n_c) per class c of the labels y (scikit-learn's 'balanced')."""
        labels = y.reshape(-1).long()
        k = 2 if task == "binary" else int(labels.max()) + 1
        counts = torch.bincount(labels, minlength=k).to(torch.float32)
        return (len(labels) / (k * counts.clamp(min=1))).to(y.device)

    @staticmethod
    def _correct(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
        if task == "binary":
            return ((out > 0).to(y.dtype) == y).sum()
        return (out.argmax(1) == y).sum()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, X: torch.Tensor, y: torch.Tensor, task: str,
                 chunk: int = 65536) -> Dict[str, torch.Tensor]:
        """Mean loss (and correct count) over a split in eval mode, as device tensors."""
        was_training = model.training
        model.eval()
        loss_fn = self._loss_fn(task)
        loss = torch.zeros((), device=X.device)
        weight = torch.zeros((), device=X.device)
        correct = torch.zeros((), device=X.device, dtype=torch.long)
        for i in range(0, len(X), chunk):
            out = model(X[i:i + chunk])
            yb = y[i:i + chunk]
            wb = self._batch_weight(yb, task)
            loss += loss_fn(out, yb) * wb
            weight += wb
            if task != "regression":
                correct += self._correct(out, yb, task)
        model.train(was_training)
        n = max(1, len(X))
        return {"loss": loss / weight.clamp(min=1e-12), "accuracy": correct.float() / n}

    @torch.no_grad()
    def test_metrics(self, model: nn.Module, data: Dataset) -> Dict[str, Any]:
        """The test split's loss and mlpkit.metrics' scores (classification: accuracy, balanced
        accuracy, macro F1, ROC AUC, confusion matrix; regression: RMSE, MAE, R^2 in target units)."""
        from mlpkit import metrics

        m = self.evaluate(model, data.X_test, data.y_test, data.task)
        was_training = model.training
        model.eval()
        out = torch.cat([model(data.X_test[i:i + 65536]) for i in range(0, len(data.X_test), 65536)])
        model.train(was_training)
        out = out.float().cpu().numpy()
        y = data.y_test.cpu().numpy()
        if data.task != "regression":
            return {"loss": float(m["loss"]),
                    **metrics.classification_metrics(y, metrics.class_probabilities(out, data.task))}
        return {"loss": float(m["loss"]),
                **metrics.regression_metrics(y * data.y_std + data.y_mean, out * data.y_std + data.y_mean)}

    def _install_signals(self):
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, frame):
            if self.stop_signal is not None:  # a second Ctrl-C: stop at once
                raise KeyboardInterrupt
            self.stop_signal = signum
            self.log(f"{signal.Signals(signum).name} received: finishing this step, then saving and stopping "
                     "(press Ctrl-C again to abort without saving)")

        return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    # -- the loop --------------------------------------------------------------

    def fit(self, model: nn.Module, data: Dataset, resume_from: Optional[str | Path] = None) -> FitResult:
        """Train `model` on `data`; returns the FitResult (also after early stop, divergence, interrupt)."""
        from mlpkit.backprop import maybe_manual
        from mlpkit.diagnostics import ActivationProbe

        start_time = time.perf_counter()
        self._diag_seconds = 0.0  # time spent on periodic histograms and images
        dev = self.device
        model.to(dev)
        data.to(dev)
        task = data.task
        if self.class_weight == "balanced" and task != "regression":
            self.weight = self.balanced_weights(data.y_train, task)
        loss_fn = self._loss_fn(task)
        weighted = self.weight is not None
        if isinstance(self.optimizer_spec, torch.optim.Optimizer):
            opt = self.optimizer_spec  # it holds the model's parameters: keep them as they are
            manual = maybe_manual(model, task, self.manual_backprop, flat=False, weight=self.weight)
        else:
            manual = maybe_manual(model, task, self.manual_backprop, weight=self.weight)
            params = [manual.flat] if manual is not None else model.parameters()
            opt = make_optimizer(params, self.optimizer_spec, self.lr, **self.optimizer_params)
        sched = make_scheduler(opt, self.scheduler_name, max_epochs=self.max_epochs, **self.scheduler_params)
        plateau = isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        weights = [m.weight for m in linears]
        activation = getattr(model, "activation", None)
        probe = ActivationProbe(model, activation) if activation else None
        shuffle = torch.Generator(device=dev).manual_seed(self.seed + 1)
        es = self.early_stopping
        monitor = es.monitor if es else "val_loss"
        maximize = es is not None and es.mode == "max"

        n = len(data.X_train)
        bs = n if self.batch_size in (0, None) or self.batch_size >= n else self.batch_size
        steps_per_epoch = math.ceil(n / bs)
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            # batch statistics need 2+ rows: refuse batches of 1, skip a last batch of 1 row
            if bs == 1:
                raise ConfigError("norm=batch needs at least 2 rows per batch (its statistics are over the batch); "
                                  "use trainer.batch_size >= 2, or norm=layer for stochastic gradient descent")
            if n % bs == 1:
                steps_per_epoch -= 1
                self.log(f"norm=batch: the last batch of each epoch would hold 1 row; that row is skipped "
                         f"(a different one each epoch, as the rows are shuffled)")
        n_seen = min(n, steps_per_epoch * bs)  # rows per epoch that are trained on
        result = FitResult(history={"train_loss": [], "val_loss": [], "lr": []},
                           extra={"steps_per_epoch": steps_per_epoch, "batch_size": bs,
                                  "backprop": "manual" if manual is not None else "autograd"})
        if task != "regression":
            result.history.update(train_accuracy=[], val_accuracy=[])
        best_value = -math.inf if maximize else math.inf
        best_state: Optional[Dict[str, torch.Tensor]] = None
        epoch, step = 0, 0
        status = "completed"

        ckpt_dir = self.run_dir / "checkpoints" if self.run_dir is not None else None

        def snapshot(clone: bool = False) -> Dict[str, Any]:
            # last.pt carries the best weights too (they are never changed in place: no copy), so that
            # last.pt alone is consistent whatever happened to best.pt between two renames
            state = {
                "epoch": epoch, "global_step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                "early_stopping": es.state_dict() if es else None,
                "best": {"value": best_value, "epoch": result.best_epoch, "val_loss": result.best_val_loss,
                         "val_accuracy": result.best_val_accuracy},
                "history": result.history,
                "rng": {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state(),
                        "cuda": torch.cuda.get_rng_state_all() if dev.type == "cuda" else []},
                "early_stopped": status == "early_stopped",
                **self.extra_state,
            }
            return {**(_clone(state) if clone else state), "best_model": best_state}

        if resume_from is not None:
            state = load_checkpoint(resume_from, map_location=dev)
            try:
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                if sched is not None and state["scheduler"] is not None:
                    sched.load_state_dict(state["scheduler"])
                if es and state["early_stopping"]:
                    es.load_state_dict(state["early_stopping"])
                epoch, step = int(state["epoch"]), int(state["global_step"])
                best = state["best"]
                best_value, result.best_epoch = best["value"], best["epoch"]
                result.best_val_loss, result.best_val_accuracy = best["val_loss"], best["val_accuracy"]
                result.history = {k: list(v) for k, v in state["history"].items()}
                best_state = state.get("best_model")
                status = "early_stopped" if state.get("early_stopped") else status
                torch.set_rng_state(state["rng"]["torch"].cpu())
                shuffle.set_state(state["rng"]["shuffle"].cpu())  # generator states are CPU byte tensors
                if state["rng"]["cuda"]:
                    torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
            except (KeyError, RuntimeError, ValueError) as err:
                raise ConfigError(f"{resume_from} does not match this run's model or optimizer "
                                  f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
            if ckpt_dir is not None:
                best_state = self._check_best(ckpt_dir / "best.pt", best_state, result.best_epoch, dev)
            self.log(f"resumed from {resume_from} at epoch {epoch} (step {step})")
        elif ckpt_dir is not None:
            save_checkpoint(ckpt_dir / "last.pt", snapshot())  # epoch 0: an interrupt in epoch 1 can resume
        pending: Dict[str, Any] = {}  # checkpoints not yet on disk: name -> state
        last_write = time.perf_counter()

        save_error: Optional[str] = None  # a checkpoint that could not be written (a full disk)

        def write_pending() -> None:
            nonlocal last_write, save_error
            try:
                for name in sorted(pending):  # best.pt first: last.pt never names a best epoch not on disk
                    save_checkpoint(ckpt_dir / name, pending[name])
            except RunError as err:
                save_error = str(err)
            pending.clear()
            last_write = time.perf_counter()

        if self.logger is not None:
            self.logger.layout(task != "regression")
        previous_handlers = self._install_signals()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=self.max_epochs, initial=epoch, unit="epoch", dynamic_ncols=True, leave=True)
        n_grad_layers = len(linears)
        X, y = data.X_train, data.y_train
        try:
            while epoch < self.max_epochs and status == "completed":
                epoch_start = time.perf_counter()
                model.train()
                loss_sum = torch.zeros((), device=dev)
                weight_sum = torch.zeros((), device=dev)
                correct = torch.zeros((), device=dev, dtype=torch.long)
                grad_sum = torch.zeros(n_grad_layers, device=dev)
                grad_samples = 0
                # A new order each epoch; each batch gathers its rows (no shuffled copy of the data set)
                perm = torch.randperm(n, device=dev, generator=shuffle) if bs < n else None
                diverged_at = None
                for b in range(steps_per_epoch):
                    if perm is None:
                        xb, yb = X, y
                    else:
                        rows = perm[b * bs:(b + 1) * bs]
                        xb, yb = X.index_select(0, rows), y.index_select(0, rows)
                    if self.input_noise > 0:
                        xb = xb + self.input_noise * torch.randn_like(xb)
                    if manual is not None:  # chain rule by hand: same gradients, no graph
                        loss, out = manual.step(xb, yb)
                        if self.l1 > 0:
                            torch._foreach_add_([w.grad for w in weights], torch._foreach_sign(weights), alpha=self.l1)
                        if self.l2 > 0:
                            torch._foreach_add_([w.grad for w in weights], weights, alpha=2 * self.l2)
                    else:
                        out = model(xb)
                        loss = loss_fn(out, yb)
                        total = loss
                        if self.l1 > 0:
                            total = total + self.l1 * sum(w.abs().sum() for w in weights)
                        if self.l2 > 0:
                            total = total + self.l2 * sum(w.pow(2).sum() for w in weights)
                        opt.zero_grad(set_to_none=True)
                        total.backward()
                    step += 1
                    if self.first_step_time is None:
                        self.first_step_time = time.time()
                    if b == 0 or step % self.log_every == 0:
                        # Mean L2 norm of each layer's weight gradient, before clipping.
                        grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in weights]
                        grad_sum += torch.stack(torch._foreach_norm(grads))
                        grad_samples += 1
                    if self.clip_grad_value is not None:
                        nn.utils.clip_grad_value_(model.parameters(), self.clip_grad_value)
                    if self.clip_grad_norm is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), self.clip_grad_norm, foreach=True)
                    opt.step()
                    if weighted:  # class weights: batches pooled by their weight, not their rows
                        wb = self._batch_weight(yb, task)
                        loss_sum += loss.detach() * wb
                        weight_sum += wb
                    else:
                        loss_sum += loss.detach() * len(yb)
                    if task != "regression":
                        correct += self._correct(out.detach(), yb, task)
                    if step % self.log_every == 0 or step == 1:
                        value = float(loss.detach())
                        if not math.isfinite(value):
                            diverged_at = (value, step)
                            break
                        if self.logger is not None:
                            self.logger.scalar("loss/train_step", value, step)
                    if self.stop_signal is not None:
                        break

                if self.stop_signal is not None:
                    status = "interrupted"
                    result.message = (f"interrupted by {signal.Signals(self.stop_signal).name} in epoch {epoch + 1}; "
                                      f"last.pt holds epoch {epoch}; continue with resume=<run_dir>")
                    break
                train_loss = float(loss_sum / (weight_sum.clamp(min=1e-12) if weighted else n_seen))
                if diverged_at is None and not math.isfinite(train_loss):
                    diverged_at = (train_loss, step)
                if diverged_at is not None:
                    status = "diverged"
                    lr_now = opt.param_groups[0]["lr"]
                    result.message = (f"the training loss became {diverged_at[0]} in epoch {epoch + 1} "
                                      f"(detected at step {diverged_at[1]}); try a lower optimizer.lr "
                                      f"(now {lr_now:g}) or trainer.clip_grad_norm=1.0")
                    break

                epoch += 1
                if probe is not None:
                    probe.active = True
                val = self.evaluate(model, data.X_val, data.y_val, task)
                if probe is not None:
                    probe.active = False
                val_loss = float(val["loss"])
                lr_now = opt.param_groups[0]["lr"]
                h = result.history
                h["train_loss"].append(train_loss)
                h["val_loss"].append(val_loss)
                h["lr"].append(lr_now)
                scalars = {"loss/train": train_loss, "loss/val": val_loss, "lr": lr_now}
                if task != "regression":
                    train_acc, val_acc = float(correct) / n_seen, float(val["accuracy"])
                    h["train_accuracy"].append(train_acc)
                    h["val_accuracy"].append(val_acc)
                    scalars.update({"accuracy/train": train_acc, "accuracy/val": val_acc})
                if grad_samples:
                    norms = (grad_sum / grad_samples).tolist()
                    scalars.update({f"grads/layer_{i}": v for i, v in enumerate(norms)})
                    h.setdefault("grad_norm", []).append(norms)
                if probe is not None:
                    scalars.update(probe.read())
                if self.logger is not None:
                    self.logger.scalars(scalars, epoch)
                    # histograms and boundary images cost milliseconds each: a budget of 5% of the run
                    if self._diag_seconds <= 0.05 * (time.perf_counter() - start_time):
                        t0 = time.perf_counter()
                        self._periodic_logs(model, data, epoch, weights)
                        self._diag_seconds += time.perf_counter() - t0

                if not math.isfinite(val_loss):
                    status = "diverged"
                    result.message = (f"the validation loss became {val_loss} in epoch {epoch} (epoch {epoch - 1} "
                                      f"is the last good one); try a lower optimizer.lr (now {lr_now:g}) or "
                                      "trainer.clip_grad_norm=1.0")
                    epoch -= 1  # this epoch's weights are not kept
                    for key in ("train_loss", "val_loss", "lr", "train_accuracy", "val_accuracy", "grad_norm"):
                        if key in h:
                            h[key].pop()
                    break

                current = {"val_loss": val_loss, "train_loss": train_loss,
                           "val_accuracy": scalars.get("accuracy/val", math.nan)}[monitor]
                delta = es.min_delta if es else 0.0
                improved = (current > best_value + delta) if maximize else (current < best_value - delta)
                if improved:
                    best_value, result.best_epoch = current, epoch
                    result.best_val_loss = val_loss
                    result.best_val_accuracy = scalars.get("accuracy/val")
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    if ckpt_dir is not None:
                        pending["best.pt"] = {"epoch": epoch, "model": best_state, **self.extra_state}
                if sched is not None:
                    sched.step(val_loss) if plateau else sched.step()
                stop = es.update(improved) if es else False
                if stop:
                    status = "early_stopped"  # recorded in last.pt: a resumed run does not train on
                if ckpt_dir is not None:
                    if time.perf_counter() - last_write >= self.checkpoint_every_s:
                        pending["last.pt"] = snapshot()  # written now: no copy needed
                        write_pending()
                        if save_error is not None:
                            status = "interrupted"
                            break
                    else:  # kept in memory (cloned) until the next write
                        pending["last.pt"] = snapshot(clone=True)
                if bar is not None:
                    post = {"train": f"{train_loss:.4f}", "val": f"{val_loss:.4f}"}
                    if task != "regression":
                        post["val_acc"] = f"{scalars['accuracy/val']:.3f}"
                    bar.set_postfix(post, refresh=False)
                    bar.update(1)
                elif epoch == 1 or epoch % max(1, self.max_epochs // 10) == 0 or epoch == self.max_epochs:
                    acc = f"  val acc {scalars['accuracy/val']:.4f}" if task != "regression" else ""
                    self.log(f"epoch {epoch:>4}/{self.max_epochs}  train loss {train_loss:.4f}  "
                             f"val loss {val_loss:.4f}{acc}")
                # the whole epoch: training, val pass, logging and checkpoint
                h.setdefault("epoch_seconds", []).append(time.perf_counter() - epoch_start)
                if self.logger is not None:
                    self.logger.scalar("time/epoch_seconds", h["epoch_seconds"][-1], epoch)
                if stop:
                    status = "early_stopped"
                    result.message = (f"early stop after epoch {epoch}: {monitor} did not improve for "
                                      f"{es.patience} epochs (best {best_value:.4f} at epoch {result.best_epoch})")
                    break
                if self.pruner is not None and self.pruner.should_prune(epoch, h):
                    status = "pruned"
                    result.message = self.pruner.message
                    break
        finally:
            if bar is not None:
                bar.close()
            for s, h in previous_handlers.items():
                signal.signal(s, h)
            if probe is not None:
                probe.remove()

        if ckpt_dir is not None and save_error is None:
            write_pending()  # the last finished epoch, also after an interrupt or divergence
        if save_error is not None:
            status = "interrupted"
            result.message = f"{save_error}; continue with resume=<run_dir> once there is room"
        result.status = status
        result.epochs_run = epoch
        keep_best = best_state is not None and (status == "diverged" or (es is not None and es.restore_best))
        if keep_best:
            model.load_state_dict(best_state)
        if status != "interrupted":
            if status != "diverged" or keep_best:
                result.test = self.test_metrics(model, data)
            if self.logger is not None:
                self._periodic_logs(model, data, epoch, weights, final=True)
        result.seconds = time.perf_counter() - start_time
        return result

    def _check_best(self, path: Path, best_state: Optional[Dict[str, torch.Tensor]], best_epoch: int,
                    device: torch.device) -> Optional[Dict[str, torch.Tensor]]:
        """The best weights of a resumed run: last.pt's own copy, written back to best.pt when that is
        missing, damaged or of another epoch (a kill between the two renames); from best.pt only for a
        last.pt of an older format, and then only when its epoch is the one last.pt names."""
        try:
            on_disk = load_checkpoint(path, map_location=device) if path.is_file() else None
        except ConfigError as err:
            self.log(f"note: {err}; it is written again from last.pt")
            on_disk = None
        if best_state is None:
            return on_disk["model"] if on_disk is not None and on_disk.get("epoch") == best_epoch else None
        if on_disk is None or on_disk.get("epoch") != best_epoch:
            save_checkpoint(path, {"epoch": best_epoch, "model": best_state, **self.extra_state})
        return best_state

    def _periodic_logs(self, model: nn.Module, data: Dataset, epoch: int, weights, final: bool = False) -> None:
        """Histograms every `histogram_every_n_epochs`; the decision boundary (2-D inputs) every
        `boundary_every_n_epochs` and at the end."""
        if self.histogram_every and (epoch % self.histogram_every == 0) != final:
            for i, w in enumerate(weights):  # non-finite values (a diverged run) cannot be binned
                if torch.isfinite(w).all():
                    self.logger.histogram(f"weights/layer_{i}", w.detach(), epoch)
                if w.grad is not None and torch.isfinite(w.grad).all():
                    self.logger.histogram(f"grad_hist/layer_{i}", w.grad.detach(), epoch)
        periodic = bool(self.boundary_every) and epoch % self.boundary_every == 0
        if data.in_dim == 2 and periodic != final:
            from mlpkit.diagnostics import decision_boundary_figure

            fig = decision_boundary_figure(model, data.X_train, data.y_train, data.task,
                                           title=f"{data.name}, epoch {epoch}")
            self.logger.figure("images/decision_boundary", fig, epoch)
