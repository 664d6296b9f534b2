"""TensorBoard logging: scalars, histograms, figures, the HParams entry and the chart layout."""

from __future__ import annotations

import errno
import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional

import torch

from mlpkit.training.callbacks import Callback
from mlpkit.training.state import TrainState
from mlpkit.status import RunStatus
from mlpkit.tasks import get_task

if TYPE_CHECKING:
    from mlpkit.training.trainer import Trainer

def _quiet_writer_threads() -> None:
    """The event writer's thread dies on a write error (a full disk) and Python would print its traceback;
    the error reaches the TensorBoardLogger on its next call (as error), so the thread's own report goes."""
    previous = threading.excepthook
    if getattr(previous, "_mlpkit", False):
        return

    def hook(args: Any) -> None:
        if type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, OSError):
            return
        previous(args)

    hook._mlpkit = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def _reason(err: BaseException) -> str:
    if getattr(err, "errno", None) == errno.ENOSPC:
        return "the disk is full"
    return getattr(err, "strerror", None) or str(err).splitlines()[0] or type(err).__name__


def _summary_writer() -> Any:
    """torch's SummaryWriter. TensorBoard's file layer imports boto3 and fsspec when they are installed,
    for s3:// and other remote log directories: 0.3-1 s of a run's start-up. A run directory is a local
    path, so they are kept out of that one import; importing them later works as usual. So is the
    `__init__` of `tensorboard.summary`, which imports every plugin's summary ops (TensorFlow's stub and
    absl's flags, ~15 ms) where torch's writer needs only its `writer` subpackage: the package is entered
    as a bare shell for that import, and a later `import tensorboard.summary` runs its `__init__` as usual."""
    import importlib
    import os
    import sys
    import types

    if "torch.utils.tensorboard" not in sys.modules:
        kept_out = [m for m in ("boto3", "botocore", "fsspec") if m not in sys.modules]
        sys.modules.update(dict.fromkeys(kept_out))  # None: `import fsspec` raises ImportError
        shell = None
        if "tensorboard.summary" not in sys.modules:
            import tensorboard

            shell = types.ModuleType("tensorboard.summary")
            shell.__path__ = [os.path.join(os.path.dirname(tensorboard.__file__), "summary")]
            sys.modules["tensorboard.summary"] = shell
        try:
            importlib.import_module("torch.utils.tensorboard")
        finally:
            for m in kept_out:
                if m in sys.modules and sys.modules[m] is None:
                    del sys.modules[m]
            if shell is not None and sys.modules.get("tensorboard.summary") is shell:
                del sys.modules["tensorboard.summary"]
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter


