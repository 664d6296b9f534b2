"""How a run ends (metrics.json's `status`) and what each ending means for the commands that read it.

    RunStatus.DIVERGED == "diverged"   # a str: compares, prints and is saved to JSON as its value
    RunStatus("pruned").has_model      # True: predict.py can apply it
"""

from __future__ import annotations

from enum import Enum


class RunStatus(str, Enum):
    """A run's status: `running` while it trains, then one of the five endings of the contract."""

    RUNNING = "running"
    COMPLETED = "completed"  # all trainer.max_epochs epochs (or a perceptron that converged)
    EARLY_STOPPED = "early_stopped"  # the monitor stopped improving
    DIVERGED = "diverged"  # the loss became NaN or infinite; the last good epoch is kept
    INTERRUPTED = "interrupted"  # Ctrl-C, SIGTERM, a full disk: resume=<run_dir> continues it
    PRUNED = "pruned"  # a sweep job stopped by pruning=median

    __str__ = str.__str__  # "diverged", not "RunStatus.DIVERGED", in messages and logs
    __format__ = str.__format__

    @property
    def aborted(self) -> bool:
        """Ended inside an epoch: that epoch is not kept, and the callbacks after the one that stopped
        the run do not see it."""
        return self in _ABORTED

    @property
    def ended(self) -> bool:
        """Trained to its end: a resume does not train it again."""
        return self in _ENDED

    @property
    def has_model(self) -> bool:
        """Its kept weights are a trained model that predict.py applies."""
        return self in _HAS_MODEL

    @property
    def success(self) -> bool:
        """Ended as its settings asked (TensorBoard's HParams shows the others as failed)."""
        return self in _SUCCESS

    @property
    def comparable(self) -> bool:
        """A finished sweep job whose curve the median pruning rule compares with."""
        return self in _COMPARABLE

    @classmethod
    def endings(cls) -> list:
        return [s.value for s in cls if s is not cls.RUNNING]


_ABORTED = frozenset({RunStatus.DIVERGED, RunStatus.INTERRUPTED})
_ENDED = frozenset({RunStatus.COMPLETED, RunStatus.EARLY_STOPPED, RunStatus.DIVERGED})
_HAS_MODEL = _ENDED | {RunStatus.PRUNED}
_SUCCESS = frozenset({RunStatus.COMPLETED, RunStatus.EARLY_STOPPED, RunStatus.PRUNED})
_COMPARABLE = frozenset({RunStatus.COMPLETED, RunStatus.EARLY_STOPPED})
