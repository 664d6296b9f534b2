"""What a run knows while it trains (TrainState, shared by the loop and its callbacks) and what it
leaves behind (FitResult, written to metrics.json)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from mlpkit.status import RunStatus

@dataclass
class TrainState:
    """The loop's progress. Callbacks read it and stop a run with `stop(status, message)`; the best
    epoch is the BestEpoch callback's (`trainer.best`)."""

    max_epochs: int = 0
    epoch: int = 0  # epochs finished (and kept)
    step: int = 0  # optimizer steps so far
    batch: int = 0  # index of the current batch within its epoch
    history: Dict[str, List[Any]] = field(default_factory=dict)  # one entry per finished epoch
    scalars: Dict[str, float] = field(default_factory=dict)  # this epoch's numbers, by TensorBoard tag
    step_loss: Optional[float] = None  # this step's train loss, read only every log_every_n_steps
    epoch_start: float = 0.0  # time.perf_counter() when this epoch began
    status: RunStatus = RunStatus.RUNNING
    message: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)  # results a callback adds to metrics.json (converged)

    @property
    def running(self) -> bool:
        return self.status == RunStatus.RUNNING

    @property
    def aborted(self) -> bool:
        """Diverged or interrupted: the epoch in progress is not kept and later callbacks skip it."""
        return RunStatus(self.status).aborted

    def stop(self, status: RunStatus | str, message: str = "") -> None:
        """End the run after this step (diverged, interrupted) or after this epoch (the others)."""
        self.status, self.message = RunStatus(status), message


@dataclass
class FitResult:
    """What a run leaves in metrics.json."""

    status: RunStatus = RunStatus.COMPLETED  # one of RunStatus.endings()
    epochs_run: int = 0
    best_epoch: int = 0
    best_val_loss: float = math.inf
    best_val_accuracy: Optional[float] = None
    history: Dict[str, List[float]] = field(default_factory=dict)
    test: Dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    message: str = ""
    warnings: List[str] = field(default_factory=list)
    kept: str = "last"  # the weights the model ended with (and the test metrics are of): best.pt's or last.pt's
    extra: Dict[str, Any] = field(default_factory=dict)  # the step rule's and the callbacks' results (converged)

    @classmethod
    def from_state(cls, state: TrainState, best: Any, **fields: Any) -> "FitResult":
        """The result of a loop that ended in `state`, with `best` (a BestEpoch) its best epoch."""
        return cls(status=state.status, epochs_run=state.epoch, best_epoch=best.epoch, best_val_loss=best.val_loss,
                   best_val_accuracy=best.val_accuracy, history=state.history, message=state.message,
                   kept="best" if best.restored else "last", **fields)

    def as_dict(self) -> Dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "extra"}
        out.update(self.extra)
        return out