class TensorBoardLogger:
    """One SummaryWriter per run directory; every call is cheap and never raises: a write that fails (a
    full disk) sets `error` (one line) and the writer stops writing; the run then stops as interrupted."""

    def __init__(self, log_dir: str | Path, purge_step: Optional[int] = None):
        SummaryWriter = _summary_writer()  # imported here: it is slow to import

        _quiet_writer_threads()
        self.log_dir = str(log_dir)
        self.error: Optional[str] = None
        self.writer = SummaryWriter(self.log_dir, purge_step=purge_step, flush_secs=10)

    def _failed(self, err: BaseException) -> None:
        if self.error is None:
            self.error = f"could not write the TensorBoard event file in {self.log_dir}: {_reason(err)}"

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars({tag: value}, step)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """The scalars of one step (an epoch's losses, accuracies, learning rate, ...) as one event: one
        record for the writer's thread to checksum (in pure Python: TensorBoard's CRC-32C without
        TensorFlow) and write, where one event a tag woke it up for each, and it took the interpreter's
        lock from the training loop while it ran: 2.15-2.44 ms an epoch of a 4-row XOR run became
        1.41-1.90 ms. A reader sees the same tags, values and steps (an event may hold several values)."""
        if self.error is not None:
            return
        from tensorboard.compat.proto.summary_pb2 import Summary

        # each value as torch's add_scalar writes it (its `scalar` summary: a float32 simple_value)
        merged = Summary(value=[Summary.Value(tag=tag, simple_value=float(value)) for tag, value in values.items()
                                if value is not None])
        if not merged.value:
            return
        try:
            self.writer._get_file_writer().add_summary(merged, step)  # what add_scalar does with one value
        except OSError as err:
            self._failed(err)

    def histogram(self, tag: str, values: Any, step: int) -> None:
        if self.error is not None:
            return
        try:
            self.writer.add_histogram(tag, values, step)
        except ValueError:  # values too large to bin (a run that is blowing up): skip this one
            pass
        except OSError as err:
            self._failed(err)

    def figure(self, tag: str, figure: Any, step: int) -> None:
        if self.error is not None:
            import matplotlib.pyplot as plt

            plt.close(figure)
            return
        try:
            self.writer.add_figure(tag, figure, step, close=True)
        except OSError as err:
            self._failed(err)

    def layout(self, classification: bool) -> None:
        """Custom Scalars charts in which train and val curves of a run share one chart."""
        charts = {"loss": ["Multiline", ["loss/train", "loss/val"]], "lr": ["Multiline", ["lr"]]}
        if classification:
            charts["accuracy"] = ["Multiline", ["accuracy/train", "accuracy/val"]]
        charts["gradient norm per layer"] = ["Multiline", [r"grads/layer_\d+"]]
        if self.error is None:
            try:
                self.writer.add_custom_scalars({"mlpkit": charts})
            except OSError as err:
                self._failed(err)

    def hparams(self, hparams: Mapping[str, Any], metrics: Mapping[str, Optional[float]], step: int,
                success: bool = True) -> None:
        """Write the HParams entry into this run's own event file (add_hparams would make a new folder).

        Only the session start/end are written, no experiment summary: TensorBoard then builds
        the experiment from all runs of a sweep together, marking which hparams differ."""
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        clean = {k: _hparam_value(v) for k, v in hparams.items()}
        values = {f"hparam/{k}": float(v) for k, v in metrics.items() if v is not None}
        exp, ssi, sei = hparams_summary(clean, values)
        if not success:  # diverged or interrupted: a failed session in the HParams tab
            sei = _session_end("STATUS_FAILURE")
        if self.error is not None:
            return
        try:
            fw = self.writer._get_file_writer()
            for summary in (ssi, sei):
                fw.add_summary(summary)
        except OSError as err:
            self._failed(err)
        for tag, value in values.items():
            self.scalar(tag, value, step)

    def flush(self) -> None:
        if self.error is None:
            try:
                self.writer.flush()
            except OSError as err:
                self._failed(err)

    def close(self) -> None:
        try:
            self.writer.close()
        except OSError as err:
            self._failed(err)


