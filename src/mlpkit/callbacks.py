"""Callbacks: what the training loop tells about its progress, and the concerns that listen.

The loop (mlpkit.trainer) calls each hook on every callback, in list order, with the Trainer
(model, optimizer, data, logger as attributes) and the shared TrainState. A callback stops a
run with `state.stop(status, message)`; once a callback aborts it (diverged, interrupted) at an
epoch's end, the later callbacks do not see that epoch: it is not kept. A callback with state to keep across a resume returns
it from `state_dict()`; it is saved in last.pt under `state_key` and handed back to
`load_state_dict()` when the run resumes.

Checkpoints (mlpkit.checkpoint.ModelCheckpoint), TensorBoard (mlpkit.tblog.TensorBoard) and the
gradient/activation diagnostics (mlpkit.diagnostics.Diagnostics) live beside what they use.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, Optional

import torch

from mlpkit.state import TrainState

if TYPE_CHECKING:
    from mlpkit.trainer import Trainer

# metric name (early_stopping.monitor) -> the TensorBoard tag that holds it in state.scalars
MONITOR_TAGS = {"val_loss": "loss/val", "train_loss": "loss/train", "val_accuracy": "accuracy/val"}


class Callback:
    """Base class: every hook does nothing. Hooks get device tensors; reading one (`float(t)`) waits
    for the device, so per-step hooks read only what the state already holds as floats."""

    @property
    def state_key(self) -> str:
        """Where last.pt keeps this callback's state_dict()."""
        return f"callback:{type(self).__name__}"

    def state_dict(self) -> Optional[Dict[str, Any]]:
        """What a resumed run needs back (None: nothing)."""
        return None

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass

    def on_fit_start(self, trainer: "Trainer", state: TrainState) -> None:
        """Before the first epoch; a resumed run's state (and each load_state_dict) is restored before it."""

    def on_after_backward(self, trainer: "Trainer", state: TrainState) -> None:
        """Each step, gradients in `.grad`, before clipping and the optimizer step."""

    def on_step_end(self, trainer: "Trainer", state: TrainState, loss: torch.Tensor) -> None:
        """Each step after the optimizer step; `state.step_loss` is set every log_every_n_steps."""

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


class BestEpoch(Callback):
    """Tracks the best epoch by `monitor`: its value, val loss and accuracy, and a copy of its weights."""

    def __init__(self, monitor: str = "val_loss", mode: str = "min", min_delta: float = 0.0):
        self.monitor, self.mode, self.min_delta = monitor, mode, min_delta

    def improves(self, current: float, best: float) -> bool:
        if self.mode == "max":
            return current > best + self.min_delta
        return current < best - self.min_delta

    def on_fit_start(self, trainer: "Trainer", state: TrainState) -> None:
        if state.epoch == 0:  # a resumed run keeps its best
            state.best_value = -math.inf if self.mode == "max" else math.inf

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        current = state.scalars.get(MONITOR_TAGS[self.monitor], math.nan)
        if self.improves(current, state.best_value):
            state.best_value, state.best_epoch = current, state.epoch
            state.best_val_loss = state.scalars["loss/val"]
            state.best_val_accuracy = state.scalars.get("accuracy/val")
            state.best_weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


class EarlyStopping(BestEpoch):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs;
    `restore_best`: the model ends with the best epoch's weights."""

    def __init__(self, monitor: str = "val_loss", mode: str = "min", patience: int = 10,
                 min_delta: float = 0.0, restore_best: bool = True):
        super().__init__(monitor, mode, min_delta)
        self.patience, self.restore_best = patience, restore_best
        self.wait = 0

    state_key = "early_stopping"  # last.pt's key since before callbacks

    def update(self, improved: bool) -> bool:
        """Record one epoch; True when training should stop."""
        self.wait = 0 if improved else self.wait + 1
        return self.wait > self.patience

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        super().on_epoch_end(trainer, state)
        if self.update(state.best_epoch == state.epoch):
            state.stop("early_stopped", f"early stop after epoch {state.epoch}: {self.monitor} did not improve for "
                                        f"{self.patience} epochs (best {state.best_value:.4f} at epoch "
                                        f"{state.best_epoch})")

    def on_train_end(self, trainer: "Trainer", state: TrainState) -> None:
        if self.restore_best and state.best_weights is not None:
            trainer.model.load_state_dict(state.best_weights)

    def state_dict(self) -> Dict[str, Any]:
        return {"wait": self.wait}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.wait = int(state["wait"])


