"""Checkpoints, written atomically (mlpkit.files), and ModelCheckpoint, the callback that writes a run's
best.pt and last.pt and resumes a run from last.pt."""

from __future__ import annotations

import errno
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

import torch

from mlpkit.training.callbacks import Callback
from mlpkit.errors import ConfigError, RunError
from mlpkit.files import atomic_write
from mlpkit.training.state import TrainState
from mlpkit.status import RunStatus

if TYPE_CHECKING:
    from mlpkit.training.trainer import Trainer

FORMAT = "mlpkit-checkpoint-1"


def save_checkpoint(path: str | Path, state: Dict[str, Any]) -> None:
    """torch.save `state` (plain containers and tensors only) atomically; the temp files of a save that
    was killed go first. RunError when it cannot be written (the previous file stays whole)."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    try:
        atomic_write(path, lambda fh: torch.save({"format": FORMAT, **state}, fh))
    except (OSError, RuntimeError) as err:
        full = getattr(err, "errno", None) == errno.ENOSPC or "unexpected pos" in str(err) or "write" in str(err)
        reason = "the disk is full" if full else (getattr(err, "strerror", None) or str(err).splitlines()[0])
        raise RunError(f"could not write {path}: {reason}; it still holds the last good checkpoint") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Dict[str, Any]:
    """Load an mlpkit checkpoint with weights_only=True: no pickled code runs."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles: the message below says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated file, foreign pickle, not a torch file at all
        raise ConfigError(f"{path} is not a readable mlpkit checkpoint ({type(err).__name__}); it is damaged "
                          "or was not written by mlpkit") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an mlpkit checkpoint (expected format {FORMAT!r})")
    return state


