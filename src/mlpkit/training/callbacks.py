"""Callbacks: what the training loop tells about its progress, and the concerns that listen.

The loop (mlpkit.training.trainer) calls each hook on every callback, in list order, with the Trainer and the
shared TrainState. A callback stops a run with `state.stop(status, message)`; once a callback aborts
it (diverged, interrupted) at an epoch's end, the later callbacks do not see that epoch: it is not
kept. A callback with state to keep across a resume returns it from `state_dict()`; it is saved in
last.pt under `state_key` and handed back to `load_state_dict()` when the run resumes.

Each callback has a `name`; `Trainer(callbacks=[...])` replaces the built-in callback of the same name
(an EarlyStopping replaces BestEpoch, a `TensorBoard(histogram_every=0)` the default one) and adds the
others; `trainer.callbacks` is the list the loop runs, and `replace` and `adjust` edit it by name.

Checkpoints (mlpkit.training.checkpoint.ModelCheckpoint), TensorBoard (mlpkit.training.tblog.TensorBoard) and the
gradient/activation diagnostics (mlpkit.training.diagnostics.Diagnostics) live beside what they use.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence

import torch

from mlpkit.schema import EarlyStoppingConfig as _E
from mlpkit.training.state import TrainState
from mlpkit.status import RunStatus

if TYPE_CHECKING:
    from mlpkit.training.trainer import Trainer

# metric name (early_stopping.monitor) -> the TensorBoard tag that holds it in state.scalars
MONITOR_TAGS = {"val_loss": "loss/val", "train_loss": "loss/train", "val_accuracy": "accuracy/val"}


class Callback:
    """Base class: every hook does nothing. Hooks get device tensors; reading one (`float(t)`) waits
    for the device, so per-step hooks read only what the state already holds as floats.

    What a callback may use of the Trainer (the rest is the loop's own):

    - read: `model`, `data` (the Dataset, on the device), `task` (its Task), `device`, `max_epochs`,
      `log_every` (steps between per-step losses), `optimizer` and `scheduler` (None under a step rule
      without them), `step_rule`, `strategy` (ask `strategy.is_writer` before writing a file),
      `logger` (a TensorBoardLogger or None), `run_dir` (None: no files), `best` (the BestEpoch:
      `epoch`, `value`, `val_loss`, `val_accuracy`, `weights`), `callbacks`, `shuffle` (the batch-order
      generator), `first_step_time`;
    - call: `log(message)` (the run's log), `callback(name)` (another callback, or None);
    - write: `stop_signal` (a signal number: the loop stops as `interrupted` after this step) and
      `extra_state` (a dict saved in every checkpoint).

    Of the TrainState it reads `epoch`, `step`, `batch`, `history`, `scalars`, `step_loss`, `status`,
    and it writes `scalars` (a tag added in on_epoch_end reaches TensorBoard when added before it),
    `history` (new keys), `extra` (results for metrics.json) and the status through `stop()`.
    """

    name: Optional[str] = None  # what Trainer(callbacks=...), replace and adjust know it by (None: its class name)

    @property
    def state_key(self) -> str:
        """Where last.pt keeps this callback's state_dict()."""
        return f"callback:{type(self).__name__}"

    def state_dict(self) -> Optional[Dict[str, Any]]:
        """What a resumed run needs back (None: nothing)."""
        return None

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass

    def setup(self, trainer: "Trainer") -> None:
        """At the start of fit, before a resume restores anything: take what it needs from the trainer."""

    def on_fit_start(self, trainer: "Trainer", state: TrainState) -> None:
        """Before the first epoch; a resumed run's state (and each load_state_dict) is restored before it."""

    def on_after_backward(self, trainer: "Trainer", state: TrainState) -> None:
        """Each gradient step, gradients in `.grad` (reduced over processes), before clipping and the
        optimizer step."""

    def on_step_end(self, trainer: "Trainer", state: TrainState, loss: Optional[torch.Tensor]) -> None:
        """Each step after the weights changed; `state.step_loss` is set every log_every_n_steps (`loss`
        is None under a step rule without a per-step loss, the perceptron's)."""

    def on_train_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        """The epoch's training steps are done (state.scalars holds loss/train); the val pass follows."""

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        """After the val pass: state.epoch counts this epoch, state.history and state.scalars hold it."""

    def on_train_end(self, trainer: "Trainer", state: TrainState) -> None:
        """The loop is over (state.status says why); before the test pass."""

    def on_fit_end(self, trainer: "Trainer", state: TrainState) -> None:
        """After the test pass (none for an interrupted run)."""

    def teardown(self, trainer: "Trainer", state: TrainState) -> None:
        """Always, also when an exception ends fit(): undo what on_fit_start set up."""


def callback_name(callback: Callback) -> str:
    return callback.name or type(callback).__name__


def _index(callbacks: Sequence[Callback], name: str) -> int:
    names = [callback_name(cb) for cb in callbacks]
    if name not in names:
        raise KeyError(f"no callback named {name!r}; the callbacks are: {', '.join(names)}")
    return names.index(name)


def replace(callbacks: Sequence[Callback], name: str, new: Optional[Callback]) -> List[Callback]:
    """`callbacks` with the one named `name` swapped for `new` (None: left out); KeyError if none is."""
    i = _index(callbacks, name)
    return [*callbacks[:i], *([new] if new is not None else []), *callbacks[i + 1:]]


def with_callbacks(defaults: Sequence[Callback], callbacks: Sequence[Callback]) -> List[Callback]:
    """`defaults` with each of `callbacks` in place of the one of the same name; the others before the
    checkpoint (at the end when there is none)."""
    out = list(defaults)
    for cb in callbacks:
        names = [callback_name(c) for c in out]
        if callback_name(cb) in names:
            out[names.index(callback_name(cb))] = cb
        else:
            out.insert(names.index("checkpoint") if "checkpoint" in names else len(out), cb)
    return out


def adjust(callbacks: Sequence[Callback], changes: Mapping[str, Optional[dict]]) -> List[Callback]:
    """`callbacks` with each one named in `changes` given those attribute values (None: left out), e.g.
    a model family's `{"progress": None, "checkpoint": {"every_s": math.inf}}`."""
    callbacks = list(callbacks)
    for name, settings in changes.items():
        if settings is None:
            callbacks = replace(callbacks, name, None)
            continue
        cb = callbacks[_index(callbacks, name)]
        for key, value in settings.items():
            if not hasattr(cb, key):
                raise AttributeError(f"callback {name!r} has no setting {key!r}")
            setattr(cb, key, value)
    return callbacks


class BestEpoch(Callback):
    """The best epoch by `monitor`: its number, value, val loss and accuracy, and a copy of its weights.

    The loop has one (`trainer.best`); EarlyStopping is one that also stops. ModelCheckpoint asks it
    what to write (best.pt, last.pt's `best` and `best_model`) and gives it back on resume (`restore`).
    `restored`: the model ended with the best epoch's weights (`load_into`), which its test metrics
    are then of."""

    name = "best_epoch"

    def __init__(self, monitor: str = _E.monitor, mode: str = "min", min_delta: float = _E.min_delta):
        self.monitor, self.mode, self.min_delta = monitor, mode, min_delta
        self.reset()

    def reset(self) -> None:
        self.value = -math.inf if self.mode == "max" else math.inf  # the monitored value of the best epoch
        self.epoch = 0
        self.val_loss: float = math.inf
        self.val_accuracy: Optional[float] = None
        self.weights: Optional[Dict[str, torch.Tensor]] = None  # a copy, never changed in place
        self.restored = False

    def improves(self, current: float, best: float) -> bool:
        if self.mode == "max":
            return current > best + self.min_delta
        return current < best - self.min_delta

    def on_fit_start(self, trainer: "Trainer", state: TrainState) -> None:
        if state.epoch == 0:  # a resumed run keeps its best
            self.reset()

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        current = state.scalars.get(MONITOR_TAGS[self.monitor], math.nan)
        if self.improves(current, self.value):
            self.value, self.epoch = current, state.epoch
            self.val_loss = state.scalars["loss/val"]
            self.val_accuracy = state.scalars.get("accuracy/val")
            self.weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    def load_into(self, model: torch.nn.Module) -> None:
        """Give `model` the best epoch's weights (when there is a best epoch)."""
        if self.weights is not None:
            model.load_state_dict(self.weights)
            self.restored = True

    def record(self) -> Dict[str, Any]:
        """What last.pt keeps of it under `best` (its weights go under `best_model`)."""
        return {"value": self.value, "epoch": self.epoch, "val_loss": self.val_loss, "val_accuracy": self.val_accuracy}

    def restore(self, record: Dict[str, Any], weights: Optional[Dict[str, torch.Tensor]]) -> None:
        """Back to what `record()` and the weights said (a resumed run)."""
        self.value, self.epoch = record["value"], record["epoch"]
        self.val_loss, self.val_accuracy = record["val_loss"], record["val_accuracy"]
        self.weights = weights


class EarlyStopping(BestEpoch):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs;
    `restore_best`: the model ends with the best epoch's weights."""

    def __init__(self, monitor: str = _E.monitor, mode: str = "min", patience: int = _E.patience,
                 min_delta: float = _E.min_delta, restore_best: bool = _E.restore_best):
        super().__init__(monitor, mode, min_delta)
        self.patience, self.restore_best = patience, restore_best
        self.wait = 0

    state_key = "early_stopping"  # last.pt's key since before callbacks

    def update(self, improved: bool) -> bool:
        """Record one epoch; True when training should stop."""
        self.wait = 0 if improved else self.wait + 1
        return self.wait > self.patience

    def on_fit_start(self, trainer: "Trainer", state: TrainState) -> None:
        super().on_fit_start(trainer, state)
        if state.epoch == 0:
            self.wait = 0

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        super().on_epoch_end(trainer, state)
        if self.update(self.epoch == state.epoch):
            state.stop(RunStatus.EARLY_STOPPED, f"early stop after epoch {state.epoch}: {self.monitor} did not "
                       f"improve for {self.patience} epochs (best {self.value:.4f} at epoch {self.epoch})")

    def on_train_end(self, trainer: "Trainer", state: TrainState) -> None:
        if self.restore_best:
            self.load_into(trainer.model)

    def state_dict(self) -> Dict[str, Any]:
        return {"wait": self.wait}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.wait = int(state["wait"])


def _lower_lr_hint(trainer: "Trainer") -> str:
    return f"try a lower optimizer.lr (now {trainer.step_rule.current_lr(trainer):g}) or trainer.clip_grad_norm=1.0"


class DivergenceGuard(Callback):
    """A NaN or infinite loss ends the run as `diverged`: the train loss at a logged step or as the
    epoch's mean, or the val loss (then that epoch is dropped and the best epoch's weights are kept)."""

    name = "divergence"

    def on_step_end(self, trainer: "Trainer", state: TrainState, loss: torch.Tensor) -> None:
        if state.step_loss is not None and not math.isfinite(state.step_loss):
            self._train_diverged(trainer, state, state.step_loss)

    def on_train_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        if not math.isfinite(state.scalars["loss/train"]):
            self._train_diverged(trainer, state, state.scalars["loss/train"])

    @staticmethod
    def _train_diverged(trainer: "Trainer", state: TrainState, value: float) -> None:
        state.stop(RunStatus.DIVERGED, f"the training loss became {value} in epoch {state.epoch + 1} (detected at step "
                               f"{state.step}); {_lower_lr_hint(trainer)}")

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        val_loss = state.scalars["loss/val"]
        if math.isfinite(val_loss):
            return
        state.stop(RunStatus.DIVERGED, f"the validation loss became {val_loss} in epoch {state.epoch} (epoch "
                               f"{state.epoch - 1} is the last good one); {_lower_lr_hint(trainer)}")
        state.epoch -= 1  # this epoch's weights are not kept
        for values in state.history.values():
            if len(values) > state.epoch:
                values.pop()

    def on_train_end(self, trainer: "Trainer", state: TrainState) -> None:
        if state.status == RunStatus.DIVERGED:
            trainer.best.load_into(trainer.model)


class SignalHandler(Callback):
    """SIGINT/SIGTERM: finish the step, save and stop as `interrupted`; a second one aborts at once.

    The handlers are installed only when trainer.handle_signals (train.py installs its own, which set
    trainer.stop_signal); the stop itself follows trainer.stop_signal either way."""

    name = "signals"

    def __init__(self) -> None:
        self.previous: Dict[int, Any] = {}

    def on_fit_start(self, trainer: "Trainer", state: TrainState) -> None:
        if not trainer.handle_signals or threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            if trainer.stop_signal is not None:  # a second Ctrl-C: stop at once
                raise KeyboardInterrupt
            trainer.stop_signal = signum
            trainer.log(f"{signal.Signals(signum).name} received: finishing this step, then saving and stopping "
                        "(press Ctrl-C again to abort without saving)")

        self.previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def on_step_end(self, trainer: "Trainer", state: TrainState, loss: torch.Tensor) -> None:
        signum = trainer.strategy.stop_signal(trainer)  # on several processes: once all of them know it
        if signum is not None:
            state.stop(RunStatus.INTERRUPTED, f"interrupted by {signal.Signals(signum).name} in epoch "
                                      f"{state.epoch + 1}; last.pt holds epoch {state.epoch}; continue with "
                                      "resume=<run_dir>")

    def teardown(self, trainer: "Trainer", state: TrainState) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}


class LRScheduler(Callback):
    """Steps a torch LR scheduler once per epoch (ReduceLROnPlateau on the val loss); None: the
    trainer's (`Trainer(scheduler=...)`), if it has one."""

    name = "lr_scheduler"
    state_key = "scheduler"  # last.pt's key since before callbacks

    def __init__(self, scheduler: Any = None):
        self.given = self.scheduler = scheduler

    def setup(self, trainer: "Trainer") -> None:
        self.scheduler = self.given if self.given is not None else trainer.scheduler
        self.plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        if self.scheduler is not None:
            self.scheduler.step(state.scalars["loss/val"]) if self.plateau else self.scheduler.step()

    def state_dict(self) -> Optional[Dict[str, Any]]:
        return self.scheduler.state_dict() if self.scheduler is not None else None

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


class Progress(Callback):
    """A tqdm bar over the epochs (`bar=True`), or a log line on about ten epochs of the run."""

    name = "progress"

    def __init__(self, bar: bool = False):
        self.use_bar, self.bar = bar, None

    def on_fit_start(self, trainer: "Trainer", state: TrainState) -> None:
        if self.use_bar and trainer.strategy.is_writer:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_epochs, initial=state.epoch, unit="epoch", dynamic_ncols=True, leave=True)

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        s, epoch = state.scalars, state.epoch
        if self.bar is not None:
            post = {"train": f"{s['loss/train']:.4f}", "val": f"{s['loss/val']:.4f}"}
            if "accuracy/val" in s:
                post["val_acc"] = f"{s['accuracy/val']:.3f}"
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)
        elif trainer.strategy.is_writer and (epoch == 1 or epoch % max(1, state.max_epochs // 10) == 0
                                             or epoch == state.max_epochs):
            acc = f"  val acc {s['accuracy/val']:.4f}" if "accuracy/val" in s else ""
            trainer.log(f"epoch {epoch:>4}/{state.max_epochs}  train loss {s['loss/train']:.4f}  "
                        f"val loss {s['loss/val']:.4f}{acc}")

    def teardown(self, trainer: "Trainer", state: TrainState) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EpochTime(Callback):
    """The epoch's seconds (training, val pass, logging; the checkpoint write after it falls in the next
    epoch's share of `seconds`) into history and TensorBoard, before last.pt is taken: a resumed run's
    history.epoch_seconds has one entry per epoch like its other lists."""

    name = "epoch_time"

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        seconds = time.perf_counter() - state.epoch_start
        state.history.setdefault("epoch_seconds", []).append(seconds)
        if trainer.logger is not None and trainer.strategy.is_writer:
            trainer.logger.scalar("time/epoch_seconds", seconds, state.epoch)


class Pruning(Callback):
    """Asks `pruner.should_prune(epoch, history)` after each epoch (e.g. mlpkit.training.pruning.MedianPruner);
    True stops the run as `pruned` with the pruner's message. None: never prunes."""

    name = "pruning"

    def __init__(self, pruner: Any = None):
        self.pruner = pruner

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        if self.pruner is not None and state.running and self.pruner.should_prune(state.epoch, state.history):
            state.stop(RunStatus.PRUNED, self.pruner.message)