def _lower_lr_hint(trainer: "Trainer") -> str:
    return f"try a lower optimizer.lr (now {trainer.optimizer.param_groups[0]['lr']:g}) or trainer.clip_grad_norm=1.0"


class DivergenceGuard(Callback):
    """A NaN or infinite loss ends the run as `diverged`: the train loss at a logged step or as the
    epoch's mean, or the val loss (then that epoch is dropped and the best epoch's weights are kept)."""

    def on_step_end(self, trainer: "Trainer", state: TrainState, loss: torch.Tensor) -> None:
        if state.step_loss is not None and not math.isfinite(state.step_loss):
            self._train_diverged(trainer, state, state.step_loss)

    def on_train_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        if not math.isfinite(state.scalars["loss/train"]):
            self._train_diverged(trainer, state, state.scalars["loss/train"])

    @staticmethod
    def _train_diverged(trainer: "Trainer", state: TrainState, value: float) -> None:
        state.stop("diverged", f"the training loss became {value} in epoch {state.epoch + 1} (detected at step "
                               f"{state.step}); {_lower_lr_hint(trainer)}")

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        val_loss = state.scalars["loss/val"]
        if math.isfinite(val_loss):
            return
        state.stop("diverged", f"the validation loss became {val_loss} in epoch {state.epoch} (epoch "
                               f"{state.epoch - 1} is the last good one); {_lower_lr_hint(trainer)}")
        state.epoch -= 1  # this epoch's weights are not kept
        for values in state.history.values():
            if len(values) > state.epoch:
                values.pop()

    def on_train_end(self, trainer: "Trainer", state: TrainState) -> None:
        if state.status == "diverged" and state.best_weights is not None:
            trainer.model.load_state_dict(state.best_weights)


class SignalHandler(Callback):
    """SIGINT/SIGTERM: finish the step, save and stop as `interrupted`; a second one aborts at once.

    The handlers are installed only when trainer.handle_signals (train.py installs its own, which set
    trainer.stop_signal); the stop itself follows trainer.stop_signal either way."""

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
        if trainer.stop_signal is not None:
            state.stop("interrupted", f"interrupted by {signal.Signals(trainer.stop_signal).name} in epoch "
                                      f"{state.epoch + 1}; last.pt holds epoch {state.epoch}; continue with "
                                      "resume=<run_dir>")

    def teardown(self, trainer: "Trainer", state: TrainState) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}


class LRScheduler(Callback):
    """Steps a torch LR scheduler once per epoch (ReduceLROnPlateau on the val loss)."""

    state_key = "scheduler"  # last.pt's key since before callbacks

    def __init__(self, scheduler: Any):
        self.scheduler = scheduler
        self.plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        self.scheduler.step(state.scalars["loss/val"]) if self.plateau else self.scheduler.step()

    def state_dict(self) -> Dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


class Progress(Callback):
    """A tqdm bar over the epochs (`bar=True`), or a log line on about ten epochs of the run."""

    def __init__(self, bar: bool = False):
        self.use_bar, self.bar = bar, None

    def on_fit_start(self, trainer: "Trainer", state: TrainState) -> None:
        if self.use_bar:
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
        elif epoch == 1 or epoch % max(1, state.max_epochs // 10) == 0 or epoch == state.max_epochs:
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

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        seconds = time.perf_counter() - state.epoch_start
        state.history.setdefault("epoch_seconds", []).append(seconds)
        if trainer.logger is not None:
            trainer.logger.scalar("time/epoch_seconds", seconds, state.epoch)


class Pruning(Callback):
    """Asks `pruner.should_prune(epoch, history)` after each epoch (e.g. mlpkit.pruning.MedianPruner);
    True stops the run as `pruned` with the pruner's message."""

    def __init__(self, pruner: Any):
        self.pruner = pruner

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        if state.running and self.pruner.should_prune(state.epoch, state.history):
            state.stop("pruned", self.pruner.message)