def _clone(obj: Any) -> Any:
    """A copy that shares nothing mutable with `obj`: tensors cloned, containers rebuilt."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return obj


class ModelCheckpoint(Callback):
    """best.pt (the best epoch's weights) and last.pt (everything a resume needs), in `directory`.

    Disk writes happen at most every `every_s` seconds and at the end; in between the newest state
    waits in memory. best.pt is written first, so last.pt never names a best epoch that is not on
    disk, and last.pt carries the best weights too: alone it is consistent whatever happened to
    best.pt. Waiting costs a copy of the tensors that change (model, optimizer) and the history's
    lengths: the history only grows, so its first n entries are what it held then.
    `resume()` (called before on_fit_start) restores the model, optimizer, TrainState, the best epoch
    (trainer.best), every RNG and each callback's state_dict() from a last.pt. `directory` None: the
    trainer's run_dir/checkpoints (none without a run_dir). Only a process that `strategy.is_writer`
    writes. `save` writes one file (default: save_checkpoint, looked up when called).
    """

    name = "checkpoint"

    def __init__(self, directory: Optional[str | Path] = None, every_s: float = 2.0,
                 save: Optional[Callable[[Path, Dict[str, Any]], None]] = None):
        self.given = self.directory = Path(directory) if directory is not None else None
        self.every_s = every_s
        self.save = save
        self.writes = False  # a directory, and this process writes (set up by setup())
        self.resumed = False
        self.pending: Dict[str, Callable[[], Dict[str, Any]]] = {}  # file name -> its state, when written
        self.last_write = time.perf_counter()
        self.error: Optional[str] = None  # a checkpoint that could not be written (a full disk)

    def setup(self, trainer: "Trainer") -> None:
        self.directory = self.given
        if self.directory is None and trainer.run_dir is not None:
            self.directory = Path(trainer.run_dir) / "checkpoints"
        self.writes = self.directory is not None and trainer.strategy.is_writer
        self.resumed = False

    def _save(self, path: Path, state: Dict[str, Any]) -> None:
        (self.save or save_checkpoint)(path, state)

    def on_fit_start(self, trainer: "Trainer", state: TrainState) -> None:
        if self.writes and not self.resumed:  # epoch 0: an interrupt in epoch 1 can resume
            self._save(self.directory / "last.pt", self.snapshot(trainer, state)())
        self.last_write = time.perf_counter()

    def on_epoch_end(self, trainer: "Trainer", state: TrainState) -> None:
        if not self.writes:
            return
        if trainer.best.epoch == state.epoch:
            best = {"epoch": state.epoch, "model": trainer.best.weights, **trainer.extra_state}
            self.pending["best.pt"] = lambda: best
        now = time.perf_counter() - self.last_write >= self.every_s
        self.pending["last.pt"] = self.snapshot(trainer, state, copy=not now)  # kept: a copy
        if now:
            self.write(state)

    def on_train_end(self, trainer: "Trainer", state: TrainState) -> None:
        if self.writes and self.error is None:  # after a failed write, write() stopped the run
            self.write(state)  # the last finished epoch, also after an interrupt or divergence

    def snapshot(self, trainer: "Trainer", state: TrainState, copy: bool = False) -> Callable[[], Dict[str, Any]]:
        """last.pt as of now, built when written."""
        ckpt = {"epoch": state.epoch, "global_step": state.step, "model": trainer.model.state_dict(),
                "optimizer": trainer.optimizer.state_dict() if trainer.optimizer is not None else None,
                "best": trainer.best.record(),
                "rng": {"torch": torch.get_rng_state(), "shuffle": trainer.shuffle.get_state(),
                        "cuda": torch.cuda.get_rng_state_all() if trainer.device.type == "cuda" else []},
                "early_stopped": state.status == RunStatus.EARLY_STOPPED,
                **trainer.extra_state}
        for cb in trainer.callbacks:
            cb_state = cb.state_dict()
            if cb_state is not None:
                ckpt[cb.state_key] = cb_state
        if copy:
            ckpt = _clone(ckpt)
        history, lengths = state.history, {k: len(v) for k, v in state.history.items()}
        best = trainer.best.weights  # never changed in place: no copy
        return lambda: {**ckpt, "history": {k: history[k][:n] for k, n in lengths.items()}, "best_model": best}

    def write(self, state: TrainState) -> None:
        try:
            for name in sorted(self.pending):  # best.pt first
                self._save(self.directory / name, self.pending[name]())
        except RunError as err:
            self.error = str(err)
            state.stop(RunStatus.INTERRUPTED, f"{err}; continue with resume=<run_dir> once there is room")
        self.pending.clear()
        self.last_write = time.perf_counter()

    def resume(self, trainer: "Trainer", state: TrainState, path: str | Path) -> None:
        ckpt = load_checkpoint(path, map_location=trainer.device)
        try:
            trainer.model.load_state_dict(ckpt["model"])
            if trainer.optimizer is not None:
                trainer.optimizer.load_state_dict(ckpt["optimizer"])
            for cb in trainer.callbacks:
                if ckpt.get(cb.state_key):
                    cb.load_state_dict(ckpt[cb.state_key])
            state.epoch, state.step = int(ckpt["epoch"]), int(ckpt["global_step"])
            trainer.best.restore(ckpt["best"], ckpt.get("best_model"))
            state.history = {k: list(v) for k, v in ckpt["history"].items()}
            if ckpt.get("early_stopped"):
                state.stop(RunStatus.EARLY_STOPPED)
            torch.set_rng_state(ckpt["rng"]["torch"].cpu())
            trainer.shuffle.set_state(ckpt["rng"]["shuffle"].cpu())  # generator states are CPU byte tensors
            if ckpt["rng"]["cuda"]:
                torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng"]["cuda"]])
        except (KeyError, RuntimeError, ValueError) as err:
            raise ConfigError(f"{path} does not match this run's model or optimizer "
                              f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
        if self.writes:
            trainer.best.weights = self.check_best(trainer)
        self.resumed = True
        trainer.log(f"resumed from {path} at epoch {state.epoch} (step {state.step})")

    def check_best(self, trainer: "Trainer") -> Optional[Dict[str, torch.Tensor]]:
        """The best weights of a resumed run: last.pt's own copy, written back to best.pt when that is
        missing, damaged or of another epoch (a kill between the two renames); from best.pt only for a
        last.pt of an older format, and then only when its epoch is the one last.pt names."""
        path = self.directory / "best.pt"
        try:
            on_disk = load_checkpoint(path, map_location=trainer.device) if path.is_file() else None
        except ConfigError as err:
            trainer.log(f"note: {err}; it is written again from last.pt")
            on_disk = None
        best = trainer.best
        if best.weights is None:
            return on_disk["model"] if on_disk is not None and on_disk.get("epoch") == best.epoch else None
        if on_disk is None or on_disk.get("epoch") != best.epoch:
            self._save(path, {"epoch": best.epoch, "model": best.weights, **trainer.extra_state})
        return best.weights
