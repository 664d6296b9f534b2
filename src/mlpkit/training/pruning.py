"""Pruning hopeless sweep jobs: the median stopping rule, read from the sweep directory.

The rule (Golovin et al., "Google Vizier", KDD 2017, section 3.2.2): after `warmup_epochs`,
a job stops when its best val loss so far is worse than the median, over the finished jobs
of the same sweep, of their best val loss up to the same epoch. Vizier takes the running
average of each finished curve; mlpkit takes its running best, the number a job is ranked by.

The jobs of a sweep share nothing but the sweep directory, so each job reads its siblings'
`metrics.json` (written once, when a job ends, with `status` and `history.val_loss`). That
works the same with every launcher (basic, joblib, submitit, Ray): a job still running has
no metrics.json yet and is not counted.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from mlpkit.schema import option_default, option_defaults
from mlpkit.status import RunStatus

# name -> the settings the option takes
PRUNERS: Dict[str, Tuple[str, ...]] = {"none": (), "median": tuple(option_defaults("pruning", "median"))}


def best_so_far(val_loss: Sequence[Optional[float]], epoch: int) -> Optional[float]:
    """The lowest val loss among the first `epoch` epochs (all of them if the curve is shorter)."""
    values = [v for v in val_loss[:epoch] if v is not None]
    return min(values) if values else None


class MedianPruner:
    """Stops a sweep job whose best val loss trails the median of the sweep's finished jobs.

    Args:
        sweep_dir: the directory that holds the sweep's job directories.
        warmup_epochs: epochs during which a job is never stopped.
        min_completed: finished jobs needed before the rule acts.
        run_dir: this job's own directory, never read as a sibling.
    """

    def __init__(self, sweep_dir: str | Path,
                 warmup_epochs: int = option_default("pruning", "median", "warmup_epochs"),
                 min_completed: int = option_default("pruning", "median", "min_completed"),
                 run_dir: Optional[str | Path] = None):
        self.sweep_dir = Path(sweep_dir)
        self.warmup_epochs, self.min_completed = warmup_epochs, min_completed
        self.run_dir = Path(run_dir).resolve() if run_dir is not None else None
        self.message = ""
        self._cache: Dict[Path, Tuple[int, Optional[List[Optional[float]]]]] = {}  # path -> (mtime, curve)

    def finished_curves(self) -> List[List[Optional[float]]]:
        """The val-loss curves of the sweep's finished jobs (re-read only when a file changes)."""
        curves = []
        for path in sorted(self.sweep_dir.glob("*/metrics.json")):
            if self.run_dir is not None and path.parent.resolve() == self.run_dir:
                continue
            try:
                mtime = path.stat().st_mtime_ns
                if self._cache.get(path, (None,))[0] != mtime:
                    self._cache[path] = (mtime, _finished_curve(path))
            except OSError:
                continue
            curve = self._cache[path][1]
            if curve:
                curves.append(curve)
        return curves

    def should_prune(self, epoch: int, history: Dict[str, List[float]]) -> bool:
        """True when the job, after `epoch` epochs with this `history`, should stop."""
        if epoch <= self.warmup_epochs:  # before reading any file
            return False
        verdict = median_rule(epoch, history["val_loss"], self.finished_curves(), self.warmup_epochs,
                              self.min_completed)
        if verdict is None:
            return False
        own, median, n = verdict
        self.message = (f"pruned after epoch {epoch}: best val loss {own:.4f} is worse than the median "
                        f"{median:.4f} of the {n} finished jobs of this sweep at that epoch (pruning=median)")
        return True


def median_rule(epoch: int, val_loss: Sequence[Optional[float]], finished: Sequence[Sequence[Optional[float]]],
                warmup_epochs: int, min_completed: int) -> Optional[Tuple[float, float, int]]:
    """The rule itself: (the job's best so far, the median, the number of finished jobs) when a job
    with curve `val_loss` should stop after `epoch` epochs, given the finished jobs' curves; else None."""
    if epoch <= warmup_epochs:
        return None
    own = best_so_far(val_loss, epoch)
    refs = [v for v in (best_so_far(c, epoch) for c in finished) if v is not None]
    if own is None or len(refs) < min_completed:
        return None
    median = statistics.median(refs)
    return (own, median, len(refs)) if own > median else None  # a tie is not worse


def _finished_curve(path: Path) -> Optional[List[Optional[float]]]:
    """The val-loss history in a job's metrics.json if that job finished; else None."""
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    # a job that ran to its own end is a fair reference; pruned, diverged and interrupted curves were cut short
    if metrics.get("status") not in RunStatus.endings() or not RunStatus(metrics["status"]).comparable:
        return None
    return list(metrics.get("history", {}).get("val_loss") or []) or None
