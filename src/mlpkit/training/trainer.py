"""The training loop: mini-batch / full-batch / stochastic gradient descent on in-memory tensors.

`Trainer.fit` runs the epochs and tells its callbacks (mlpkit.training.callbacks) what happened; each concern
(checkpoints and resume, early stopping, divergence, signals, TensorBoard, diagnostics, progress,
the LR schedule, pruning) is one callback. What a step does to the weights is a StepRule's:
GradientDescent (the default) or a model family's own (mlpkit.models.perceptron's rule). Per step the loop
does only tensor work on the device (no `.item()`); losses and accuracies accumulate there and are
read once per epoch, or every `log_every_n_steps` for the per-step curve. What would differ on several
processes is the Strategy's (mlpkit.training.strategy).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from mlpkit.training.callbacks import (BestEpoch, Callback, DivergenceGuard, EarlyStopping, EpochTime, LRScheduler, Progress,
                              Pruning, SignalHandler, callback_name, with_callbacks)
from mlpkit.data import Dataset
from mlpkit.checks import check_class_weight, check_device_name, check_needs_classes, check_range
from mlpkit.errors import ConfigError
from mlpkit.training.optim import make_optimizer, make_scheduler
from mlpkit.schema import OptimizerConfig as _O
from mlpkit.schema import RegularizationConfig as _R
from mlpkit.schema import SchedulerConfig, TrainConfig
from mlpkit.schema import TrainerConfig as _T
from mlpkit.training.state import FitResult, TrainState
from mlpkit.status import RunStatus
from mlpkit.training.strategy import ProcessLost, Strategy
from mlpkit.tasks import Task, get_task

__all__ = ["Trainer", "StepRule", "GradientDescent", "default_callbacks", "EarlyStopping", "FitResult", "TrainState",
           "Callback", "resolve_device"]

log_fn = Callable[[str], None]

# once a callback aborts the run in these, the later callbacks skip that epoch (per-step hooks: see train_epoch)
_EPOCH_HOOKS = ("on_train_epoch_end", "on_epoch_end")


def resolve_device(name: str = "auto") -> torch.device:
    """auto -> cuda when present, else cpu; cuda without a GPU is a ConfigError."""
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.device={name} but no CUDA device is available; "
                              "use trainer.device=cpu or trainer.device=auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"trainer.device={name} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device(name)


def default_callbacks() -> List[Callback]:
    """The built-in callbacks, in the order they hear each hook. Each takes what it needs from the
    trainer when a fit begins and does nothing without it: TensorBoard without a logger, LRScheduler
    without a scheduler, ModelCheckpoint without a run_dir, Pruning without a pruner."""
    from mlpkit.training.checkpoint import ModelCheckpoint
    from mlpkit.training.diagnostics import Diagnostics
    from mlpkit.training.tblog import TensorBoard

    # TensorBoard before the divergence guard: a diverged epoch's numbers are logged, then dropped;
    # EpochTime before the checkpoint: last.pt then holds this epoch's seconds with its other numbers;
    # the user's callbacks join before the checkpoint, which saves their state_dict() with the epoch
    return [Diagnostics(), TensorBoard(), DivergenceGuard(), BestEpoch(), LRScheduler(), EpochTime(),
            ModelCheckpoint(), SignalHandler(), Progress(), Pruning()]


class StepRule:
    """What a training step does to the weights; the Trainer draws the batches and calls `step`.

    GradientDescent is the default. A model family with another rule (mlpkit.models.perceptron) brings its
    own: a rule without a per-step loss (`running_loss = False`) gives the epoch's train numbers in
    `train_scalars`, measured after the pass; `callbacks()` are callbacks that come with the rule.
    """

    device: Optional[str] = None  # a device the rule needs, whatever Trainer(device=) says
    rows_per_step: Optional[int] = None  # a batch size the rule needs (None: Trainer(batch_size=))
    running_loss: bool = True  # step() returns its batch's loss, averaged into the epoch's loss/train

    def setup(self, trainer: "Trainer") -> None:
        """Once the model and data are on the device: set trainer.optimizer and trainer.scheduler."""
        trainer.optimizer = trainer.scheduler = None

    def step(self, trainer: "Trainer", xb: torch.Tensor, yb: torch.Tensor
             ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Change the weights for one batch; (its mean loss, the model's outputs) as device tensors, or Nones."""
        raise NotImplementedError

    def evaluate(self, trainer: "Trainer", model: nn.Module, X: torch.Tensor, y: torch.Tensor, task: Task,
                 chunk: int = 65536) -> Dict[str, Any]:
        """A split's mean `loss` and its `accuracy` (classification), as device tensors or floats."""
        raise NotImplementedError

    def evaluate_outputs(self, trainer: "Trainer", model: nn.Module, X: Any, y: Any, task: Task,
                         chunk: int = 65536) -> Tuple[Dict[str, Any], Any, Any]:
        """evaluate()'s numbers with the split's outputs (float32) and targets as numpy arrays, in the
        order this process read its rows. A rule whose evaluate() passes over the split overrides this
        to take both from one pass (a streamed split is then read once); this default makes two."""
        numbers = self.evaluate(trainer, model, X, y, task, chunk)
        return (numbers, *model_outputs(model, split_batches(X, y, chunk, trainer.strategy)))

    def train_scalars(self, trainer: "Trainer", running: Dict[str, float]) -> Dict[str, float]:
        """The epoch's train numbers by TensorBoard tag; `running`: the means over its steps."""
        return running

    def current_lr(self, trainer: "Trainer") -> float:
        """The step size now (the `lr` scalar)."""
        return trainer.optimizer.param_groups[0]["lr"]

    def history_tags(self, task: Task) -> Dict[str, str]:
        """The run's history: key -> the scalar tag appended to it after each epoch."""
        tags = {"train_loss": "loss/train", "val_loss": "loss/val", "lr": "lr"}
        if task.classification:
            tags.update(train_accuracy="accuracy/train", val_accuracy="accuracy/val")
        return tags

    def extra(self, trainer: "Trainer") -> Dict[str, Any]:
        """What metrics.json says about the steps."""
        return {}

    def callbacks(self) -> List[Callback]:
        return []


