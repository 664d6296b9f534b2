"""trainer.refit=true: after a run has chosen its best epoch on the val rows, a fresh model (same seed, same
settings, the run's own preprocessing) is trained on the train + val rows for that many epochs (all the run's,
where it kept its last epoch: early_stopping.restore_best=false or early_stopping=none), its schedule
spanning those epochs, and becomes the run's kept model: checkpoints/refit.pt, the test metrics of
metrics.json, what predict.py applies. The first model's best.pt and last.pt stay as they were, its test
metrics under metrics.json's `refit.test_before` (`predict.py --checkpoint best` applies it).

What a practitioner does with gradient-boosted trees and an MLP alike once the val rows have done their
work (choosing the epochs): they are rows to learn from. A Ctrl-C or SIGTERM during the refit leaves the run
`interrupted`; `resume=<run_dir>` finds the first model finished in last.pt and refits again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Optional

from mlpkit.errors import RunError
from mlpkit.status import RunStatus

log = logging.getLogger("mlpkit")

REFIT_CHECKPOINT = "refit.pt"


def why_not(data: Any, result: Any, strategy: Any) -> Optional[str]:
    """Why this finished run is not refitted (said in the log and metrics.json), or None."""
    if getattr(strategy, "world_size", 1) > 1:
        return "a run of several processes (trainer.strategy=ddp) is not refitted: the refit trains in one"
    import torch

    if not all(isinstance(x, torch.Tensor) for x in (data.X_train, data.X_val)):
        return "a streamed run (data.stream) is not refitted: its train and val rows are not in memory"
    if kept_epochs(result) < 1:
        return "the run kept no trained epoch to count"
    return None


def kept_epochs(result: Any) -> int:
    """The epochs of the model the run kept: its best epoch's (early_stopping.restore_best=true), else all."""
    return int(result.best_epoch if result.kept == "best" else result.epochs_run)


def refit(cfg: Any, data: Any, kwargs: dict, result: Any, device: Any, run_dir: Path, strategy: Any,
          trainers: list) -> Any:
    """Train the refit model and make it the run's kept model in `result` (a FitResult, changed in place);
    `trainers`: where a signal finds the trainer to stop (the refit's, while it trains). Returns the refit's
    FitResult, or None where the run is not refitted (why: in the log and metrics.json)."""
    import torch
    from omegaconf import OmegaConf

    from mlpkit.app import build
    from mlpkit.models.mlp import MODELS
    from mlpkit.training.callbacks import BestEpoch
    from mlpkit.training.checkpoint import save_checkpoint

    if RunStatus(result.status) not in (RunStatus.COMPLETED, RunStatus.EARLY_STOPPED):
        return None  # diverged, pruned or interrupted: nothing to refit
    reason = why_not(data, result, strategy)
    if reason is not None:
        log.info("note: trainer.refit=true: %s; the run keeps its %s model", reason, result.kept)
        result.extra["refit"] = {"skipped": reason}
        return None
    epochs = kept_epochs(result)
    first = trainers[-1] if trainers else None
    extra_state = dict(first.extra_state) if first is not None else {}  # model arguments, task, classes
    rows = dataclasses.replace(data, X_train=torch.cat([data.X_train, data.X_val]),
                               y_train=torch.cat([data.y_train, data.y_val]), notes=[], warnings=[])
    k = int(cfg.trainer.refit_models)
    # member 0: the first model's seed (its initial weights, its order of rows); the others the next ones
    seeds = [(cfg.seed + i) % 2 ** 32 for i in range(k)]
    what = "a fresh model" if k == 1 else f"{k} fresh models (seeds {seeds[0]}..{seeds[-1]})"
    log.info("refit  %s on the %d train + %d val rows for %s (the kept model's count)%s; its val loss below is "
             "on rows it trains on", what, len(data.X_train), len(data.X_val), _epochs(epochs),
             "" if k == 1 else ", their predictions averaged")
    start = time.perf_counter()
    members, fits = [], []
    for i, seed in enumerate(seeds):
        again = OmegaConf.merge(cfg, {"seed": seed, "trainer": {"max_epochs": epochs, "max_steps": None}})
        torch.manual_seed(seed)
        model = MODELS[cfg.model.name](**kwargs, seed=None)
        best = BestEpoch("train_loss", "min")  # a record only: the last epoch's weights are kept
        trainer = build.build_trainer(again, device, None, None, best, None, handle_signals=False,
                                      strategy=strategy, task=data.task)
        trainer.extra_state = dict(extra_state)  # predict.py checks them against the run's
        before = trainers[-1] if trainers else None
        trainers[:] = [trainer]  # a signal from here on stops the refit; one that came before it, too:
        if before is not None and before.stop_signal is not None:
            trainer.stop_signal = before.stop_signal
        second = trainer.fit(model, rows)
        if trainer.stop_signal is not None or RunStatus(second.status) != RunStatus.COMPLETED:
            return _stopped(result, trainer, second, epochs, k, i)
        members.append(model)
        fits.append(second)
    kept, test = model, second.test
    if k > 1:
        from mlpkit.models.ensemble import SeedEnsemble

        kept = SeedEnsemble(members, data.task.name)
        test = trainer.test_metrics(kept, data)
    try:
        save_checkpoint(run_dir / "checkpoints" / REFIT_CHECKPOINT,
                        {"epoch": epochs, "global_step": trainer.state.step, "model": kept.state_dict(),
                         **({"members": k} if k > 1 else {}), **extra_state})
    except RunError as err:  # a full disk: recorded as any checkpoint that cannot be written is
        result.status = RunStatus.INTERRUPTED
        result.message = (f"{err}; the first model is whole in last.pt and best.pt: continue with resume=<run_dir> "
                          "once there is room, which refits again")
        result.extra["refit"] = {"status": str(RunStatus.INTERRUPTED), "epochs": epochs}
        return second
    result.extra["refit"] = {
        "epochs": epochs, "train_rows": len(rows.X_train), "seconds": time.perf_counter() - start,
        "history": {"train_loss": fits[0].history.get("train_loss", [])},
        "test_before": result.test, "kept_before": result.kept}
    if k > 1:  # each member alone, beside the average that is kept
        result.extra["refit"].update(models=k, members_test=[f.test for f in fits])
    result.test, result.kept = test, "refit"
    log.info("refit  %s on %d rows in %.1f s", _epochs(epochs) + ("" if k == 1 else f" x {k} models"),
             len(rows.X_train), result.extra["refit"]["seconds"])
    return second


def _stopped(result: Any, trainer: Any, second: Any, epochs: int, k: int, i: int) -> Any:
    """A refit model stopped by a signal, or diverged: the run is `interrupted` with its first model whole."""
    import signal

    if trainer.stop_signal is not None:
        why, other = f"interrupted by {signal.Signals(trainer.stop_signal).name}", ""
    else:  # diverged: refitting again would too, so the first model can be kept instead
        why, other = f"{second.status}: {second.message}", " (or trainer.refit=false)"
    which = "the refit" if k == 1 else f"refit model {i + 1} of {k}"
    result.status = RunStatus.INTERRUPTED  # the first model stays whole: the refit can be run again
    result.message = (f"{which} stopped after {second.epochs_run} of its {epochs} epochs ({why}); the first "
                      f"model is whole in last.pt and best.pt: continue with resume=<run_dir>, which refits "
                      f"again{other}")
    result.extra["refit"] = {"status": str(second.status), "epochs": epochs}
    return second


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")