class TensorBoard(Callback):
    """Writes a run's curves to a TensorBoardLogger: per step `loss/train_step` (every log_every_n_steps),
    per epoch every tag in state.scalars, and within a budget of 5% of the run's time weight and
    gradient histograms (every `histogram_every` epochs) and the decision boundary of 2-D data
    (every `boundary_every` epochs, and at the end). 0 = only at the end (boundary) or never (histograms);
    None = about ten times per run. `logger` None: the trainer's; without one (or in a process that
    does not write, see mlpkit.training.strategy) it does nothing."""

    name = "tensorboard"
    BUDGET = 0.05  # histograms and images cost milliseconds each

    def __init__(self, logger: Any = None, histogram_every: Optional[int] = None,
                 boundary_every: Optional[int] = None, title: str = ""):
        self.logger, self.histogram_every, self.boundary_every = logger, histogram_every, boundary_every
        self.title = title  # e.g. "perceptron": "<data>, perceptron, epoch <n>"
        self.start, self.spent = time.perf_counter(), 0.0
        self.writer: Any = None  # the logger this fit writes to

    def setup(self, trainer: "Trainer") -> None:
        every = max(1, trainer.max_epochs // 10)  # images and histograms cost milliseconds each
        self.histogram_at = every if self.histogram_every is None else self.histogram_every
        self.boundary_at = every if self.boundary_every is None else self.boundary_every
        logger = self.logger if self.logger is not None else trainer.logger
        self.writer = logger if trainer.strategy.is_writer else None

    def on_fit_start(self, trainer: "Trainer", state: TrainState) -> None:
        self.start, self.spent = time.perf_counter(), 0.0
        if self.writer is not None:
            self.writer.layout(get_task(trainer.data.task).classification)

    def on_step_end(self, trainer: "Trainer", state: TrainState, loss: Optional[torch.Tensor]) -> None:
        if self.writer is not None and state.step_loss is not None and math.isfinite(state.step_loss):
            self.writer.scalar("loss/train_step", state.step_loss, state.step)
            self.check(state)

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        if self.writer is None:
            return
        self.writer.scalars(state.scalars, state.epoch)
        if self.spent <= self.BUDGET * (time.perf_counter() - self.start):
            t0 = time.perf_counter()
            self.pictures(trainer.model, trainer.data, state.epoch)
            self.spent += time.perf_counter() - t0

    def on_train_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        self.check(state)

    def check(self, state: TrainState) -> None:
        """A logger that could not write (a full disk) stops the run as interrupted, at a step or before
        an epoch is counted (the epoch in progress is dropped, last.pt keeps the one before)."""
        error = getattr(self.writer, "error", None)
        if error and state.running:
            state.stop(RunStatus.INTERRUPTED, f"{error}; continue with resume=<run_dir> once there is room")

    def on_fit_end(self, trainer: "Trainer", state: TrainState) -> None:
        if self.writer is not None and state.status != RunStatus.INTERRUPTED:
            self.pictures(trainer.model, trainer.data, state.epoch, final=True)

    def pictures(self, model: Any, data: Any, epoch: int, final: bool = False) -> None:
        """The histograms and the decision boundary due at `epoch` (`final`: those due at the end)."""
        if self.histogram_at and (epoch % self.histogram_at == 0) != final:
            weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
            for i, w in enumerate(weights):  # non-finite values (a diverged run) cannot be binned
                if torch.isfinite(w).all():
                    self.writer.histogram(f"weights/layer_{i}", w.detach(), epoch)
                if w.grad is not None and torch.isfinite(w.grad).all():
                    self.writer.histogram(f"grad_hist/layer_{i}", w.grad.detach(), epoch)
        periodic = bool(self.boundary_at) and epoch % self.boundary_at == 0
        if data.in_dim == 2 and periodic != final and isinstance(data.X_train, torch.Tensor):  # not a streamed one
            from mlpkit.training.diagnostics import decision_boundary_figure

            title = ", ".join(t for t in (data.name, self.title, f"epoch {epoch}") if t)
            self.writer.figure("images/decision_boundary", decision_boundary_figure(
                model, data.X_train, data.y_train, data.task, title=title), epoch)


def _session_end(status: str):
    """A session-end summary with the given HParams status (torch's helper always says success)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams.metadata import PLUGIN_DATA_VERSION, PLUGIN_NAME, SESSION_END_INFO_TAG
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo
    from tensorboard.plugins.hparams.api_pb2 import Status

    content = HParamsPluginData(session_end_info=SessionEndInfo(status=Status.Value(status)),
                                version=PLUGIN_DATA_VERSION)
    smd = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME,
                                                                 content=content.SerializeToString()))
    return Summary(value=[Summary.Value(tag=SESSION_END_INFO_TAG, metadata=smd)])


def _hparam_value(value: Any) -> Any:
    if value is None:
        return "null"
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """{'optimizer': {'lr': 0.1}} -> {'optimizer.lr': 0.1}; lists stay whole."""
    out: Dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