class GradientDescent(StepRule):
    """The task's loss, gradients by the chain rule (mlpkit.models.backprop, plain MLPs) or autograd, the L1/L2
    penalties, the strategy's gradient reduction, clipping and the optimizer's step, with the trainer's
    optimizer, scheduler, penalties and clipping.

    A model whose train-mode output is (N, k, out) holds k ensemble members (mlpkit.models.tabm): its loss is
    the mean of the members' losses, and its outputs for the epoch's accuracy the task's mean of members."""

    def setup(self, trainer: "Trainer") -> None:
        from mlpkit.models.backprop import maybe_manual

        t, model = trainer, trainer.model
        self.loss_fn = t.task.loss(t.weight, t.label_smoothing)
        manual = t.manual_backprop and not t.label_smoothing  # the chain rule's output gradient is the plain loss's
        if isinstance(t.optimizer_spec, torch.optim.Optimizer):
            t.optimizer = t.optimizer_spec  # it holds the model's parameters: keep them as they are
            self.manual = maybe_manual(model, t.task, manual, flat=False, weight=t.weight)
        else:
            self.manual = maybe_manual(model, t.task, manual, weight=t.weight)
            params = [self.manual.flat] if self.manual is not None else model.parameters()
            t.optimizer = make_optimizer(params, t.optimizer_spec, t.lr, **t.optimizer_params)
        t.scheduler = make_scheduler(t.optimizer, t.scheduler_name, max_epochs=t.max_epochs, **t.scheduler_params)
        self.penalized = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]  # L1/L2 act on these
        self.params = [p for group in t.optimizer.param_groups for p in group["params"]]

    def step(self, trainer: "Trainer", xb: torch.Tensor, yb: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns (the batch's mean loss without penalties, the model's outputs)."""
        t, weights = trainer, self.penalized
        if self.manual is not None:  # chain rule by hand: same gradients, no graph
            loss, out = self.manual.step(xb, yb)
            if t.l1 > 0:
                torch._foreach_add_([w.grad for w in weights], torch._foreach_sign(weights), alpha=t.l1)
            if t.l2 > 0:
                torch._foreach_add_([w.grad for w in weights], weights, alpha=2 * t.l2)
        else:
            out = t.model(xb)
            loss, out = self.batch_loss(t.task, out, yb)
            total = loss
            if t.l1 > 0:
                total = total + t.l1 * sum(w.abs().sum() for w in weights)
            if t.l2 > 0:
                total = total + t.l2 * sum(w.pow(2).sum() for w in weights)
            t.optimizer.zero_grad(set_to_none=True)
            total.backward()
        t.after_backward(self.params)
        if t.clip_grad_value is not None:
            nn.utils.clip_grad_value_(t.model.parameters(), t.clip_grad_value)
        if t.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(t.model.parameters(), t.clip_grad_norm, foreach=True)
        t.optimizer.step()
        return loss, out

    def batch_loss(self, task: Task, out: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(the batch's training loss, the outputs to count right answers on) of the model's outputs."""
        if out.dim() == 3:  # (N, k, out): k members, each trained on the batch; their mean loss
            k = out.shape[1]
            loss = self.loss_fn(out.flatten(0, 1), y.repeat_interleave(k, 0))
            return loss, task.mean_of_members(out.detach())
        return self.loss_fn(out, y), out

    def evaluate(self, trainer: "Trainer", model: nn.Module, X: torch.Tensor, y: torch.Tensor, task: Task,
                 chunk: int = 65536) -> Dict[str, torch.Tensor]:
        """Mean loss (class-weighted as in training, without label smoothing: the val loss stays the task's
        own measure) and share of right answers, in eval mode."""
        return self._evaluate(trainer, model, X, y, task, chunk, None)

    def evaluate_outputs(self, trainer: "Trainer", model: nn.Module, X: Any, y: Any, task: Task,
                         chunk: int = 65536) -> Tuple[Dict[str, Any], Any, Any]:
        kept: List[Tuple[torch.Tensor, torch.Tensor]] = []
        numbers = self._evaluate(trainer, model, X, y, task, chunk, kept)
        return (numbers, *_numpy_outputs(kept))

    @torch.no_grad()
    def _evaluate(self, trainer: "Trainer", model: nn.Module, X: Any, y: Any, task: Task, chunk: int,
                  kept: Optional[List[Tuple[torch.Tensor, torch.Tensor]]]) -> Dict[str, torch.Tensor]:
        """evaluate(); each batch's (outputs, targets) appended to `kept` unless it is None."""
        was_training = model.training
        model.eval()
        loss_fn = task.loss(trainer.weight)
        dev = X.device if torch.is_tensor(X) else trainer.device
        loss = torch.zeros((), device=dev)
        weight = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        for xb, yb in split_batches(X, y, chunk, trainer.strategy):
            out = model(xb)
            if kept is not None:
                kept.append((out, yb))
            wb = task.batch_weight(yb, trainer.weight)
            loss += loss_fn(out, yb) * wb
            weight += wb
            if task.classification:
                correct += task.correct(out, yb)
        if trainer.strategy.reads_share(X):  # each process read its share of a streamed split
            loss, weight, correct = trainer.strategy.sum(loss, weight, correct)
        model.train(was_training)
        n = max(1, len(X))
        return {"loss": loss / weight.clamp(min=1e-12), "accuracy": correct.float() / n}

    def extra(self, trainer: "Trainer") -> Dict[str, Any]:
        return {"steps_per_epoch": trainer.steps_per_epoch, "batch_size": trainer.bs,
                "backprop": "manual" if self.manual is not None else "autograd"}


@torch.no_grad()
def model_outputs(model: nn.Module, batches: Iterable[Tuple[torch.Tensor, torch.Tensor]]) -> Tuple[Any, Any]:
    """The model's outputs (float32) and the targets of `batches`, in eval mode, as numpy arrays."""
    was_training = model.training
    model.eval()
    kept = [(model(xb), yb) for xb, yb in batches]
    model.train(was_training)
    return _numpy_outputs(kept)


def _numpy_outputs(kept: List[Tuple[torch.Tensor, torch.Tensor]]) -> Tuple[Any, Any]:
    return (torch.cat([out for out, _ in kept]).float().cpu().numpy(),
            torch.cat([yb for _, yb in kept]).cpu().numpy())


def split_batches(X: Any, y: Any, chunk: int, strategy: Optional[Strategy] = None
                  ) -> Iterable[Tuple[torch.Tensor, torch.Tensor]]:
    """A split's (inputs, targets) in chunks of rows: slices of in-memory tensors, or the batches of a
    split read from a file (mlpkit.data.stream.StreamSplit, whose batches carry both); with a strategy
    whose processes read shares of it (Strategy.reads_share), this process's share."""
    if torch.is_tensor(X):
        for i in range(0, len(X), chunk):
            yield X[i:i + chunk], y[i:i + chunk]
    elif strategy is not None and strategy.reads_share(X):
        yield from strategy.eval_batches(X, chunk)
    else:
        yield from X.batches(chunk)


class Trainer:
    """Fits an nn.Module on a `Dataset`. Usable without Hydra:

        data = load_dataset("moons", noise=0.3)
        model = MLP(data.in_dim, [32, 32], data.out_dim, activation="relu")
        result = Trainer(optimizer="adam", lr=1e-2, max_epochs=50).fit(model, data)

    The defaults are the config schema's (mlpkit.schema), as `python train.py` has them.

    Args:
        optimizer: a name from mlpkit.training.optim.OPTIMIZERS, or a ready torch optimizer.
        lr: the step size; None = the optimizer's own default in the schema (adam's 1e-3, sgd's 0.05, ...).
        optimizer_params: that optimizer's own settings (momentum, betas, ...); unset ones as in the schema.
        batch_size: rows per step; 0 = the whole train split (batch GD), 1 = stochastic GD.
        l1, l2: coefficients of sum|w| and sum w^2 over the linear weights, added to the loss.
        input_noise: std of Gaussian noise added to each training batch's inputs.
        class_weight: "balanced" weights each class's loss by n / (k * n_class) of the train split
            (a weighted mean over the batch, as torch's CrossEntropyLoss takes it); None: all alike.
        label_smoothing: e in [0, 1): classification trains on targets (1 - e) one-hot + e / classes
            (torch's cross_entropy label_smoothing; binary: y (1 - e) + e / 2). Val and test losses are unsmoothed.
        step_rule: what a step does to the weights (default: GradientDescent with the settings above).
        strategy: what differs on several processes (default: one process, mlpkit.training.strategy.Strategy;
            DDPStrategy() under torchrun or srun).
        callbacks: mlpkit.Callback objects. One named as a built-in replaces it (`EarlyStopping(...)`
            replaces the BestEpoch, `TensorBoard(histogram_every=0)` the default TensorBoard, see
            default_callbacks()); the others hear each hook after the built-in callbacks that judge an
            epoch (divergence, best epoch, early stopping, LR schedule) and before the checkpoint,
            which saves their state_dict() with that epoch. `trainer.callbacks` is the resulting list.
        run_dir: where checkpoints go (checkpoints/last.pt, best.pt); None = no checkpoints.
        logger: a TensorBoardLogger, or None.
        log: where the run's log lines go (e.g. logging's info).
        handle_signals: install SIGINT/SIGTERM handlers for the fit (train.py installs its own).
    """

    def __init__(self, *, optimizer: str | torch.optim.Optimizer = _O.name, lr: Optional[float] = None,
                 optimizer_params: Optional[dict] = None, scheduler: str = SchedulerConfig.name,
                 scheduler_params: Optional[dict] = None, max_epochs: int = _T.max_epochs,
                 max_steps: Optional[int] = _T.max_steps,
                 batch_size: int = _T.batch_size, l1: float = _R.l1, l2: float = _R.l2,
                 input_noise: float = _R.input_noise, label_smoothing: float = _R.label_smoothing,
                 clip_grad_norm: Optional[float] = _T.clip_grad_norm,
                 clip_grad_value: Optional[float] = _T.clip_grad_value, class_weight: Optional[str] = _T.class_weight,
                 manual_backprop: bool = _T.manual_backprop, device: str = _T.device, seed: int = TrainConfig.seed,
                 log_every_n_steps: int = _T.log_every_n_steps, step_rule: Optional[StepRule] = None,
                 strategy: Optional[Strategy] = None, callbacks: Sequence[Callback] = (),
                 run_dir: Optional[str | Path] = None, logger: Any = None, log: Optional[log_fn] = None,
                 handle_signals: bool = True):
        self.optimizer_spec, self.lr = optimizer, lr
        self.optimizer_params = dict(optimizer_params or {})
        self.scheduler_name, self.scheduler_params = scheduler, dict(scheduler_params or {})
        self.max_epochs, self.batch_size = max_epochs, batch_size
        self.epochs_asked, self.max_steps = max_epochs, max_steps  # max_epochs: the run's own, set by fit()
        self.l1, self.l2, self.input_noise = l1, l2, input_noise
        self.label_smoothing = float(label_smoothing)
        self.clip_grad_norm, self.clip_grad_value = clip_grad_norm, clip_grad_value
        check_class_weight(class_weight)
        for group, key, value in (("trainer", "max_epochs", max_epochs), ("trainer", "max_steps", max_steps),
                                  ("trainer", "batch_size", batch_size),
                                  ("regularization", "l1", l1), ("regularization", "l2", l2),
                                  ("regularization", "input_noise", input_noise),
                                  ("regularization", "label_smoothing", label_smoothing),
                                  ("trainer", "clip_grad_norm", clip_grad_norm),
                                  ("trainer", "clip_grad_value", clip_grad_value),
                                  ("trainer", "log_every_n_steps", log_every_n_steps)):
            check_range(group, key, value)
        self.class_weight = None if class_weight == "none" else class_weight
        self.manual_backprop = manual_backprop
        self.device = resolve_device(device)
        self.seed = seed
        self.log_every = max(1, log_every_n_steps)
        self.step_rule = step_rule or GradientDescent()
        self.strategy = strategy or Strategy()
        self.callbacks: List[Callback] = with_callbacks(default_callbacks(),
                                                        [*self.step_rule.callbacks(), *callbacks])
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.logger = logger
        self.log = log or (lambda msg: None)
        self.handle_signals = handle_signals
        self.optimizer: Optional[torch.optim.Optimizer] = None  # set by the step rule when fit() begins
        self.scheduler: Any = None
        self.weight: Optional[torch.Tensor] = None  # per-class loss weights, set by fit()
        self.first_step_time: Optional[float] = None  # unix time of the first training step (start-up probe)
        self.stop_signal: Optional[int] = None
        self.extra_state: Dict[str, Any] = {}  # stored in every checkpoint (e.g. model arguments)

    def callback(self, name: str) -> Optional[Callback]:
        """The callback of that name, or None."""
        return next((cb for cb in self.callbacks if callback_name(cb) == name), None)

    @property
    def best(self) -> BestEpoch:
        """The best epoch (the callback named best_epoch: a BestEpoch or an EarlyStopping)."""
        return self.callback("best_epoch")

    # -- helpers ---------------------------------------------------------------

    def evaluate(self, model: nn.Module, X: torch.Tensor, y: torch.Tensor, task: str,
                 chunk: int = 65536) -> Dict[str, Any]:
        """Mean loss (and accuracy) over a split, by the step rule's measure (the task's loss for
        gradient descent), as device tensors."""
        return self.step_rule.evaluate(self, model, X, y, get_task(task), chunk)

    @torch.no_grad()
    def test_metrics(self, model: nn.Module, data: Dataset) -> Dict[str, Any]:
        """The test split's loss and mlpkit.metrics' scores (classification: accuracy, balanced
        accuracy, macro F1, ROC AUC, confusion matrix; regression: RMSE, MAE, R^2 in target units)."""
        task = get_task(data.task)
        m, out, y = self.step_rule.evaluate_outputs(self, model, data.X_test, data.y_test, task)  # one pass
        if self.strategy.reads_share(data.X_test):  # every process's rows, back in file order
            out, y = (data.X_test.merge(self.strategy.gather(a)) for a in (out, y))
        y = task.target_units(y, data.y_mean, data.y_std)
        return {"loss": float(m["loss"]), **task.metrics(y, out, data.y_mean, data.y_std)}

    # -- the loop --------------------------------------------------------------

    def fit(self, model: nn.Module, data: Dataset, resume_from: Optional[str | Path] = None) -> FitResult:
        """Train `model` on `data`; returns the FitResult (also after early stop, divergence, interrupt)."""
        start = time.perf_counter()
        self._setup(model, data)
        for cb in self.callbacks:
            cb.setup(self)
        if not isinstance(self.best, BestEpoch):
            raise ValueError("the loop needs a callback named 'best_epoch' (a BestEpoch or an EarlyStopping)")
        self._hooks = {name: [getattr(cb, name) for cb in self.callbacks
                              if getattr(type(cb), name) is not getattr(Callback, name)]
                       for name in vars(Callback) if name.startswith(("on_", "teardown"))}
        self.history_tags = self.step_rule.history_tags(self.task)
        state = self.state = TrainState(max_epochs=self.max_epochs, history={k: [] for k in self.history_tags})
        try:
            if resume_from is not None:  # first: every callback starts from the restored state
                checkpoint = self.callback("checkpoint")
                if checkpoint is None:
                    raise ValueError("resume_from needs the 'checkpoint' callback (mlpkit.training.checkpoint.ModelCheckpoint)")
                checkpoint.resume(self, state, resume_from)
            self._notify("on_fit_start")
            try:
                self._epochs(state)
            except ProcessLost as err:  # another process of the job is gone: this one stops, resumable
                state.stop(RunStatus.INTERRUPTED, f"{err}; last.pt holds epoch {state.epoch}; continue with "
                           "resume=<run_dir>")
            if state.running:
                state.status = RunStatus.COMPLETED
            self._notify("on_train_end")
            self.strategy.barrier()  # the writer's files are on disk
        finally:
            self._notify("teardown")
        test = {}
        kept = state.status != RunStatus.DIVERGED or self.best.weights is not None  # a diverged run's good epoch
        if state.status != RunStatus.INTERRUPTED and kept:
            test = self.test_metrics(model, data)  # of the weights kept (the best epoch's, where restored)
        self._notify("on_fit_end")
        extra = {**self.step_rule.extra(self), **state.extra}
        if self.max_steps_epochs is not None:  # what resume= reads: the epochs the step budget allows
            extra["max_steps_epochs"] = self.max_steps_epochs
        return FitResult.from_state(state, self.best, test=test, extra=extra, seconds=time.perf_counter() - start)

    def _epochs(self, state: TrainState) -> None:
        """Train and validate epoch after epoch until the last one or a stop (agreed by every process)."""
        while state.running and state.epoch < self.max_epochs:
            state.epoch_start = time.perf_counter()
            self.train_epoch(state)
            if not state.aborted:
                self._notify("on_train_epoch_end")
            self.strategy.agree(self, state)
            if state.aborted:
                break
            state.epoch += 1
            self.validate(state)
            self._notify("on_epoch_end")
            self.strategy.agree(self, state)

    def _notify(self, hook: str, *args: Any) -> None:
        for fn in self._hooks[hook]:
            fn(self, self.state, *args)
            if self.state.aborted and hook in _EPOCH_HOOKS:
                return

    def train_epoch(self, state: TrainState) -> None:
        """One pass over the train split in a new order; leaves loss/train (and accuracy/train) in state.scalars."""
        self.model.train()
        X, y, n, bs, task = self.data.X_train, self.data.y_train, len(self.data.X_train), self.bs, self.task
        dev, weighted, running = self.device, self.weight is not None, self.step_rule.running_loss
        streamed = not torch.is_tensor(X)  # read from a file batch by batch: right answers counted per batch
        correct = torch.zeros((), device=dev, dtype=torch.long)
        loss_sum = torch.zeros((), device=dev)
        weight_sum = torch.zeros((), device=dev)
        # each batch's predictions are copied into one buffer and compared with the labels once per
        # epoch: a copy per step instead of four small reductions, which on small batches cost as
        # much as the step's arithmetic (binary: the logits; multiclass: the predicted class)
        kept = task.prediction_buffer(self.n_seen, dev) if running and not streamed else None
        # each batch gathers its rows (no shuffled copy of the data set)
        perm = torch.randperm(n, device=dev, generator=self.shuffle) if bs < n and not streamed else None
        step_hooks, strategy = self._hooks["on_step_end"], self.strategy
        if streamed:
            strategy.epoch_rows(self, state.epoch)
        for b, (part, xb, yb) in enumerate(self._train_batches(X, y, perm)):
            if self.input_noise > 0:
                xb = xb + self.input_noise * torch.randn_like(xb)
            state.batch = b
            loss, out = self.train_step(xb, yb)
            if running:
                if len(yb):  # (a process's part of a last batch smaller than the job can be empty)
                    if weighted:  # class weights: batches pooled by their weight, not their rows
                        wb = task.batch_weight(yb, self.weight)
                        loss_sum += loss.detach() * wb
                        weight_sum += wb
                    else:
                        loss_sum.add_(loss.detach(), alpha=len(yb))
                    if kept is not None:
                        task.keep(kept[part], out)
                    elif streamed and task.classification:
                        correct += task.correct(out.detach(), yb)
                logged = state.step % self.log_every == 0 or state.step == 1
                # the only host sync of a step (the whole batch's loss)
                state.step_loss = float(strategy.batch_loss(loss.detach())) if logged else None
            for hook in step_hooks:  # all of them: a signal's `interrupted` wins over `diverged`, as it did
                hook(self, state, loss)
            strategy.agree(self, state, step=True)
            if state.aborted:
                return
        scalars = {}
        if running:
            loss_sum, weight_sum = strategy.sum(loss_sum, weight_sum)
            total = weight_sum.clamp(min=1e-12) if weighted else self.n_seen
            scalars["loss/train"] = float(loss_sum / total)
        if kept is not None:
            seen = y[:self.n_seen] if perm is None else y.index_select(0, perm[:self.n_seen])
            own = strategy.own_positions()
            correct, = strategy.sum(task.correct(kept[own], seen[own]))
            scalars["accuracy/train"] = float(correct) / self.n_seen
        elif streamed and running and task.classification:
            correct, = strategy.sum(correct)
            scalars["accuracy/train"] = float(correct) / self.n_seen
        state.scalars = self.step_rule.train_scalars(self, scalars)

    def _train_batches(self, X: Any, y: Any, perm: Optional[torch.Tensor]
                       ) -> Iterable[Tuple[Any, torch.Tensor, torch.Tensor]]:
        """The epoch's batches as (this process's positions in the epoch's order, inputs, targets): this
        process's part (mlpkit.training.strategy) of the rows of `perm` in turn (all rows at once without
        one), or a streamed split's own batches, in an order drawn from the seed and the epoch
        (mlpkit.data.stream; positions None)."""
        if not torch.is_tensor(X):
            for xb, yb in self.strategy.stream_batches(self, X, self.state.epoch):
                yield None, xb, yb
            return
        n, bs = len(X), self.bs
        for b in range(self.steps_per_epoch):
            part, rows = self.strategy.batch_rows(perm, b * bs, min(n, (b + 1) * bs))
            if isinstance(rows, slice):
                yield part, X[rows], y[rows]
            else:
                yield part, X.index_select(0, rows), y.index_select(0, rows)

    def train_step(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple:
        """One step of the step rule. Returns (the batch's mean loss without penalties, the model's
        outputs), as device tensors (Nones under a rule without them)."""
        self.state.step += 1
        loss, out = self.step_rule.step(self, xb, yb)
        if self.first_step_time is None:
            self.first_step_time = time.time()
        return loss, out

    def after_backward(self, parameters: Iterable[torch.Tensor]) -> None:
        """Called by a gradient rule once `.grad` holds the batch's gradients: the strategy reduces
        them over processes, then the on_after_backward hooks read them."""
        self.strategy.reduce_gradients(parameters)
        for hook in self._hooks["on_after_backward"]:
            hook(self, self.state)

    def validate(self, state: TrainState) -> None:
        """The val pass: this epoch's entries in state.history and state.scalars."""
        val = self.evaluate(self.model, self.data.X_val, self.data.y_val, self.task)
        s = state.scalars
        s.update({"loss/val": float(val["loss"]), "lr": self.step_rule.current_lr(self)})
        if self.task.classification:
            s["accuracy/val"] = float(val["accuracy"])
        for key, tag in self.history_tags.items():
            state.history[key].append(s[tag])

    # -- set-up ----------------------------------------------------------------

    def _setup(self, model: nn.Module, data: Dataset) -> None:
        """Model and data on the device; class weights, the step rule (optimizer, scheduler), the
        strategy, the shuffling RNG and the batch size."""
        if self.step_rule.device is not None:
            self.device = torch.device(self.step_rule.device)
        self.device = self.strategy.root_device(self.device)
        self.model, self.data, self.task = model.to(self.device), data, get_task(data.task)
        check_needs_classes(self.task, data.name, class_weight=self.class_weight,
                            label_smoothing=self.label_smoothing)
        data.to(self.device)
        if self.class_weight == "balanced":  # a regression task was refused above
            self.weight = self.task.balanced_weights(data.y_train)
        n = len(data.X_train)
        batch_size = self.step_rule.rows_per_step or self.batch_size
        self.bs = n if batch_size in (0, None) or batch_size >= n else batch_size
        self.steps_per_epoch = math.ceil(n / self.bs)
        # the run's epochs: max_epochs, or fewer where max_steps is reached first (the epoch in which step
        # max_steps falls is the last; counted in this nominal steps per epoch, as a streamed epoch's vary a little)
        self.max_steps_epochs = None if self.max_steps is None else math.ceil(self.max_steps / self.steps_per_epoch)
        self.max_epochs = min(self.epochs_asked, self.max_steps_epochs or self.epochs_asked)
        if self.max_epochs < self.epochs_asked:
            self.log(f"trainer.max_steps={self.max_steps}: {self.steps_per_epoch} steps an epoch, so "
                     f"{self.max_epochs} epochs (trainer.max_epochs={self.epochs_asked})")
        self.step_rule.setup(self)  # the scheduler spans the run's epochs
        self.shuffle = torch.Generator(device=self.device).manual_seed(self.seed + 1)
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
        self.strategy.setup(self)
